// Package flagenv lets every command-line flag also be set from the
// environment, as CARAVAN_<FLAG> with dashes turned into underscores.
package flagenv

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// Name is the environment variable of a flag.
func Name(flag string) string {
	return "CARAVAN_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Apply sets every flag not given on the command line from its environment
// variable, when that is set. Flags win over the environment.
func Apply(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		if v, ok := os.LookupEnv(Name(f.Name)); ok {
			if setErr := fs.Set(f.Name, v); setErr != nil {
				err = fmt.Errorf("%s=%q: %w", Name(f.Name), v, setErr)
			}
		}
	})
	return err
}

// Annotate adds the environment variable to every flag's help text.
func Annotate(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && !strings.Contains(f.Usage, "(env ") {
			f.Usage += " (env " + Name(f.Name) + ")"
		}
	})
}
