package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// versionVar is the variable every binary prints with --version; the
// Makefile's build stamps the same one.
const versionVar = "github.com/caravan-gitops/caravan/pkg/version.Version"

// goBuildArgs are the arguments of the one `go build` that compiles the given
// binaries for a platform into outDir: static (the caller sets CGO_ENABLED=0),
// without local paths (-trimpath) or symbols (-s -w), stamped with version.
func goBuildArgs(version, outDir string, binaries []string) []string {
	args := []string{
		"build", "-trimpath",
		"-ldflags", fmt.Sprintf("-s -w -X %s=%s", versionVar, version),
		"-o", outDir + string(filepath.Separator),
	}
	for _, b := range binaries {
		args = append(args, "./cmd/"+b)
	}
	return args
}

// moduleRoot is the folder of the go.mod that the go command run here uses,
// so that the builder works from the repository root (as make runs it) and
// from its own folder (as go test runs it).
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module (go env GOMOD is %q); run from the caravan repository", gomod)
	}
	return filepath.Dir(gomod), nil
}

// compile builds binaries for platform into outDir, one `go build` for all of
// them so that the go command links them in parallel and shares its cache.
func compile(ctx context.Context, root, outDir, version string, platform v1.Platform, binaries []string) error {
	cmd := exec.CommandContext(ctx, "go", goBuildArgs(version, outDir, binaries)...)
	cmd.Dir = root
	env := append(os.Environ(), "CGO_ENABLED=0", "GOOS="+platform.OS, "GOARCH="+platform.Architecture)
	if platform.Architecture == "arm" && platform.Variant != "" {
		env = append(env, "GOARM="+strings.TrimPrefix(platform.Variant, "v"))
	}
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build for %s: %w\n%s", platform, err, stderr.String())
	}
	return nil
}
