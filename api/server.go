package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/ledger"
)

// Engine is what the server needs of the handshake engine.
type Engine interface {
	Submit(ctx context.Context, s *action.Signed) (*handshake.Result, error)
	View(fn func(*handshake.State) error) error
}

// Ledger is what the server reads of the log.
type Ledger interface {
	Size() uint64
	Checkpoint() ledger.Checkpoint
	Read(ctx context.Context, index uint64) ([]byte, error)
	Receipt(ctx context.Context, index uint64) (ledger.Receipt, error)
	Consistency(ctx context.Context, oldSize, newSize uint64) ([][32]byte, error)
}

// ServerConfig holds the server's dependencies.
type ServerConfig struct {
	Engine  Engine
	Ledger  Ledger
	Status  func() Status
	Offer   Offer
	Metrics http.Handler // nil: no /metrics
	// Export writes an exiting IMVU's bundle; nil: no export endpoint.
	Export func(ctx context.Context, id string, w io.Writer) error
	// Blobs keeps staged data; nil: no blob endpoint.
	Blobs Stager
	// Exec runs accepted compute.exec actions; nil: no exec endpoint.
	Exec Execer
	// Views answer services' reads by query kind.
	Views  map[string]View
	Logger *slog.Logger
	Now    func() time.Time
}

// Server answers the control API.
type Server struct {
	cfg ServerConfig
	mux *http.ServeMux
}

// maxRequest bounds a request body: an action body plus its signatures.
const maxRequest = action.MaxBody*2 + 64<<10

// NewServer builds the API's handler.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST "+PathActions, s.actions)
	s.mux.HandleFunc("POST "+PathQuery, s.query)
	s.mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, cfg.Status()) })
	s.mux.HandleFunc("GET "+PathGates, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, handshake.Gates()) })
	s.mux.HandleFunc("GET "+PathOffer, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, cfg.Offer) })
	s.mux.HandleFunc("GET "+PathCheckpoint, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(cfg.Ledger.Checkpoint().Note)
	})
	s.mux.HandleFunc("GET "+PathConsistency, s.consistency)
	s.mux.HandleFunc("GET "+PathRegistry, s.registry)
	if cfg.Export != nil {
		s.mux.HandleFunc("POST "+PathExport, s.export)
	}
	if cfg.Blobs != nil {
		s.mux.HandleFunc("POST "+PathBlobs, s.blobs)
	}
	if cfg.Exec != nil {
		s.mux.HandleFunc("POST "+PathExec, s.exec)
	}
	if cfg.Metrics != nil {
		s.mux.Handle("GET "+PathMetrics, cfg.Metrics)
	}
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	var d *handshake.Denial
	body := Error{Error: err.Error()}
	if errors.As(err, &d) {
		body.Denial = d
	}
	writeJSON(w, code, body)
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("request body: trailing data after the JSON value")
	}
	return nil
}

func (s *Server) actions(w http.ResponseWriter, r *http.Request) {
	var sa action.Signed
	if err := decodeBody(w, r, &sa); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if res, ok := s.submit(w, r, &sa); ok {
		writeJSON(w, http.StatusOK, res)
	}
}

// submit hands a signed action to the engine; on a refusal it answers the
// request itself and reports false.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, sa *action.Signed) (*handshake.Result, bool) {
	res, err := s.cfg.Engine.Submit(r.Context(), sa)
	var d *handshake.Denial
	switch {
	case err == nil:
		return res, true
	case errors.As(err, &d):
		writeErr(w, http.StatusForbidden, err)
	case errors.Is(err, handshake.ErrJunk):
		writeErr(w, http.StatusUnauthorized, err)
	default:
		s.cfg.Logger.Error("submit", "err", err)
		writeErr(w, http.StatusInternalServerError, err)
	}
	return nil, false
}

// errScope is the answer to a read outside the reader's scope. It does not say
// whether the thing exists.
var errScope = errors.New("not in the reader's scope")

func (s *Server) query(w http.ResponseWriter, r *http.Request) {
	var sq action.SignedQuery
	if err := decodeBody(w, r, &sq); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	q, err := sq.Open()
	if err != nil {
		writeErr(w, http.StatusUnauthorized, err)
		return
	}
	var out any
	err = s.cfg.Engine.View(func(st *handshake.State) error {
		role, err := s.authorize(st, q)
		if err != nil {
			return err
		}
		out, err = s.answer(r.Context(), st, q, role)
		return err
	})
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, out)
	case errors.Is(err, errScope):
		writeErr(w, http.StatusForbidden, err)
	case errors.Is(err, errAuth):
		writeErr(w, http.StatusUnauthorized, err)
	default:
		writeErr(w, http.StatusBadRequest, err)
	}
}

