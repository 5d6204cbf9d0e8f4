package main

import (
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The user every image runs as: distroless's "nonroot", so that a cluster's
// runAsUser, a volume's fsGroup and the Dockerfiles' images all agree.
const (
	nonrootUID  = 65532
	nonrootName = "nonroot"
	nonrootHome = "/home/nonroot"
)

// Where things sit in every image.
const (
	binDir      = "/usr/local/bin"
	caCertsPath = "/etc/ssl/certs/ca-certificates.crt"
)

// Label keys from the OCI image spec's annotations, which registries and
// scanners show.
const (
	labelVersion = "org.opencontainers.image.version"
	labelSource  = "org.opencontainers.image.source"
	labelTitle   = "org.opencontainers.image.title"
)

// spec is what one image adds to the common base of binary, CA certificates
// and non-root user. It mirrors build/<binary>.Dockerfile, so that an image
// built with docker and one built here behave the same under the charts.
type spec struct {
	binary string
	// cmd is the default arguments to the entrypoint.
	cmd []string
	// ports are exposed ports, "8080/tcp".
	ports []string
	// volumes are made as empty directories owned by the non-root user, so
	// that a new volume mounted on one is writable by it (the runtime copies
	// the owner of the image's directory onto a fresh named volume).
	volumes []string
}

// specs lists the images `make images` builds, in the order it builds them.
var specs = []spec{
	{binary: "caravan"},
	{
		binary: "caravan-central",
		// Plain HTTP on every address, for a cluster where an ingress
		// terminates TLS; the chart overrides these arguments.
		cmd:     []string{"serve", "--listen", "0.0.0.0:8080", "--insecure-http", "--database", "sqlite:///data/caravan.db"},
		ports:   []string{"8080/tcp"},
		volumes: []string{"/data"},
	},
	{binary: "caravan-agent"},
}

// specFor returns the spec of a binary, or an error naming the ones known.
func specFor(binary string) (spec, error) {
	var known []string
	for _, s := range specs {
		if s.binary == binary {
			return s, nil
		}
		known = append(known, s.binary)
	}
	return spec{}, fmt.Errorf("no image is defined for %q; known: %s", binary, strings.Join(known, ", "))
}

// entrypoint is the path of the binary inside the image.
func (s spec) entrypoint() string { return binDir + "/" + s.binary }

// imageConfig is the runtime configuration of the image of s at version.
// Env names the CA bundle explicitly so that tools other than Go's crypto/x509
// (which finds it on its own) trust the same certificates.
func imageConfig(s spec, version, source string) v1.Config {
	cfg := v1.Config{
		User:       fmt.Sprintf("%d:%d", nonrootUID, nonrootUID),
		Entrypoint: []string{s.entrypoint()},
		Cmd:        s.cmd,
		WorkingDir: "/",
		Env: []string{
			"PATH=" + binDir + ":/usr/bin:/bin",
			"SSL_CERT_FILE=" + caCertsPath,
			// The CLI keeps its config under $HOME; a runtime that does not
			// read /etc/passwd would otherwise leave it unset.
			"HOME=" + nonrootHome,
		},
		Labels: map[string]string{
			labelVersion: version,
			labelSource:  source,
			labelTitle:   s.binary,
		},
	}
	if len(s.ports) > 0 {
		cfg.ExposedPorts = map[string]struct{}{}
		for _, p := range s.ports {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	if len(s.volumes) > 0 {
		cfg.Volumes = map[string]struct{}{}
		for _, v := range s.volumes {
			cfg.Volumes[v] = struct{}{}
		}
	}
	return cfg
}
