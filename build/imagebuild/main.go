// Command imagebuild builds the container images of caravan, caravan-central
// and caravan-agent without a container daemon, as `make images` runs it:
//
//	go run ./build/imagebuild -version v0.2.0 -out build/out [-push registry.example.org/caravan]
//
// Each image is one layer on an empty base: the static binary at
// /usr/local/bin/<binary>, the build machine's CA certificates and a
// non-root user 65532, the runtime equivalent of build/<binary>.Dockerfile on
// distroless's static:nonroot. Each is written as an OCI image layout in
// <out>/<binary>/, an image index over the platforms, and pushed as
// <repo>/<binary>:<version> when -push names a repository.
//
// It is build tooling: nothing imports it and it is not shipped.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	version   string
	out       string
	push      string
	platforms []v1.Platform
	source    string
	caCerts   string
	binaries  []string
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	version := fs.String("version", "", "version stamped into the binaries, their label and their tag (required)")
	out := fs.String("out", "build/out", "folder of the OCI layouts, one <binary>/ each")
	pushRepo := fs.String("push", "", "repository to push <repo>/<binary>:<version> to; empty: no push")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "comma-separated os/arch[/variant] list")
	source := fs.String("source", "https://github.com/caravan-gitops/caravan", "the org.opencontainers.image.source label")
	caCerts := fs.String("ca-certs", caCertsPath, "PEM bundle of CA certificates copied into every image")
	binaries := fs.String("binaries", "", "comma-separated binaries to build; empty: all")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o := options{version: *version, out: *out, push: *pushRepo, source: *source, caCerts: *caCerts}
	if o.version == "" {
		return options{}, errors.New("-version is required")
	}
	// The version is also the tag: refuse one a registry would, before
	// spending a build on it.
	if _, err := name.NewTag("example.invalid/x:"+o.version, name.StrictValidation); err != nil {
		return options{}, fmt.Errorf("-version %q is not a valid image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}): %w", o.version, err)
	}
	o.push = strings.TrimSuffix(o.push, "/")
	if o.push != "" {
		// Checked before the build, not after minutes of it.
		if _, err := name.NewRepository(o.push+"/caravan", name.StrictValidation); err != nil {
			return options{}, fmt.Errorf("-push %q is not a repository (host[:port]/path): %w", o.push, err)
		}
	}
	for _, p := range splitList(*platforms) {
		pl, err := v1.ParsePlatform(p)
		if err != nil {
			return options{}, fmt.Errorf("-platforms %q: %w", p, err)
		}
		o.platforms = append(o.platforms, *pl)
	}
	if len(o.platforms) == 0 {
		return options{}, errors.New("-platforms lists none")
	}
	o.binaries = splitList(*binaries)
	if len(o.binaries) == 0 {
		for _, s := range specs {
			o.binaries = append(o.binaries, s.binary)
		}
	}
	for _, b := range o.binaries {
		if _, err := specFor(b); err != nil {
			return options{}, fmt.Errorf("-binaries: %w", err)
		}
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// built is what run made of one binary.
type built struct {
	binary string
	dir    string
	digest v1.Hash
	// sizes are the compressed bytes a runtime pulls per platform (layer,
	// config and manifest).
	sizes []int64
	// pushed is the tag the image index was pushed as; empty without -push.
	pushed string
}

// run builds every image of args, writes each as a layout and pushes it when
// asked, reporting one line per image on stdout.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	results, err := buildAll(ctx, o)
	if err != nil {
		return err
	}
	for _, r := range results {
		var parts []string
		for i, p := range o.platforms {
			parts = append(parts, fmt.Sprintf("%s %.1f MB", p, float64(r.sizes[i])/1e6))
		}
		fmt.Fprintf(stdout, "%-16s %-26s %s (%s)\n", r.binary, r.dir, r.digest, strings.Join(parts, ", "))
		if r.pushed != "" {
			fmt.Fprintf(stdout, "%-16s pushed %s@%s\n", r.binary, r.pushed, r.digest)
		}
	}
	return nil
}

func buildAll(ctx context.Context, o options) ([]built, error) {
	caCerts, err := os.ReadFile(o.caCerts)
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w (install ca-certificates, or give -ca-certs a PEM bundle)", err)
	}
	if err := checkCACerts(caCerts); err != nil {
		return nil, fmt.Errorf("CA certificates %s: %w", o.caCerts, err)
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, err
	}
	binDir, err := os.MkdirTemp("", "caravan-imagebuild-")
	if err != nil {
		return nil, fmt.Errorf("make a folder for the binaries: %w", err)
	}
	defer os.RemoveAll(binDir)
	for i, p := range o.platforms {
		if err := compile(ctx, root, platformDir(binDir, i), o.version, p, o.binaries); err != nil {
			return nil, err
		}
	}

	var results []built
	for _, b := range o.binaries {
		r, err := buildOne(o, b, binDir, caCerts)
		if err != nil {
			return nil, err
		}
		results = append(results, r)
	}
	// Every layout is written before the first push, so that a registry
	// that is down still leaves a whole, current build in -out.
	if o.push == "" {
		return results, nil
	}
	for i := range results {
		if results[i].pushed, err = pushOne(ctx, o, results[i]); err != nil {
			return nil, err
		}
	}
	return results, nil
}

func platformDir(binDir string, i int) string { return filepath.Join(binDir, fmt.Sprint(i)) }

// buildOne assembles the image of binary from the compiled binaries in
// binDir and writes it as a layout.
func buildOne(o options, binary, binDir string, caCerts []byte) (built, error) {
	s, err := specFor(binary)
	if err != nil {
		return built{}, err
	}
	r := built{binary: binary, dir: filepath.Join(o.out, binary)}
	var images []platformImage
	for i, p := range o.platforms {
		bin, err := os.ReadFile(filepath.Join(platformDir(binDir, i), binary))
		if err != nil {
			return built{}, fmt.Errorf("read the compiled %s for %s: %w", binary, p, err)
		}
		img, err := buildImage(s, p, o.version, o.source, bin, caCerts)
		if err != nil {
			return built{}, err
		}
		size, err := pullSize(img)
		if err != nil {
			return built{}, fmt.Errorf("image %s for %s: %w", binary, p, err)
		}
		r.sizes = append(r.sizes, size)
		images = append(images, platformImage{platform: p, image: img})
	}
	idx := buildIndex(images)
	if r.digest, err = idx.Digest(); err != nil {
		return built{}, fmt.Errorf("image %s: index digest: %w", binary, err)
	}
	if err := writeLayout(r.dir, idx, o.version); err != nil {
		return built{}, fmt.Errorf("image %s: %w", binary, err)
	}
	return r, nil
}

// pushOne pushes the layout of r as <repo>/<binary>:<version> and returns
// that tag.
func pushOne(ctx context.Context, o options, r built) (string, error) {
	tag, err := name.NewTag(fmt.Sprintf("%s/%s:%s", o.push, r.binary, o.version))
	if err != nil {
		return "", fmt.Errorf("-push %q: %w", o.push, err)
	}
	pushed, err := push(ctx, r.dir, tag)
	if err != nil {
		return "", err
	}
	if pushed != r.digest {
		return "", fmt.Errorf("image %s: pushed %s from %s, built %s", r.binary, pushed, r.dir, r.digest)
	}
	return tag.String(), nil
}

// pullSize is the number of bytes a runtime downloads for img.
func pullSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, fmt.Errorf("manifest: %w", err)
	}
	size, err := img.Size()
	if err != nil {
		return 0, fmt.Errorf("manifest size: %w", err)
	}
	size += m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	return size, nil
}
