package render

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
)

var yamlLine = regexp.MustCompile(`line (\d+)`)

// yamlError names the file of a YAML error and, where the parser said it, the line.
func yamlError(file string, err error) *Error {
	e := &Error{File: file, Reason: err.Error()}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
	}
	return e
}

// kustomizePath finds the repo path kustomize names in its errors, which
// are rooted at "/" in the in-memory file system.
var kustomizePath = regexp.MustCompile(`/(kubernetes/[^\s:'"]+)`)

// kustomizeFile is the file kustomize names when a resource fails to parse.
var kustomizeFile = regexp.MustCompile(`in File: (\S+)`)

func kustomizeError(err error) *Error {
	msg := err.Error()
	e := &Error{Reason: "kustomize build: " + msg}
	if m := kustomizePath.FindAllStringSubmatch(msg, -1); m != nil {
		e.File = m[len(m)-1][1]
	}
	switch m := kustomizeFile.FindStringSubmatch(msg); {
	case e.File == "":
	case m != nil:
		e.File = path.Join(e.File, m[1])
	case strings.Contains(msg, "invalid Kustomization") && !strings.HasSuffix(e.File, ".yaml"):
		e.File = path.Join(e.File, "kustomization.yaml")
	}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
	}
	return e
}

// substitutionError names the object and the source file where the failing
// variable is written.
func substitutionError(repo fs.FS, kind, namespace, name, variable string, err error) *Error {
	object := kind + " " + strings.TrimPrefix(namespace+"/"+name, "/")
	e := &Error{Reason: fmt.Sprintf("%s: %v", object, err)}
	if variable != "" {
		e.File, e.Line = findVariable(repo, variable)
	}
	return e
}

// findVariable returns the first manifest file and line that uses ${variable}.
func findVariable(repo fs.FS, variable string) (string, int) {
	var file string
	var line int
	_ = fs.WalkDir(repo, KubernetesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || file != "" {
			return err
		}
		content, err := fs.ReadFile(repo, p)
		if err != nil {
			return nil
		}
		if n := lineOf(content, "${"+variable); n > 0 {
			file, line = p, n
			return fs.SkipAll
		}
		return nil
	})
	return file, line
}

// lineOf is the 1-based line of the first occurrence of needle, or 0.
func lineOf(content []byte, needle string) int {
	i := bytes.Index(content, []byte(needle))
	if i < 0 {
		return 0
	}
	return bytes.Count(content[:i], []byte("\n")) + 1
}

// IsRenderError reports whether err is a problem of the commit, not of the agent.
func IsRenderError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
