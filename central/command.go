package central

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/caravan-gitops/caravan/central/demo"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/channels"
	"github.com/caravan-gitops/caravan/pkg/flagenv"
	"github.com/caravan-gitops/caravan/pkg/version"
)

const defaultDatabase = "sqlite://caravan.db"

// Command is the caravan-central command line.
func Command() *cobra.Command {
	root := &cobra.Command{
		Use:   "caravan-central",
		Short: "The Caravan registry: clusters, channels, assignments and status",
		Long: `caravan-central is the registry of a Caravan fleet. It records every cluster, the
release channel it follows and its configuration, hands each cluster's agent its
assignment, and keeps the status agents report. Every flag can also be set as an
environment variable CARAVAN_<FLAG>, dashes written as underscores.`,
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate(version.Template)
	root.AddCommand(serveCommand(), tokenCommand(), demoCommand())
	return root
}

func withEnv(cmd *cobra.Command) *cobra.Command {
	flagenv.Annotate(cmd.Flags())
	inner := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if err := flagenv.Apply(c.Flags()); err != nil {
			return err
		}
		if inner != nil {
			return inner(c, args)
		}
		return nil
	}
	return cmd
}

type serveFlags struct {
	cfg            Config
	logLevel       string
	git            gitFlags
	adminTokenFile string
}

// gitFlags name the files of the read-only git credentials, so that no
// secret shows in a process listing.
type gitFlags struct {
	passwordFile   string
	tokenFile      string
	sshKeyFile     string
	knownHostsFile string
	// webhookSecretFile holds the git webhooks' secret.
	webhookSecretFile string
}

func (f *serveFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.cfg.Listen, "listen", "127.0.0.1:8080", "address to serve on")
	fs.StringVar(&f.cfg.Database, "database", defaultDatabase, "sqlite://PATH, or postgres://USER:PASSWORD@HOST/DB for replicas")
	fs.StringVar(&f.cfg.TLSCertFile, "tls-cert", "", "TLS certificate file (PEM)")
	fs.StringVar(&f.cfg.TLSKeyFile, "tls-key", "", "TLS private key file (PEM)")
	fs.BoolVar(&f.cfg.InsecureHTTP, "insecure-http", false, "allow plain HTTP on a non-loopback address (behind a TLS-terminating proxy only)")
	fs.StringVar(&f.cfg.RepositoryURL, "repository-url", "", "config repo URL of the default channels and of new channels that name none")
	fs.DurationVar(&f.cfg.MaxWait, "max-wait", 5*time.Minute, "longest assignment long-poll a client may ask for")
	fs.IntVar(&f.cfg.MaxWaitingPolls, "max-waiting-polls", 20000, "most assignment long-polls waiting at once; beyond, polls are answered 503 with Retry-After")
	fs.IntVar(&f.cfg.MaxWaitingPollsPerToken, "max-waiting-polls-per-token", 100, "most assignment long-polls of one token waiting at once")
	fs.IntVar(&f.cfg.MaxUnauthenticatedConns, "max-unauthenticated-conns", 1024, "most connections that have not presented a valid token or session yet; beyond, new connections wait to be accepted until one of those does or closes (negative: no limit)")
	fs.IntVar(&f.cfg.MaxUnauthenticatedConnsPerIP, "max-unauthenticated-conns-per-ip", 128, "most such connections from one client address; beyond, a new one is closed at once (behind a proxy all clients share its address: raise it; negative: no limit)")
	fs.DurationVar(&f.cfg.BodyTimeout, "body-timeout", 30*time.Second, "longest time a client may take to send a request body")
	fs.DurationVar(&f.cfg.SessionTTL, "session-ttl", 12*time.Hour, "how long a web UI sign-in lasts; sign-out ends it at once")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.cfg.Git.Username, "git-username", "", "user name for reading the config repo over HTTPS, with --git-password-file")
	fs.StringVar(&f.git.passwordFile, "git-password-file", "", "file holding the password (or access token) of --git-username")
	fs.StringVar(&f.git.tokenFile, "git-token-file", "", "file holding a bearer token for reading the config repo over HTTPS")
	fs.StringVar(&f.git.sshKeyFile, "git-ssh-key-file", "", "PEM private key for reading the config repo over SSH")
	fs.StringVar(&f.git.knownHostsFile, "git-known-hosts-file", "", "known_hosts file pinning the SSH server's keys (default: ~/.ssh/known_hosts)")
	fs.DurationVar(&f.cfg.GitRefresh, "git-refresh", 30*time.Second, "how often the channels' branch heads are read from git")
	fs.StringVar(&f.git.webhookSecretFile, "webhook-secret-file", "", "file holding the secret of git push webhooks (POST /api/v1/webhooks/git: GitHub's X-Hub-Signature-256 HMAC, GitLab's X-Gitlab-Token); without it the endpoint answers 404 and heads are read every --git-refresh only")
	fs.DurationVar(&f.cfg.HeartbeatTimeout, "heartbeat-timeout", channels.DefaultHeartbeatTimeout, "how long after its last report a cluster is silent, and no evidence for the promotion gate (3 × the agent's default --interval; raise it with the agents' --interval)")
	fs.StringVar(&f.adminTokenFile, "admin-token-file", "", "file holding the secret of the admin token "+AdminTokenName+", made or rotated on start (32 to 256 letters, digits or -._~+/=); a missing or empty file is skipped")
}

