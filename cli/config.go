package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

const (
	envServer = "CARAVAN_SERVER"
	envToken  = "CARAVAN_TOKEN"
	envConfig = "CARAVAN_CONFIG"
)

// configFile is the command line's config file: named registries and
// their tokens, like kubeconfig contexts.
type configFile struct {
	CurrentContext string          `json:"current-context,omitempty"`
	Contexts       []configContext `json:"contexts"`
}

type configContext struct {
	Name   string `json:"name"`
	Server string `json:"server,omitempty"`
	Token  string `json:"token,omitempty"`
}

func (c *configFile) context(name string) *configContext {
	i := slices.IndexFunc(c.Contexts, func(x configContext) bool { return x.Name == name })
	if i < 0 {
		return nil
	}
	return &c.Contexts[i]
}

// configPath is $CARAVAN_CONFIG, else ~/.config/caravan/config.yaml.
func configPath(getenv func(string) string) (string, error) {
	if p := getenv(envConfig); p != "" {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locating the config file: %w (set %s)", err, envConfig)
	}
	return filepath.Join(home, ".config", "caravan", "config.yaml"), nil
}

// loadConfig reads the config file; a missing file is an empty config.
func loadConfig(path string) (*configFile, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &configFile{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	var c configFile
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// readConfig finds the config file and reads it; path is where it is, or
// would be when it does not exist yet.
func (a *app) readConfig() (path string, cfg *configFile, err error) {
	path, err = configPath(a.getenv)
	if err != nil {
		return "", nil, err
	}
	cfg, err = loadConfig(path)
	if err != nil {
		return "", nil, err
	}
	return path, cfg, nil
}

// saveConfig writes the config file readable by its owner only: it holds tokens.
func saveConfig(path string, c *configFile) error {
	data, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating config directory: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	return nil
}

// connection is where the command line sends its requests.
type connection struct {
	server string
	token  string
}

// resolveConnection picks server and token from, in order: the --server and
// --token flags, the context named by --context, the environment, the
// current context. A context's token is only ever sent to that context's
// server, so --server pointing elsewhere never leaks it.
func resolveConnection(flags globalFlags, getenv func(string) string, cfg *configFile, path string) (connection, error) {
	sources := []connection{{server: flags.server, token: flags.token}}
	if flags.context != "" {
		ctx := cfg.context(flags.context)
		if ctx == nil {
			return connection{}, fmt.Errorf("context %q is not in %s", flags.context, path)
		}
		sources = append(sources, connection{server: ctx.Server, token: ctx.Token})
	}
	sources = append(sources, connection{server: getenv(envServer), token: getenv(envToken)})
	if ctx := cfg.context(cfg.CurrentContext); flags.context == "" && ctx != nil {
		sources = append(sources, connection{server: ctx.Server, token: ctx.Token})
	}
	var conn connection
	for _, s := range sources {
		if conn.server == "" {
			conn.server = s.server
		}
	}
	if conn.server == "" {
		return connection{}, fmt.Errorf("no registry server: pass --server, set %s, or add a context with 'caravan config set-context'", envServer)
	}
	for _, s := range sources {
		if conn.token == "" && (s.server == "" || s.server == conn.server) {
			conn.token = s.token
		}
	}
	return conn, nil
}

func (a *app) configCommand() *cobra.Command {
	return group(&cobra.Command{
		Use:   "config",
		Short: "Manage the registries the command line talks to",
		Long: `Manage contexts: named registry servers with their tokens.

Contexts live in $CARAVAN_CONFIG, or ~/.config/caravan/config.yaml when it is
not set. The file holds tokens and is written readable by its owner only.`,
		Example: `  caravan config set-context prod --server https://caravan.example.org --token "$TOKEN"
  caravan config use-context prod
  caravan config get-contexts`,
	}, a.setContextCommand(), a.useContextCommand(), a.getContextsCommand(), a.deleteContextCommand())
}

func (a *app) setContextCommand() *cobra.Command {
	var server, token string
	cmd := &cobra.Command{
		Use:   "set-context NAME",
		Short: "Add a context or change its server or token",
		Long: `Add a context or change its server or token. Flags left out keep their
current value. The first context added becomes the current context.`,
		Example: `  caravan config set-context prod --server https://caravan.example.org --token "$TOKEN"
  caravan config set-context prod --token "$NEW_TOKEN"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.editConfig(func(cfg *configFile) (string, error) {
				ctx := cfg.context(args[0])
				if ctx == nil {
					cfg.Contexts = append(cfg.Contexts, configContext{Name: args[0]})
					ctx = &cfg.Contexts[len(cfg.Contexts)-1]
				}
				if cmd.Flags().Changed("server") {
					ctx.Server = server
				}
				if cmd.Flags().Changed("token") {
					ctx.Token = token
				}
				if cfg.CurrentContext == "" {
					cfg.CurrentContext = args[0]
				}
				return fmt.Sprintf("context %q saved", args[0]), nil
			})
		},
	}
	cmd.Flags().StringVar(&server, "server", "", "URL of the registry, such as https://caravan.example.org, or of its replicas separated by commas")
	cmd.Flags().StringVar(&token, "token", "", "API token for the registry")
	return cmd
}

func (a *app) useContextCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "use-context NAME",
		Short:   "Make a context the current one",
		Long:    "Make a context the current one: commands use it unless --context, --server or CARAVAN_SERVER say otherwise.",
		Example: "  caravan config use-context prod",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.editConfig(func(cfg *configFile) (string, error) {
				if cfg.context(args[0]) == nil {
					return "", fmt.Errorf("context %q does not exist; add it with 'caravan config set-context'", args[0])
				}
				cfg.CurrentContext = args[0]
				return fmt.Sprintf("switched to context %q", args[0]), nil
			})
		},
	}
}

func (a *app) deleteContextCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "delete-context NAME",
		Short:   "Remove a context and its token",
		Long:    "Remove a context and its token from the config file. Removing the current context leaves none current.",
		Example: "  caravan config delete-context staging",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.editConfig(func(cfg *configFile) (string, error) {
				if cfg.context(args[0]) == nil {
					return "", fmt.Errorf("context %q does not exist", args[0])
				}
				cfg.Contexts = slices.DeleteFunc(cfg.Contexts, func(c configContext) bool { return c.Name == args[0] })
				if cfg.CurrentContext == args[0] {
					cfg.CurrentContext = ""
				}
				return fmt.Sprintf("context %q deleted", args[0]), nil
			})
		},
	}
}

func (a *app) getContextsCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "get-contexts",
		Short:   "List the contexts",
		Long:    "List the contexts of the config file; the current one is marked with *. Tokens are not shown.",
		Example: "  caravan config get-contexts",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, cfg, err := a.readConfig()
			if err != nil {
				return err
			}
			rows := make([][]string, len(cfg.Contexts))
			for i, c := range cfg.Contexts {
				current := ""
				if c.Name == cfg.CurrentContext {
					current = "*"
				}
				rows[i] = []string{current, c.Name, c.Server}
			}
			return writeTable(a.out, []string{"CURRENT", "NAME", "SERVER"}, rows)
		},
	}
}

// editConfig loads the config, applies edit and saves it, then prints edit's message.
func (a *app) editConfig(edit func(*configFile) (string, error)) error {
	path, cfg, err := a.readConfig()
	if err != nil {
		return err
	}
	msg, err := edit(cfg)
	if err != nil {
		return err
	}
	if err := saveConfig(path, cfg); err != nil {
		return err
	}
	fmt.Fprintln(a.out, msg)
	return nil
}
