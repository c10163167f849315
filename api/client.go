package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/handshake"
)

// Client talks to a daemon's API.
type Client struct {
	base string
	hc   *http.Client
}

// Dial returns a client for addr: "unix:/path/to/nexus.sock", a path ending in
// ".sock", or "http://127.0.0.1:PORT".
func Dial(addr string) (*Client, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok || strings.HasSuffix(addr, ".sock") {
		if !ok {
			path = addr
		}
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}
		return &Client{base: "http://nexus", hc: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}, nil
	}
	if strings.HasPrefix(addr, "http://") {
		return &Client{base: strings.TrimSuffix(addr, "/"), hc: &http.Client{Timeout: 5 * time.Minute}}, nil
	}
	return nil, fmt.Errorf("API address %q: want unix:/path, a .sock path, or http://127.0.0.1:PORT", addr)
}

// Submit sends a signed action. A denial comes back as *handshake.Denial.
func (c *Client) Submit(ctx context.Context, s *action.Signed) (*handshake.Result, error) {
	var res handshake.Result
	if err := c.do(ctx, http.MethodPost, PathActions, s, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Query signs and sends a query, decoding the answer into out.
func (c *Client) Query(ctx context.Context, key ed25519.PrivateKey, kind, scope string, params, out any) error {
	if params == nil {
		params = struct{}{}
	}
	q, err := action.NewQuery(key, kind, scope, params)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, PathQuery, q, out)
}

// Status fetches the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, http.MethodGet, PathStatus, nil, &s)
}

// Offer fetches what the platform offers a new IMVU.
func (c *Client) Offer(ctx context.Context) (Offer, error) {
	var o Offer
	return o, c.do(ctx, http.MethodGet, PathOffer, nil, &o)
}

// Gates fetches the gate list.
func (c *Client) Gates(ctx context.Context) ([]handshake.Gate, error) {
	var g []handshake.Gate
	return g, c.do(ctx, http.MethodGet, PathGates, nil, &g)
}

// Checkpoint fetches the newest signed checkpoint note.
func (c *Client) Checkpoint(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+PathCheckpoint, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", PathCheckpoint, err)
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 64<<10))
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s request: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w (is `nexus serve` running?)", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			if e.Denial != nil {
				return e.Denial
			}
			return &RemoteError{Code: resp.StatusCode, Message: e.Error}
		}
		return &RemoteError{Code: resp.StatusCode, Message: strings.TrimSpace(string(b))}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// RemoteError is an error the daemon answered with.
type RemoteError struct {
	Code    int
	Message string
}

func (e *RemoteError) Error() string { return fmt.Sprintf("daemon: %s (HTTP %d)", e.Message, e.Code) }

// IsDenied reports whether err is a gate's denial, and returns it.
func IsDenied(err error) (*handshake.Denial, bool) {
	var d *handshake.Denial
	ok := errors.As(err, &d)
	return d, ok
}

// Consistency fetches a proof that the newest checkpoint extends tree size old.
func (c *Client) Consistency(ctx context.Context, old uint64) (Consistency, error) {
	var out Consistency
	return out, c.do(ctx, http.MethodGet, fmt.Sprintf("%s?old=%d", PathConsistency, old), nil, &out)
}

// Export fetches an exiting IMVU's bundle into w, signed as the owner.
// progress, if set, is told the bytes received and the total.
func (c *Client) Export(ctx context.Context, owner ed25519.PrivateKey, id string, w io.Writer, progress func(done, total int64)) error {
	q, err := action.NewQuery(owner, QueryExport, id, struct{}{})
	if err != nil {
		return err
	}
	b, err := json.Marshal(q)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+PathExport, bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", PathExport, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return remoteError(resp)
	}
	pw := &progressWriter{w: w, total: resp.ContentLength, fn: progress}
	if _, err := io.Copy(pw, resp.Body); err != nil {
		return fmt.Errorf("receive bundle: %w", err)
	}
	return nil
}

type progressWriter struct {
	w     io.Writer
	done  int64
	total int64
	fn    func(done, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	if p.fn != nil {
		p.fn(p.done, p.total)
	}
	return n, err
}

// Lookup asks the registry which IMVU holds name.
func (c *Client) Lookup(ctx context.Context, name string) (Binding, error) {
	var b Binding
	return b, c.do(ctx, http.MethodGet, PathRegistry+"?name="+url.QueryEscape(name), nil, &b)
}

// remoteError reads a failed answer's body into a RemoteError.
func remoteError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e Error
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return &RemoteError{Code: resp.StatusCode, Message: e.Error}
	}
	return &RemoteError{Code: resp.StatusCode, Message: strings.TrimSpace(string(body))}
}
