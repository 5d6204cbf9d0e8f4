// Package gitauth turns git credentials (HTTPS basic or bearer, or an SSH
// key with pinned host keys) into go-git's auth methods, for every part
// that reaches the config repository: the agent reads it, caravan-central
// reads the channels' heads and the command line pushes promotions.
package gitauth

import (
	"fmt"
	"os"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Credentials authenticate to the git server; set at most one kind.
type Credentials struct {
	Username    string
	Password    string
	BearerToken string
	// SSHKey is a PEM private key; KnownHosts, when set, pins the server keys.
	SSHKey     []byte
	SSHUser    string
	KnownHosts []byte
}

// Method returns the go-git auth method of the credentials; nil when there
// are none, which go-git takes as anonymous (or, for SSH, the SSH agent).
func (c Credentials) Method() (transport.AuthMethod, error) {
	switch {
	case len(c.SSHKey) > 0:
		user := c.SSHUser
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeys(user, c.SSHKey, "")
		if err != nil {
			return nil, fmt.Errorf("reading the SSH key: %w", err)
		}
		if len(c.KnownHosts) > 0 {
			cb, err := knownHostsCallback(c.KnownHosts)
			if err != nil {
				return nil, err
			}
			keys.HostKeyCallback = cb
		}
		return keys, nil
	case c.BearerToken != "":
		return &githttp.TokenAuth{Token: c.BearerToken}, nil
	case c.Username != "" || c.Password != "":
		return &githttp.BasicAuth{Username: c.Username, Password: c.Password}, nil
	}
	return nil, nil
}

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