var errAuth = errors.New("query not authenticated")

// authorize checks the query is fresh and its reader has a role in its scope.
func (s *Server) authorize(st *handshake.State, q *action.Query) (identity.Role, error) {
	skew := time.Duration(st.Platform.Genesis.Skew)
	if d := s.cfg.Now().Sub(q.IssuedAt); d > skew || d < -skew {
		return "", fmt.Errorf("%w: issued at %s, outside the %s window", errAuth, q.IssuedAt.Format(time.RFC3339), skew)
	}
	role, ok := st.RoleOf(q.Reader, q.Scope)
	if !ok && q.Scope != identity.ScopePlatform {
		// Admins read platform-level facts about an IMVU (its summary, its
		// statement); what they may see is narrowed per query below.
		if pr, pok := st.RoleOf(q.Reader, identity.ScopePlatform); pok && (pr.Role == identity.RoleAdmin || pr.Role == identity.RolePlatform) {
			role, ok = pr, true
		}
	}
	if !ok {
		return "", fmt.Errorf("%w: %s has no role in %s", errScope, q.Reader, q.Scope)
	}
	if role.Revoked {
		return "", fmt.Errorf("%w: identity of %s is revoked", errAuth, q.Reader)
	}
	if role.Identity != nil {
		if err := role.Identity.ValidAt(s.cfg.Now()); err != nil {
			return "", fmt.Errorf("%w: %v", errAuth, err)
		}
	}
	return role.Role, nil
}

// ownerOnly checks the query is fresh and signed by its scope's owner; if
// not, it answers the request itself (401 or 403) and reports false. what
// says what only the owner does, for the error.
func (s *Server) ownerOnly(w http.ResponseWriter, q *action.Query, what string) bool {
	err := s.cfg.Engine.View(func(st *handshake.State) error {
		role, err := s.authorize(st, q)
		if err == nil && role != identity.RoleOwner {
			err = fmt.Errorf("%w: only the owner %s %s", errScope, what, q.Scope)
		}
		return err
	})
	if err == nil {
		return true
	}
	code := http.StatusForbidden
	if errors.Is(err, errAuth) {
		code = http.StatusUnauthorized
	}
	writeErr(w, code, err)
	return false
}

func (s *Server) consistency(w http.ResponseWriter, r *http.Request) {
	old, err := strconv.ParseUint(r.URL.Query().Get("old"), 10, 64)
	if err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("old=%q: want a tree size", r.URL.Query().Get("old")))
		return
	}
	cp := s.cfg.Ledger.Checkpoint()
	if old > cp.Size {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("old=%d is past the newest tree size %d", old, cp.Size))
		return
	}
	hashes, err := s.cfg.Ledger.Consistency(r.Context(), old, cp.Size)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	out := Consistency{Old: old, New: cp.Size, Checkpoint: string(cp.Note), Proof: make([][]byte, len(hashes))}
	for i, h := range hashes {
		out.Proof[i] = append([]byte(nil), h[:]...)
	}
	writeJSON(w, http.StatusOK, out)
}

// export answers an owner's signed imvu.export query with the exit bundle.
func (s *Server) export(w http.ResponseWriter, r *http.Request) {
	var sq action.SignedQuery
	if err := decodeBody(w, r, &sq); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	q, err := sq.Open()
	if err != nil {
		writeErr(w, http.StatusUnauthorized, err)
		return
	}
	if q.Kind != QueryExport {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("query kind %q; want %q", q.Kind, QueryExport))
		return
	}
	if !s.ownerOnly(w, q, "exports") {
		return
	}
	tmp, err := os.CreateTemp("", "nexus-bundle-")
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := s.cfg.Export(r.Context(), q.Scope, tmp); err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	io.Copy(w, tmp)
}

// registry answers which IMVU holds a name: the closest bound domain at or above it.
func (s *Server) registry(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimSuffix(strings.ToLower(r.URL.Query().Get("name")), ".")
	if name == "" || len(name) > 253 {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("name=%q: want a domain name", r.URL.Query().Get("name")))
		return
	}
	var b Binding
	s.cfg.Engine.View(func(st *handshake.State) error {
		for d := name; d != ""; {
			if id, ok := st.BoundTo("domain:" + d); ok {
				b = Binding{Name: name, Domain: d, IMVU: id}
				if m := st.IMVUs[id]; m != nil {
					b.Owner = m.Owner
				}
				return nil
			}
			i := strings.IndexByte(d, '.')
			if i < 0 {
				break
			}
			d = d[i+1:]
		}
		return nil
	})
	if b.IMVU == "" {
		writeErr(w, http.StatusNotFound, fmt.Errorf("%s is not under any bound domain", name))
		return
	}
	writeJSON(w, http.StatusOK, b)
}
