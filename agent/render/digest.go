package render

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"strings"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// InputDigest hashes everything Render and the stack templates read: the files it opens, the
// assignment, and the renderer's own version (an upgraded agent may render
// the same files differently). Two commits with the same digest render the
// same objects, so a commit that changed nothing Render reads (a README, a
// file of another tool) needs no render and no apply.
func InputDigest(repo fs.FS, a api.Assignment, renderer string) (string, error) {
	h := sha256.New()
	write := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	write([]byte(renderer))
	assignment, err := json.Marshal(a)
	if err != nil {
		return "", err
	}
	write(assignment)
	err = fs.WalkDir(repo, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !readByRender(p) {
			return err
		}
		content, err := fs.ReadFile(repo, p)
		if err != nil {
			return err
		}
		write([]byte(p))
		write(content)
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readByRender says whether Render or the stack templates may read the file at p.
func readByRender(p string) bool {
	for _, dir := range []string{KubernetesDir, CloudFormationDir} {
		if strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return p == DefaultsFile || p == DeletionsFile
}

// Digest hashes what applying the result would send: the objects in their
// order and the deletions. Equal digests apply the same changes.
func (r *Result) Digest() (string, error) {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, o := range r.Objects {
		if err := enc.Encode(o.Object); err != nil {
			return "", err
		}
	}
	if err := enc.Encode(r.Deletions); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