// readFiles reads the secrets the flags name files of.
func (f *serveFlags) readFiles(log *slog.Logger) error {
	if err := f.readGitCredentials(); err != nil {
		return err
	}
	return f.readAdminToken(log)
}

// readGitCredentials reads the files the --git-* flags name.
func (f *serveFlags) readGitCredentials() error {
	if f.cfg.GitRefresh <= 0 {
		return fmt.Errorf("--git-refresh must be positive, got %s", f.cfg.GitRefresh)
	}
	for flag, d := range map[string]time.Duration{"--body-timeout": f.cfg.BodyTimeout, "--session-ttl": f.cfg.SessionTTL, "--heartbeat-timeout": f.cfg.HeartbeatTimeout} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive, got %s", flag, d)
		}
	}
	for flag, n := range map[string]int{"--max-waiting-polls": f.cfg.MaxWaitingPolls, "--max-waiting-polls-per-token": f.cfg.MaxWaitingPollsPerToken} {
		if n <= 0 {
			return fmt.Errorf("%s must be positive, got %d", flag, n)
		}
	}
	for _, file := range []struct {
		flag, path string
		into       func(string)
	}{
		{"--git-password-file", f.git.passwordFile, func(v string) { f.cfg.Git.Password = strings.TrimSpace(v) }},
		{"--git-token-file", f.git.tokenFile, func(v string) { f.cfg.Git.BearerToken = strings.TrimSpace(v) }},
		{"--git-ssh-key-file", f.git.sshKeyFile, func(v string) { f.cfg.Git.SSHKey = []byte(v) }},
		{"--git-known-hosts-file", f.git.knownHostsFile, func(v string) { f.cfg.Git.KnownHosts = []byte(v) }},
		{"--webhook-secret-file", f.git.webhookSecretFile, func(v string) { f.cfg.WebhookSecret = strings.TrimSpace(v) }},
	} {
		if file.path == "" {
			continue
		}
		content, err := os.ReadFile(file.path)
		if err != nil {
			return fmt.Errorf("%s: %w", file.flag, err)
		}
		file.into(string(content))
	}
	if f.git.webhookSecretFile != "" && len(f.cfg.WebhookSecret) < minWebhookSecret {
		return fmt.Errorf("--webhook-secret-file %s: the secret must be at least %d characters long, got %d", f.git.webhookSecretFile, minWebhookSecret, len(f.cfg.WebhookSecret))
	}
	return nil
}

// minWebhookSecret is the shortest webhook secret taken: it is the
// webhook's only authentication.
const minWebhookSecret = 16

// The bounds of the secret of --admin-token-file: long enough that no one
// guesses it, short enough for an Authorization header.
const adminTokenMinLength, adminTokenMaxLength = 32, 256

// adminTokenCharacters are those of an RFC 6750 bearer token.
var adminTokenCharacters = regexp.MustCompile(`[^A-Za-z0-9._~+/=-]`)

