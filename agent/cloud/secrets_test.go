package cloud

import (
	"context"
	"encoding/base64"
	"maps"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/moto"
)

// encrypter makes config item values as an operator does:
// aws kms encrypt, then "aws:kms:" and the base64 of the ciphertext.
type encrypter struct {
	t      *testing.T
	client *kms.Client
	keyID  string
}

func newKey(ctx context.Context, t *testing.T, client *kms.Client) encrypter {
	t.Helper()
	key, err := client.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("caravan config items")})
	require.NoError(t, err)
	return encrypter{t: t, client: client, keyID: aws.ToString(key.KeyMetadata.KeyId)}
}

func (e encrypter) value(plain string) string {
	e.t.Helper()
	out, err := e.client.Encrypt(context.Background(), &kms.EncryptInput{KeyId: aws.String(e.keyID), Plaintext: []byte(plain)})
	require.NoError(e.t, err)
	return EncryptedPrefix + base64.StdEncoding.EncodeToString(out.CiphertextBlob)
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := moto.Start(t)
	cfg := srv.AWSConfig(region)
	calls := moto.CountCalls(&cfg)
	client := kms.NewFromConfig(cfg)
	key := newKey(ctx, t, client)
	secret := key.value("s3cret")

	t.Run("decrypt", func(t *testing.T) {
		assert.NotContains(t, secret, "s3cret")
		plain, err := Decrypt(ctx, client, secret)
		require.NoError(t, err)
		assert.Equal(t, "s3cret", plain)
	})

	t.Run("assignment", func(t *testing.T) {
		in := api.Assignment{
			Cluster: api.AssignedCluster{ID: clusterID, Region: region},
			ConfigItems: map[string]string{
				"vpc_id":         "vpc-0123456789abcdef0",
				"db_password":    secret,
				"plain_kms_note": "encrypted with aws:kms: elsewhere", // the prefix not at the start
			},
			NodePools: []api.AssignedNodePool{
				{Name: "default", ConfigItems: map[string]string{"min_size": "3", "bootstrap_token": key.value("p00l-t0ken")}},
				{Name: "gpu"}, // no items at all
				{Name: "spot", ConfigItems: map[string]string{"spot_max_price": "0.4"}},
			},
		}
		snapshot := copyAssignment(in)
		calls.Reset()

		out, err := DecryptAssignment(ctx, client, in)
		require.NoError(t, err)
		assert.Equal(t, map[string]string{
			"vpc_id":         "vpc-0123456789abcdef0",
			"db_password":    "s3cret",
			"plain_kms_note": "encrypted with aws:kms: elsewhere",
		}, out.ConfigItems)
		require.Len(t, out.NodePools, 3)
		assert.Equal(t, map[string]string{"min_size": "3", "bootstrap_token": "p00l-t0ken"}, out.NodePools[0].ConfigItems)
		assert.Nil(t, out.NodePools[1].ConfigItems)
		assert.Equal(t, map[string]string{"spot_max_price": "0.4"}, out.NodePools[2].ConfigItems)
		assert.Equal(t, in.Cluster, out.Cluster)
		// One Decrypt per encrypted value.
		assert.Equal(t, map[string]int{"KMS.Decrypt": 2}, calls.Snapshot())

		// The input keeps its ciphertext: it is what is stored and hashed.
		assert.Equal(t, snapshot, in)
		// Nor does a change to the copy reach it: its maps and its pools
		// are its own.
		out.ConfigItems["db_password"] = "changed"
		out.NodePools[0].ConfigItems["bootstrap_token"] = "changed"
		out.NodePools[0].Name = "renamed"
		assert.Equal(t, snapshot, in)
	})

	t.Run("without encrypted values", func(t *testing.T) {
		in := api.Assignment{
			Cluster:     api.AssignedCluster{ID: clusterID},
			ConfigItems: map[string]string{"vpc_id": "vpc-0123456789abcdef0"},
		}
		calls.Reset()
		out, err := DecryptAssignment(ctx, client, in)
		require.NoError(t, err)
		assert.Equal(t, in, out, "a copy equal to the assignment, nil pools and all")
		assert.Zero(t, calls.Total())
	})

	t.Run("a value that is not base64", func(t *testing.T) {
		calls.Reset()
		in := api.Assignment{ConfigItems: map[string]string{"db_password": EncryptedPrefix + "not base64!", "vpc_id": "vpc-1"}}
		snapshot := copyAssignment(in)
		_, err := DecryptAssignment(ctx, client, in)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "config item db_password")
		assert.Contains(t, err.Error(), "not base64")
		assert.Zero(t, calls.Total(), "KMS is not asked")
		assert.Equal(t, snapshot, in)
	})

	t.Run("garbage ciphertext", func(t *testing.T) {
		in := api.Assignment{
			ConfigItems: map[string]string{"db_password": secret},
			NodePools: []api.AssignedNodePool{{Name: "gpu", ConfigItems: map[string]string{
				"bootstrap_token": EncryptedPrefix + base64.StdEncoding.EncodeToString([]byte("this was never made by KMS, not by any key")),
			}}},
		}
		snapshot := copyAssignment(in)
		_, err := DecryptAssignment(ctx, client, in)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "node pool gpu: config item bootstrap_token: decrypting with KMS")
		var apiErr smithy.APIError
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, "InvalidCiphertextException", apiErr.ErrorCode())
		assert.Equal(t, snapshot, in)
	})

	t.Run("a key of another region", func(t *testing.T) {
		// Encrypted for another cluster, in another region: this region's
		// KMS cannot decrypt it (moto answers AccessDeniedException).
		elsewhere := newKey(ctx, t, kms.NewFromConfig(srv.AWSConfig("eu-west-1")))
		in := api.Assignment{ConfigItems: map[string]string{"db_password": elsewhere.value("s3cret")}}
		_, err := DecryptAssignment(ctx, client, in)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "config item db_password: decrypting with KMS")
		var apiErr smithy.APIError
		require.ErrorAs(t, err, &apiErr)
		t.Logf("moto: %s", apiErr.ErrorCode())
	})

	t.Run("no KMS client", func(t *testing.T) {
		in := api.Assignment{
			ConfigItems: map[string]string{"vpc_id": "vpc-0123456789abcdef0"},
			NodePools:   []api.AssignedNodePool{{Name: "default", ConfigItems: map[string]string{"min_size": "3"}}},
		}
		out, err := DecryptAssignment(ctx, nil, in)
		require.NoError(t, err, "an agent without KMS access works until a value needs it")
		assert.Equal(t, in, out)

		in.NodePools[0].ConfigItems = map[string]string{"min_size": "3", "bootstrap_token": secret}
		_, err = DecryptAssignment(ctx, nil, in)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "node pool default: config item bootstrap_token")
		assert.Contains(t, err.Error(), "no KMS client")

		_, err = Decrypt(ctx, nil, secret)
		assert.ErrorContains(t, err, "no KMS client")
	})
}

// copyAssignment copies the parts DecryptAssignment reads.
func copyAssignment(a api.Assignment) api.Assignment {
	c := a
	c.ConfigItems = maps.Clone(a.ConfigItems)
	c.NodePools = nil
	for _, p := range a.NodePools {
		p.ConfigItems = maps.Clone(p.ConfigItems)
		c.NodePools = append(c.NodePools, p)
	}
	return c
}
