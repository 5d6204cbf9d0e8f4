package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/spf13/cobra"
)

// encryptedPrefix marks a config item value that is KMS ciphertext in
// base64. It is the agent's cloud.EncryptedPrefix (a test checks that they
// agree), repeated here so that the command line does not link the
// agent's CloudFormation and kustomize dependencies.
const encryptedPrefix = "aws:kms:"

// kmsMaxPlaintext is the most KMS Encrypt takes.
const kmsMaxPlaintext = 4096

func (a *app) secretsCommand() *cobra.Command {
	return group(&cobra.Command{
		Use:     "secrets",
		Aliases: []string{"secret"},
		Short:   "Encrypt secret config item values for a cluster's agent",
		Long: `Encrypt secret values with AWS KMS, so that they can be set as config items
while the registry only ever holds ciphertext; the agent of the cluster
decrypts them in memory.`,
		Example: `  caravan secrets encrypt --key-id alias/caravan --region eu-central-1 's3cret'`,
	}, a.secretsEncryptCommand())
}

func (a *app) secretsEncryptCommand() *cobra.Command {
	var keyID, region, endpoint string
	cmd := &cobra.Command{
		Use:   "encrypt --key-id KEY [--region R] [--aws-endpoint URL] [VALUE]",
		Short: "Encrypt a value with AWS KMS into an aws:kms: config item value",
		Long: `Encrypt VALUE with AWS KMS and print it as aws:kms:<base64 of the ciphertext>,
the form of a config item value that the agent decrypts.

Without VALUE, all of standard input is encrypted, with one trailing newline
(\n or \r\n) trimmed, so that a file or echo ending in a newline gives the
value itself. Standard input keeps the secret out of the shell history and
the process list.

Encrypt in the cluster's own AWS account and region, with a KMS key that the
cluster's agent may decrypt with: its role needs kms:Decrypt on the key. Then
set the output as a config item value at the registry with
'caravan clusters config set ID KEY VALUE'. The registry only ever stores the
ciphertext; the agent decrypts it in memory when it renders the config. No
one without kms:Decrypt on the key can read it.

KEY is a key id, key ARN, alias name (alias/NAME) or alias ARN. AWS
credentials and the region come from the SDK's default chain (environment,
~/.aws/config and credentials, SSO, instance or pod roles); --region
overrides the region, which otherwise is that of a key or alias ARN.
KMS encrypts at most 4096 bytes.`,
		Example: `  caravan secrets encrypt --key-id alias/caravan --region eu-central-1 's3cret'
  caravan clusters config set aws:123456789012:eu-central-1:kube-1 db_password \
    "$(caravan secrets encrypt --key-id alias/caravan --region eu-central-1 < db-password.txt)"`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyID == "" {
				return usagef("--key-id must not be empty")
			}
			value, err := a.secretValue(args)
			if err != nil {
				return err
			}
			out, err := encryptSecret(cmd.Context(), keyID, region, endpoint, value)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.out, out)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&keyID, "key-id", "", "KMS key to encrypt with: key id, key ARN, alias/NAME or alias ARN (required)")
	fs.StringVar(&region, "region", "", "AWS region of the key, the cluster's region (overrides the SDK's default region)")
	fs.StringVar(&endpoint, "aws-endpoint", "", "endpoint of KMS, for an emulator; AWS's own endpoint when empty")
	_ = cmd.MarkFlagRequired("key-id")
	return cmd
}

// secretValue is the argument, else all of stdin without one trailing
// newline.
func (a *app) secretValue(args []string) (string, error) {
	var value string
	if len(args) == 1 {
		value = args[0]
	} else {
		if f, ok := a.in.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				fmt.Fprintln(a.errOut, "Reading the value from standard input; end it with Ctrl-D.")
			}
		}
		in, err := io.ReadAll(a.in)
		if err != nil {
			return "", fmt.Errorf("reading the value from standard input: %w", err)
		}
		value = string(in)
		if v, ok := strings.CutSuffix(value, "\n"); ok {
			value = strings.TrimSuffix(v, "\r")
		}
	}
	switch {
	case value == "" && len(args) == 1:
		return "", usagef("the value to encrypt must not be empty")
	case value == "":
		return "", usagef("the value to encrypt must not be empty: pass VALUE or write it to standard input")
	case len(value) > kmsMaxPlaintext:
		return "", usagef("the value to encrypt has %d bytes; KMS encrypts at most %d", len(value), kmsMaxPlaintext)
	}
	return value, nil
}

// encryptSecret encrypts value with the KMS key and returns it in the form
// the agent decrypts.
func encryptSecret(ctx context.Context, keyID, region, endpoint, value string) (string, error) {
	var opts []func(*config.LoadOptions) error
	if region == "" {
		region = arnRegion(keyID)
	}
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return "", fmt.Errorf("loading the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return "", fmt.Errorf("no AWS region: pass --region (the cluster's region) or set AWS_REGION")
	}
	if endpoint != "" {
		cfg.BaseEndpoint = aws.String(endpoint)
	}
	out, err := kms.NewFromConfig(cfg).Encrypt(ctx, &kms.EncryptInput{
		KeyId:     aws.String(keyID),
		Plaintext: []byte(value),
	})
	if err != nil {
		return "", fmt.Errorf("encrypting with KMS key %q in %s: %w", keyID, cfg.Region, err)
	}
	return encryptedPrefix + base64.StdEncoding.EncodeToString(out.CiphertextBlob), nil
}

// arnRegion is the region of a key or alias ARN, else "".
func arnRegion(keyID string) string {
	if !arn.IsARN(keyID) {
		return ""
	}
	a, err := arn.Parse(keyID)
	if err != nil {
		return ""
	}
	return a.Region
}