// readAdminToken reads and checks the secret of --admin-token-file. A
// missing or empty file is skipped with a warning, so that the flag may
// name an optional mount.
func (f *serveFlags) readAdminToken(log *slog.Logger) error {
	if f.adminTokenFile == "" {
		return nil
	}
	content, err := os.ReadFile(f.adminTokenFile)
	if errors.Is(err, os.ErrNotExist) {
		log.Warn("no admin token from --admin-token-file: the file does not exist", "file", f.adminTokenFile)
		return nil
	}
	if err != nil {
		return fmt.Errorf("--admin-token-file: %w", err)
	}
	secret := strings.TrimSpace(string(content))
	if secret == "" {
		log.Warn("no admin token from --admin-token-file: the file is empty", "file", f.adminTokenFile)
		return nil
	}
	if n := len(secret); n < adminTokenMinLength || n > adminTokenMaxLength {
		return fmt.Errorf("--admin-token-file %s: the token must be %d to %d characters long, got %d", f.adminTokenFile, adminTokenMinLength, adminTokenMaxLength, n)
	}
	if at := adminTokenCharacters.FindStringIndex(secret); at != nil {
		return fmt.Errorf("--admin-token-file %s: the token may hold only letters, digits and -._~+/=, got %q at position %d", f.adminTokenFile, secret[at[0]:at[1]], at[0]+1)
	}
	f.cfg.AdminToken = secret
	return nil
}

func (f *serveFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", f.logLevel, err)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})), nil
}

func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

func serveCommand() *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the registry API and web UI",
		Long: `Serve the registry's REST API (spec at /api/v1/openapi.yaml), the web UI at / (sign
in with a reader or admin token), /healthz, /readyz and /metrics. Migrations are
applied on start. The head of every channel's branch is read from git every
--git-refresh, with the read-only --git-* credentials. Plain HTTP is refused on a
non-loopback address unless --insecure-http is given. SIGTERM ends waiting
long-polls with 304 and lets requests under way finish.

--webhook-secret-file turns on POST /api/v1/webhooks/git: a git push event
signed with the file's secret (GitHub, GitLab, or a plain {"ref","after"} with
GitHub's signature header) makes the registry read that branch's head at once and
wake its channel's waiting long-polls, instead of within --git-refresh.

--admin-token-file gives the registry a first admin token, named ` + AdminTokenName + `,
with the file's secret: made on the first start, left alone on the next ones,
given the new secret when the file changes (the former secret stops working).
Revoked through the API, it stays revoked across restarts until the file holds
a new secret.`,
		Example: `  caravan-central serve
  caravan-central serve --listen 0.0.0.0:8443 --tls-cert tls.crt --tls-key tls.key \
    --database postgres://caravan:secret@db/caravan
  caravan-central serve --admin-token-file /etc/caravan/admin-token/token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := f.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			f.cfg.Logger = log
			if err := f.readFiles(log); err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			return Run(ctx, f.cfg)
		},
	}
	f.register(cmd)
	return withEnv(cmd)
}

func demoCommand() *cobra.Command {
	f := &serveFlags{}
	var dir string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Serve a registry seeded with a demo fleet",
		Long: `Seed the database with a demo fleet (two accounts, a test and a production cluster in
every channel, node pools and config items), create an admin token, write the
server URL and token to DIR/demo.env, and serve.`,
		Example: `  caravan-central demo --dir .caravan
  . .caravan/demo.env && caravan clusters list`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := f.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			if f.cfg.Database == defaultDatabase {
				f.cfg.Database = "sqlite://" + filepath.Join(dir, "demo.db")
			}
			token, err := seedDemo(f.cfg.Database)
			if err != nil {
				return err
			}
			f.cfg.Logger = log
			if err := f.readFiles(log); err != nil {
				return err
			}
			f.cfg.Ready = func(addr string) { announceDemo(cmd.OutOrStdout(), dir, "http://"+addr, token) }
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			return Run(ctx, f.cfg)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&dir, "dir", ".caravan", "folder for the demo database and demo.env")
	return withEnv(cmd)
}

func seedDemo(databaseURL string) (string, error) {
	ctx := context.Background()
	st, err := store.Open(ctx, databaseURL)
	if err != nil {
		return "", err
	}
	defer st.Close()
	if err := st.SeedChannels(ctx, DefaultChannels(""), "demo-seed"); err != nil {
		return "", err
	}
	return demo.Seed(ctx, st)
}

func announceDemo(w io.Writer, dir, url, token string) {
	env := fmt.Sprintf("CARAVAN_SERVER=%s\nCARAVAN_TOKEN=%s\nexport CARAVAN_SERVER CARAVAN_TOKEN\n", url, token)
	if cliDir := siblingCLI(); cliDir != "" {
		// So that `caravan` works right after sourcing the file.
		env += fmt.Sprintf("PATH=%q:\"$PATH\"\n", cliDir)
	}
	envFile := filepath.Join(dir, "demo.env")
	if err := os.WriteFile(envFile, []byte(env), 0o600); err != nil {
		fmt.Fprintf(w, "could not write %s: %v\n", envFile, err)
	}
	fmt.Fprintf(w, `
