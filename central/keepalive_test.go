package central_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// countingClient is an agent's HTTP client that counts the connections it makes.
type countingClient struct {
	*http.Client
	dials atomic.Int32
}

func newCountingClient(tlsConfig *tls.Config, http2 bool) *countingClient {
	c := &countingClient{}
	dialer := &net.Dialer{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c.dials.Add(1)
			return dialer.DialContext(ctx, network, addr)
		},
		TLSClientConfig: tlsConfig, ForceAttemptHTTP2: http2,
	}
	if !http2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	c.Client = &http.Client{Transport: tr, Timeout: time.Minute}
	return c
}

// send makes one request as an agent and returns the answer, its body read.
func (c *countingClient) send(t *testing.T, method, url, token, ifNoneMatch, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	if ifNoneMatch != "" {
		req.Header.Set("If-None-Match", ifNoneMatch)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, out
}

// agentRound is what an agent does over one connection: a long-poll that
// a change answers, a long-poll that runs out, a status report. It
// returns the answers' protocol.
func agentRound(t *testing.T, base string, c *countingClient, admin *client, token string) string {
	t.Helper()
	assignment := base + "/api/v1/clusters/" + clusterA + "/assignment"
	res, _ := c.send(t, "GET", assignment, token, "", "")
	require.Equal(t, http.StatusOK, res.StatusCode)
	etag := res.Header.Get("ETag")

	answered := make(chan *http.Response, 1)
	go func() {
		res, _ := c.send(t, "GET", assignment+"?wait=30s", token, etag, "")
		answered <- res
	}()
	require.Eventually(t, func() bool { return metricVia(t, admin, "caravan_central_long_polls_waiting") == 1 }, 10*time.Second, 20*time.Millisecond)
	admin.must(http.StatusOK, "PATCH", "/api/v1/clusters/"+clusterA, `{"config_items":{"round":"`+time.Now().Format(time.RFC3339Nano)+`"}}`)
	var woken *http.Response
	select {
	case woken = <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("the change did not answer the long-poll")
	}
	require.Equal(t, http.StatusOK, woken.StatusCode)
	assert.False(t, woken.Close, "the answer keeps the connection")

	res, _ = c.send(t, "GET", assignment+"?wait=1s", token, woken.Header.Get("ETag"), "")
	require.Equal(t, http.StatusNotModified, res.StatusCode)
	assert.False(t, res.Close, "an answer at the end of the wait keeps the connection too")

	res, body := c.send(t, "PUT", base+"/api/v1/clusters/"+clusterA+"/status", token, "", `{"current_version":"v1","phase":"idle"}`)
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", body)
	return res.Proto
}

// Regression: an answered long-poll closed its connection, so every agent
// a change woke connected again at the same moment, and a replica refused
// the burst as unauthenticated connections.
func TestAnsweredLongPollsKeepTheirConnection(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		agent := newCountingClient(nil, false)
		agentRound(t, srv.URL, agent, admin, srv.Token(t, api.RoleAgent, clusterA))
		assert.Equal(t, int32(1), agent.dials.Load(), "one connection carried both polls and the report")
	}, withPollSweep(50*time.Millisecond))
}

// Over TLS, the connection of an answered long-poll goes back to the
// server with its TLS session; HTTP/2 polls wait in their handler on a
// connection that stays anyway.
func TestAnsweredLongPollsKeepTheirTLSConnection(t *testing.T) {
	certFile, keyFile, pool := selfSignedCertificate(t)
	srv := centraltest.Start(t, func(c *central.Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile })
	base := "https://" + strings.TrimPrefix(srv.URL, "http://")
	admin := newClient(t, srv, srv.AdminToken)
	admin.base, admin.tls = base, &tls.Config{RootCAs: pool}
	seed(t, admin)
	token := srv.Token(t, api.RoleAgent, clusterA)

	http1 := newCountingClient(&tls.Config{RootCAs: pool}, false)
	assert.Equal(t, "HTTP/1.1", agentRound(t, base, http1, admin, token))
	assert.Equal(t, int32(1), http1.dials.Load(), "one TLS connection carried both polls and the report")

	http2 := newCountingClient(&tls.Config{RootCAs: pool}, true)
	assert.Equal(t, "HTTP/2.0", agentRound(t, base, http2, admin, token))
	assert.Equal(t, int32(1), http2.dials.Load())
}

// selfSignedCertificate writes a certificate for 127.0.0.1 and its key,
// and returns their files and a pool trusting it.
func selfSignedCertificate(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "caravan-central"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
