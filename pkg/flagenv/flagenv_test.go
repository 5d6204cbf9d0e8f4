package flagenv

import (
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEnvironmentFillsFlagsNotGiven(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address")
	db := fs.String("database", "sqlite://a.db", "database")
	insecure := fs.Bool("insecure-http", false, "plain http")
	t.Setenv("CARAVAN_LISTEN", "0.0.0.0:9")
	t.Setenv("CARAVAN_DATABASE", "postgres://x")
	t.Setenv("CARAVAN_INSECURE_HTTP", "true")
	require.NoError(t, fs.Parse([]string{"--database", "sqlite://b.db"}))
	require.NoError(t, Apply(fs))
	assert.Equal(t, "0.0.0.0:9", *listen)
	assert.Equal(t, "sqlite://b.db", *db, "a flag on the command line wins")
	assert.True(t, *insecure)

	Annotate(fs)
	assert.Contains(t, fs.Lookup("insecure-http").Usage, "(env CARAVAN_INSECURE_HTTP)")
}

func TestBadEnvironmentValueIsAnError(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.Int("port", 1, "port")
	t.Setenv("CARAVAN_PORT", "many")
	require.NoError(t, fs.Parse(nil))
	assert.ErrorContains(t, Apply(fs), "CARAVAN_PORT")
}
