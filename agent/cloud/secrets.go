package cloud

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// EncryptedPrefix marks a config item value that is KMS ciphertext, in
// base64: the registry stores it as it is and only the agent, in the
// cluster's own account, can read it.
const EncryptedPrefix = "aws:kms:"

// Decrypter is the part of KMS the agent calls; *kms.Client has it.
type Decrypter interface {
	Decrypt(ctx context.Context, in *kms.DecryptInput, opts ...func(*kms.Options)) (*kms.DecryptOutput, error)
}

// DecryptAssignment returns a copy of the assignment whose encrypted config
// items, the cluster's and each node pool's, hold their plaintext. The
// copy lives in memory only; what is stored or hashed is the original.
func DecryptAssignment(ctx context.Context, d Decrypter, a api.Assignment) (api.Assignment, error) {
	var err error
	if a.ConfigItems, err = decryptItems(ctx, d, a.ConfigItems); err != nil {
		return a, err
	}
	// A copy of the pools, nil when they are: the caller's pools keep
	// their maps.
	pools := slices.Clone(a.NodePools)
	for i := range pools {
		if pools[i].ConfigItems, err = decryptItems(ctx, d, pools[i].ConfigItems); err != nil {
			return a, fmt.Errorf("node pool %s: %w", pools[i].Name, err)
		}
	}
	a.NodePools = pools
	return a, nil
}

// decryptItems decrypts each encrypted value once; a map without any is
// returned as it is, so an agent without KMS access works until a value
// needs it.
func decryptItems(ctx context.Context, d Decrypter, items map[string]string) (map[string]string, error) {
	var out map[string]string
	for key, value := range items {
		if !strings.HasPrefix(value, EncryptedPrefix) {
			continue
		}
		plain, err := Decrypt(ctx, d, value)
		if err != nil {
			return nil, fmt.Errorf("config item %s: %w", key, err)
		}
		if out == nil {
			out = maps.Clone(items)
		}
		out[key] = plain
	}
	if out == nil {
		return items, nil
	}
	return out, nil
}

// Decrypt turns one "aws:kms:<base64>" value into its plaintext.
func Decrypt(ctx context.Context, d Decrypter, value string) (string, error) {
	blob, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(value, EncryptedPrefix))
	if err != nil {
		return "", fmt.Errorf("the value after %q is not base64: %w", EncryptedPrefix, err)
	}
	if d == nil {
		return "", fmt.Errorf("the value is encrypted and the agent has no KMS client")
	}
	out, err := d.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
	if err != nil {
		return "", fmt.Errorf("decrypting with KMS: %w", err)
	}
	return string(out.Plaintext), nil
}
