package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"

	"github.com/nexus-core/nexus/action"
)

// Blobs: the bytes an action refers to by digest (a mailbox's messages, a
// workload's root filesystem) are staged first, under the IMVU's own folder,
// and only an action that names the digest and passes the gates puts them to
// use. Staging changes no state.
const (
	PathBlobs = "/v1/blobs"
	QueryBlob = "blob.put"
	// HeaderQuery carries the owner's signed blob.put query, base64 of its JSON.
	HeaderQuery = "Nexus-Query"
)

// BlobParams name the blob a put carries.
type BlobParams struct {
	SHA256 string `json:"sha256"` // hex
	Size   int64  `json:"size"`
}

var digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// CheckDigest reports whether s is a lower-case hex SHA-256.
func CheckDigest(s string) error {
	if !digestRE.MatchString(s) {
		return fmt.Errorf("blob digest %q: want 64 lower-case hex digits (SHA-256)", s)
	}
	return nil
}

// Stager keeps staged blobs. Stage reads exactly p.Size bytes from r and keeps
// them only if they hash to p.SHA256.
type Stager interface {
	Stage(ctx context.Context, imvu string, p BlobParams, r io.Reader) error
}

func (s *Server) blobs(w http.ResponseWriter, r *http.Request) {
	raw, err := base64.StdEncoding.DecodeString(r.Header.Get(HeaderQuery))
	if err != nil || len(raw) == 0 {
		writeErr(w, http.StatusUnauthorized, fmt.Errorf("%w: header %s: want the base64 of a signed %s query", errAuth, HeaderQuery, QueryBlob))
		return
	}
	var sq action.SignedQuery
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sq); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("header %s: %w", HeaderQuery, err))
		return
	}
	q, err := sq.Open()
	if err != nil {
		writeErr(w, http.StatusUnauthorized, err)
		return
	}
	var p BlobParams
	switch {
	case q.Kind != QueryBlob:
		err = fmt.Errorf("query kind %q; want %q", q.Kind, QueryBlob)
	default:
		err = q.Decode(&p)
	}
	if err == nil {
		err = CheckDigest(p.SHA256)
	}
	if err == nil && (p.Size < 0 || r.ContentLength >= 0 && r.ContentLength != p.Size) {
		err = fmt.Errorf("blob size %d does not match the body's %d bytes", p.Size, r.ContentLength)
	}
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if !s.ownerOnly(w, q, "stages data for") {
		return
	}
	if err := s.cfg.Blobs.Stage(r.Context(), q.Scope, p, http.MaxBytesReader(w, r.Body, p.Size)); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusCreated, p)
}

// PutBlob stages the file at path for the owner's IMVU and returns its
// digest and size, for the action that will use it.
func (c *Client) PutBlob(ctx context.Context, owner ed25519.PrivateKey, imvu, path string) (BlobParams, error) {
	f, err := os.Open(path)
	if err != nil {
		return BlobParams{}, err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return BlobParams{}, fmt.Errorf("hash %s: %w", path, err)
	}
	p := BlobParams{SHA256: hex.EncodeToString(h.Sum(nil)), Size: size}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return p, err
	}
	q, err := action.NewQuery(owner, QueryBlob, imvu, p)
	if err != nil {
		return p, err
	}
	hdr, err := json.Marshal(q)
	if err != nil {
		return p, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+PathBlobs, f)
	if err != nil {
		return p, err
	}
	req.ContentLength = size
	req.Header.Set(HeaderQuery, base64.StdEncoding.EncodeToString(hdr))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		return p, fmt.Errorf("POST %s: %w", PathBlobs, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return p, remoteError(resp)
	}
	return p, nil
}
