package cli

import (
	"context"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/test/moto"
)

const secretsRegion = "eu-central-1"

// secretsKMS starts moto, points the SDK's default chain at static test
// credentials only, and creates a KMS key; it returns the server, a KMS
// client of the test and the key's metadata.
func secretsKMS(t *testing.T) (*moto.Server, *kms.Client, string, string) {
	t.Helper()
	isolate(t)
	// moto inherits the environment; it starts before the one of the
	// command is set up.
	srv := moto.Start(t)
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", secretsRegion)
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "missing-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "missing-credentials"))
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_KMS", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	client := kms.NewFromConfig(srv.AWSConfig(secretsRegion))
	key, err := client.CreateKey(secretsContext(t), &kms.CreateKeyInput{Description: aws.String("caravan secrets")})
	require.NoError(t, err)
	return srv, client, aws.ToString(key.KeyMetadata.KeyId), aws.ToString(key.KeyMetadata.Arn)
}

func secretsContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// decryptBoth decrypts an encrypt command's output as the agent does and
// with KMS directly, checks that both agree and returns the plaintext.
func decryptBoth(t *testing.T, client *kms.Client, stdout string) string {
	t.Helper()
	ctx := secretsContext(t)
	value, ok := strings.CutSuffix(stdout, "\n")
	require.True(t, ok, "the output ends in a newline: %q", stdout)
	require.NotContains(t, value, "\n")
	blob64, ok := strings.CutPrefix(value, cloud.EncryptedPrefix)
	require.True(t, ok, "the output starts with %s: %q", cloud.EncryptedPrefix, value)
	blob, err := base64.StdEncoding.DecodeString(blob64)
	require.NoError(t, err)

	plain, err := cloud.Decrypt(ctx, client, value)
	require.NoError(t, err)
	direct, err := client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
	require.NoError(t, err)
	assert.Equal(t, plain, string(direct.Plaintext))
	return plain
}

func TestSecretsEncryptRoundTrip(t *testing.T) {
	srv, client, keyID, keyARN := secretsKMS(t)
	_, err := client.CreateAlias(secretsContext(t), &kms.CreateAliasInput{AliasName: aws.String("alias/caravan"), TargetKeyId: aws.String(keyID)})
	require.NoError(t, err)

	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"argument", "", []string{"s3cret value"}, "s3cret value"},
		{"argument keeps its newlines", "", []string{"line 1\nline 2\n"}, "line 1\nline 2\n"},
		{"stdin without newline", "s3cret", nil, "s3cret"},
		{"stdin trims one newline", "s3cret\n", nil, "s3cret"},
		{"stdin trims one CRLF", "s3cret\r\n", nil, "s3cret"},
		{"stdin keeps the rest", "line 1\nline 2\n\n", nil, "line 1\nline 2\n"},
		{"stdin keeps spaces", "  s3cret \n", nil, "  s3cret "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"secrets", "encrypt", "--key-id", keyID, "--aws-endpoint", srv.Endpoint}, tc.args...)
			code, stdout, stderr := run(t, tc.stdin, args...)
			require.Equal(t, ExitOK, code, stderr)
			assert.Empty(t, stderr)
			assert.NotContains(t, stdout, "s3cret")
			assert.Equal(t, tc.want, decryptBoth(t, client, stdout))
		})
	}

	t.Run("key ARN, alias and region flag", func(t *testing.T) {
		for _, key := range []string{keyARN, "alias/caravan"} {
			code, stdout, stderr := run(t, "", "secrets", "encrypt", "--key-id", key, "--region", secretsRegion, "--aws-endpoint", srv.Endpoint, "s3cret")
			require.Equal(t, ExitOK, code, stderr)
			assert.Equal(t, "s3cret", decryptBoth(t, client, stdout), key)
		}
	})

	t.Run("region of a key ARN", func(t *testing.T) {
		t.Setenv("AWS_REGION", "us-east-1")
		code, stdout, stderr := run(t, "", "secrets", "encrypt", "--key-id", keyARN, "--aws-endpoint", srv.Endpoint, "s3cret")
		require.Equal(t, ExitOK, code, stderr)
		assert.Equal(t, "s3cret", decryptBoth(t, client, stdout))
	})

	t.Run("each encryption differs", func(t *testing.T) {
		_, first, _ := run(t, "", "secrets", "encrypt", "--key-id", keyID, "--aws-endpoint", srv.Endpoint, "s3cret")
		_, second, _ := run(t, "", "secrets", "encrypt", "--key-id", keyID, "--aws-endpoint", srv.Endpoint, "s3cret")
		assert.NotEqual(t, first, second)
	})
}

func TestSecretsEncryptKMSErrorsExitWith1(t *testing.T) {
	srv, _, _, _ := secretsKMS(t)

	code, stdout, stderr := run(t, "", "secrets", "encrypt", "--key-id", "00000000-0000-0000-0000-000000000000", "--aws-endpoint", srv.Endpoint, "s3cret")
	assert.Equal(t, ExitError, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, `Error: encrypting with KMS key "00000000-0000-0000-0000-000000000000" in eu-central-1: `)
	assert.Contains(t, stderr, "NotFoundException")
	assert.NotContains(t, stderr, "--help' for usage.")

	t.Setenv("AWS_REGION", "")
	code, stdout, stderr = run(t, "", "secrets", "encrypt", "--key-id", "alias/caravan", "--aws-endpoint", srv.Endpoint, "s3cret")
	assert.Equal(t, ExitError, code)
	assert.Empty(t, stdout)
	assert.Equal(t, "Error: no AWS region: pass --region (the cluster's region) or set AWS_REGION\n", stderr)
}

func TestSecretsEncryptUsageErrorsExitWith2(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"s3cret"}, `required flag(s) "key-id" not set`},
		{"", []string{"--key-id", "", "s3cret"}, "--key-id must not be empty"},
		{"", []string{"--key-id", "k", ""}, "the value to encrypt must not be empty"},
		{"", []string{"--key-id", "k"}, "the value to encrypt must not be empty: pass VALUE or write it to standard input"},
		{"\n", []string{"--key-id", "k"}, "the value to encrypt must not be empty"},
		{"", []string{"--key-id", "k", "a", "b"}, "accepts at most 1 arg(s), received 2"},
		{"", []string{"--key-id", "k", strings.Repeat("x", 4097)}, "the value to encrypt has 4097 bytes; KMS encrypts at most 4096"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			code, stdout, stderr := run(t, tc.stdin, append([]string{"secrets", "encrypt"}, tc.args...)...)
			assert.Equal(t, ExitUsage, code)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, tc.want)
			assert.Contains(t, stderr, "Run 'caravan secrets encrypt --help' for usage.")
		})
	}
}

func TestSecretsHelp(t *testing.T) {
	isolate(t)
	code, stdout, stderr := run(t, "", "secrets", "encrypt", "--help")
	assert.Equal(t, ExitOK, code)
	assert.Empty(t, stderr)
	for _, want := range []string{"aws:kms:", "kms:Decrypt", "caravan clusters config set ID KEY VALUE", "one trailing newline", "--key-id", "--region", "--aws-endpoint"} {
		assert.Contains(t, stdout, want)
	}
}

// TestSecretsPrefixIsTheAgents: the command line keeps its own copy of
// the prefix so as not to link the agent's dependencies.
func TestSecretsPrefixIsTheAgents(t *testing.T) {
	assert.Equal(t, cloud.EncryptedPrefix, encryptedPrefix)
}
