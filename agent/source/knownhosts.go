package source

import (
	"fmt"
	"os"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// knownHostsCallback checks server keys against known_hosts content;
// knownhosts reads only files, so the content goes through a temporary one.
func knownHostsCallback(content []byte) (gossh.HostKeyCallback, error) {
	f, err := os.CreateTemp("", "caravan-known-hosts-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(content); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	cb, err := knownhosts.New(f.Name())
	if err != nil {
		return nil, fmt.Errorf("reading known hosts: %w", err)
	}
	return cb, nil
}
