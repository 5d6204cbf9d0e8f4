package main

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testCACerts is a PEM bundle of one self-signed certificate, standing in for
// the build machine's bundle so that tests can compare it byte for byte.
func testCACerts(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "imagebuild test CA"},
		NotBefore:             time.Unix(0, 0),
		NotAfter:              time.Unix(0, 0).Add(100 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// tarEntry is a layer entry as a tar reader sees it.
type tarEntry struct {
	header *tar.Header
	data   []byte
}

// readTar returns the entries of an uncompressed layer by name, and the
// names in order.
func readTar(t *testing.T, r io.Reader) (map[string]tarEntry, []string) {
	t.Helper()
	tr := tar.NewReader(r)
	byName := map[string]tarEntry{}
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return byName, names
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		byName[h.Name] = tarEntry{header: h, data: data}
		names = append(names, h.Name)
	}
}

func TestLayerHoldsBinaryCACertsAndNonrootUser(t *testing.T) {
	ca := testCACerts(t)
	central, err := specFor("caravan-central")
	require.NoError(t, err)
	raw, err := writeTar(layerEntries(central, []byte("the binary"), ca))
	require.NoError(t, err)
	files, names := readTar(t, bytes.NewReader(raw))

	bin := files["usr/local/bin/caravan-central"]
	require.NotNil(t, bin.header, "binary missing; entries: %v", names)
	assert.Equal(t, []byte("the binary"), bin.data)
	assert.Equal(t, int64(0o755), bin.header.Mode)
	assert.Equal(t, 0, bin.header.Uid, "the binary belongs to root, so the process cannot rewrite it")

	caFile := files["etc/ssl/certs/ca-certificates.crt"]
	assert.Equal(t, ca, caFile.data)
	assert.Equal(t, int64(0o644), caFile.header.Mode)

	assert.Contains(t, string(files["etc/passwd"].data), "\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
	assert.Contains(t, string(files["etc/group"].data), "\nnonroot:x:65532:\n")

	home := files["home/nonroot/"]
	require.NotNil(t, home.header, "home missing; entries: %v", names)
	assert.Equal(t, 65532, home.header.Uid)
	assert.Equal(t, 65532, home.header.Gid)

	tmp := files["tmp/"]
	require.NotNil(t, tmp.header, "/tmp missing; entries: %v", names)
	assert.Equal(t, int64(0o1777), tmp.header.Mode)

	data := files["data/"]
	require.NotNil(t, data.header, "caravan-central's volume /data missing; entries: %v", names)
	assert.Equal(t, byte(tar.TypeDir), data.header.Typeflag)
	assert.Equal(t, 65532, data.header.Uid, "a fresh volume on /data takes this owner; the server writes its database there")

	// Parents before children: a runtime extracting in order never meets a
	// file whose folder it has not made.
	seen := map[string]bool{}
	for _, n := range names {
		for dir := parentDir(n); dir != ""; dir = parentDir(dir) {
			assert.True(t, seen[dir+"/"], "%s comes before its folder %s/", n, dir)
		}
		seen[n] = true
	}
}

func parentDir(name string) string {
	name = trimSlash(name)
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			return name[:i]
		}
	}
	return ""
}

func trimSlash(s string) string {
	if len(s) > 0 && s[len(s)-1] == '/' {
		return s[:len(s)-1]
	}
	return s
}

func TestOnlyCentralHasADataVolume(t *testing.T) {
	agent, err := specFor("caravan-agent")
	require.NoError(t, err)
	raw, err := writeTar(layerEntries(agent, []byte("x"), []byte("ca")))
	require.NoError(t, err)
	files, _ := readTar(t, bytes.NewReader(raw))
	assert.NotContains(t, files, "data/")
	assert.Contains(t, files, "usr/local/bin/caravan-agent")
}

func TestLayerIsReproducible(t *testing.T) {
	s, err := specFor("caravan")
	require.NoError(t, err)
	first, err := writeTar(layerEntries(s, []byte("bin"), []byte("ca")))
	require.NoError(t, err)
	second, err := writeTar(layerEntries(s, []byte("bin"), []byte("ca")))
	require.NoError(t, err)
	assert.Equal(t, first, second, "the same inputs must give the same layer, hence the same digest")

	files, _ := readTar(t, bytes.NewReader(first))
	for name, f := range files {
		assert.True(t, f.header.ModTime.Equal(time.Unix(0, 0)), "%s has time %s", name, f.header.ModTime)
	}
}

func TestWriteTarRefusesRelativeAndUncleanPaths(t *testing.T) {
	for _, p := range []string{"etc/passwd", "/etc/../passwd", "/etc/"} {
		_, err := writeTar([]entry{{path: p, mode: 0o644}})
		assert.ErrorContains(t, err, "want a clean absolute path", p)
	}
}

func TestCheckCACerts(t *testing.T) {
	require.NoError(t, checkCACerts(testCACerts(t)))
	for name, bundle := range map[string][]byte{
		"empty":   nil,
		"garbage": []byte("not a certificate\n"),
		"a key":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}),
	} {
		assert.Error(t, checkCACerts(bundle), name)
	}
}
