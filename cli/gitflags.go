package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/caravan-gitops/caravan/pkg/gitauth"
)

// Environment variables of the operator's git credentials; secrets are read
// from the environment only, never from a flag.
const (
	envGitUsername = "CARAVAN_GIT_USERNAME"
	envGitPassword = "CARAVAN_GIT_PASSWORD"
	envGitToken    = "CARAVAN_GIT_TOKEN"
	envGitSSHKey   = "CARAVAN_GIT_SSH_KEY_FILE"
	envKnownHosts  = "CARAVAN_GIT_KNOWN_HOSTS_FILE"
)

// gitFlags are the flags of the commands that read or write the config
// repo with the operator's credentials.
type gitFlags struct {
	gitUsername    string
	sshKeyFile     string
	knownHostsFile string
}

func (f *gitFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.gitUsername, "git-username", "", "git user name for HTTPS (default $"+envGitUsername+"), with the password or access token in $"+envGitPassword+
		"; a bearer token goes in $"+envGitToken+" instead")
	fs.StringVar(&f.sshKeyFile, "git-ssh-key-file", "", "PEM private key for SSH (default $"+envGitSSHKey+")")
	fs.StringVar(&f.knownHostsFile, "git-known-hosts-file", "", "known_hosts file pinning the SSH server's keys (default $"+envKnownHosts+")")
}

// credentials are the operator's git credentials, from flags and environment.
func (f *gitFlags) credentials(getenv func(string) string) (gitauth.Credentials, error) {
	c := gitauth.Credentials{
		Username:    orEnv(f.gitUsername, getenv, envGitUsername),
		Password:    getenv(envGitPassword),
		BearerToken: getenv(envGitToken),
	}
	for _, file := range []struct {
		path string
		into *[]byte
	}{
		{orEnv(f.sshKeyFile, getenv, envGitSSHKey), &c.SSHKey},
		{orEnv(f.knownHostsFile, getenv, envKnownHosts), &c.KnownHosts},
	} {
		if file.path == "" {
			continue
		}
		content, err := os.ReadFile(file.path)
		if err != nil {
			return c, fmt.Errorf("reading git credentials: %w", err)
		}
		*file.into = content
	}
	return c, nil
}

func orEnv(flag string, getenv func(string) string, name string) string {
	if flag != "" {
		return flag
	}
	return getenv(name)
}