Caravan registry demo is running.

  URL:          %s   (the web UI: sign in with the admin token)
  admin token:  %s
  (both written to %s)

Try, in another terminal:
  . %s
  caravan clusters list
  caravan clusters list --channel stable -o wide
  caravan clusters block %s --reason "investigating an incident"

Ctrl-C stops the demo.
`, url, token, envFile, envFile, demo.Clusters()[0].ID)
}

// siblingCLI is the folder of the caravan command when it was built next to
// this executable, as `make build` does.
func siblingCLI() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	dir := filepath.Dir(exe)
	if _, err := os.Stat(filepath.Join(dir, "caravan")); err != nil {
		return ""
	}
	return dir
}

func tokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens directly in the database",
		Long: `Manage API tokens directly in the database, for example to bootstrap the first admin
token. Tokens are stored hashed; a new token's secret is printed once.`,
	}
	var database string
	cmd.PersistentFlags().StringVar(&database, "database", defaultDatabase, "sqlite://PATH or postgres://...")
	cmd.AddCommand(tokenCreateCommand(&database), tokenListCommand(&database), tokenRevokeCommand(&database))
	return cmd
}

func withStore(databaseURL string, fn func(ctx context.Context, st *store.Store) error) error {
	ctx := context.Background()
	st, err := store.Open(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(ctx, st)
}

func tokenCreateCommand(database *string) *cobra.Command {
	var role, name, cluster string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a token and print its secret alone on stdout",
		Example: `  caravan-central token create --role admin --name ops
  caravan-central token create --role agent --cluster aws:123456789012:eu-central-1:kube-1 --name kube-1-agent`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(*database, func(ctx context.Context, st *store.Store) error {
				t, err := st.CreateToken(ctx, name, role, cluster, "caravan-central token create")
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), t.Secret)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "admin, reader or agent")
	cmd.Flags().StringVar(&name, "name", "", "a unique name for the token, shown in the audit log")
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster an agent token is bound to")
	_ = cmd.MarkFlagRequired("role")
	_ = cmd.MarkFlagRequired("name")
	return withEnv(cmd)
}

func tokenListCommand(database *string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(*database, func(ctx context.Context, st *store.Store) error {
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tROLE\tCLUSTER\tCREATED\tREVOKED")
				next := ""
				for {
					tokens, n, err := st.Tokens(ctx, store.Filter{Limit: 1000, Continue: next})
					if err != nil {
						return err
					}
					for _, t := range tokens {
						revoked := "-"
						if t.RevokedAt != nil {
							revoked = t.RevokedAt.Format(time.RFC3339)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, orDash(t.ClusterID), t.CreatedAt.Format(time.RFC3339), revoked)
					}
					if next = n; next == "" {
						return tw.Flush()
					}
				}
			})
		},
	}
	return withEnv(cmd)
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

func tokenRevokeCommand(database *string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token; a running server stops accepting it within 30 seconds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(*database, func(ctx context.Context, st *store.Store) error {
				_, err := st.RevokeToken(ctx, args[0], "caravan-central token revoke")
				return err
			})
		},
	}
	return withEnv(cmd)
}
