package api

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

// maxEntries bounds one ledger.entries answer.
const maxEntries = 1000

func platformRole(r identity.Role) bool { return r == identity.RoleAdmin || r == identity.RolePlatform }
func imvuRole(r identity.Role) bool     { return r == identity.RoleOwner || r == identity.RoleMember }

func summarize(m *handshake.IMVU) Summary {
	return Summary{ID: m.ID, Owner: m.Owner.String(), Status: m.Status, Created: m.Created.Format(time.RFC3339),
		Envelope: m.Envelope, Used: m.Used}
}

func (s *Server) answer(ctx context.Context, st *handshake.State, q *action.Query, role identity.Role) (any, error) {
	switch q.Kind {
	case QueryIMVUs:
		if err := q.Decode(&struct{}{}); err != nil {
			return nil, fmt.Errorf("%s params: %w", q.Kind, err)
		}
		out := []Summary{}
		switch {
		case q.Scope == identity.ScopePlatform && platformRole(role):
			ids := make([]string, 0, len(st.IMVUs))
			for id := range st.IMVUs {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			for _, id := range ids {
				out = append(out, summarize(st.IMVUs[id]))
			}
		case imvuRole(role):
			out = append(out, summarize(st.IMVUs[q.Scope]))
		default:
			return nil, fmt.Errorf("%w: %s may not list IMVUs", errScope, role)
		}
		return out, nil

	case QueryIMVU:
		if err := q.Decode(&struct{}{}); err != nil {
			return nil, fmt.Errorf("%s params: %w", q.Kind, err)
		}
		m := st.IMVUs[q.Scope]
		switch {
		case m == nil:
			return nil, fmt.Errorf("%w: no IMVU %s", errScope, q.Scope)
		case imvuRole(role):
			// Encode under the engine's lock: the state changes once it is released.
			b, err := json.Marshal(m)
			return json.RawMessage(b), err
		case platformRole(role):
			return summarize(m), nil
		}
		return nil, fmt.Errorf("%w: %s may not read %s", errScope, role, q.Scope)

	case QueryStatement:
		var p StatementParams
		if err := q.Decode(&p); err != nil {
			return nil, fmt.Errorf("%s params: %w", q.Kind, err)
		}
		m := st.IMVUs[q.Scope]
		if m == nil || !(imvuRole(role) || platformRole(role)) {
			return nil, fmt.Errorf("%w: no statement of %s for %s", errScope, q.Scope, role)
		}
		period := st.Calendar.Of(s.cfg.Now())
		if p.Period != "" {
			var err error
			if period, err = st.Calendar.Parse(p.Period); err != nil {
				return nil, err
			}
		}
		stmt, err := m.Statement(st.Calendar, period.String())
		if err != nil {
			return nil, err
		}
		ans := StatementAnswer{Statement: stmt, SheetHashHex: fmt.Sprintf("%x", stmt.SheetHash), Open: s.cfg.Now().Before(period.End)}
		if set, ok := m.Settled[period.String()]; ok {
			ans.Settled = &set
		}
		return ans, nil

	case QueryEntries:
		var p EntriesParams
		if err := q.Decode(&p); err != nil {
			return nil, fmt.Errorf("%s params: %w", q.Kind, err)
		}
		size := s.cfg.Ledger.Size()
		if p.Count == 0 || p.Count > maxEntries {
			p.Count = maxEntries
		}
		out := []Entry{}
		for i := p.Start; i < size && i < p.Start+p.Count; i++ {
			e, err := s.entry(ctx, i, q, role)
			if err != nil {
				return nil, err
			}
			if e != nil {
				out = append(out, *e)
			}
		}
		return out, nil

	case QueryReceipt:
		var p ReceiptParams
		if err := q.Decode(&p); err != nil {
			return nil, fmt.Errorf("%s params: %w", q.Kind, err)
		}
		if p.Index >= s.cfg.Ledger.Size() {
			return nil, fmt.Errorf("no ledger entry %d (size %d)", p.Index, s.cfg.Ledger.Size())
		}
		e, err := s.entry(ctx, p.Index, q, role)
		if err != nil {
			return nil, err
		}
		if e == nil {
			return nil, fmt.Errorf("%w: entry %d", errScope, p.Index)
		}
		r, err := s.cfg.Ledger.Receipt(ctx, p.Index)
		if err != nil {
			return nil, err
		}
		txt, err := r.MarshalText()
		if err != nil {
			return nil, err
		}
		return ReceiptAnswer{Index: p.Index, Proof: string(txt), Record: e.Record}, nil
	}
	if v, ok := s.cfg.Views[q.Kind]; ok {
		if st.IMVUs[q.Scope] == nil || !imvuRole(role) {
			return nil, fmt.Errorf("%w: %s is read by its owner and members only", errScope, q.Kind)
		}
		return v(ctx, st, q)
	}
	return nil, fmt.Errorf("no query kind %q", q.Kind)
}

// entry returns ledger entry i as the reader may see it: whole inside the
// reader's own scope, as a header for platform readers, or nil.
func (s *Server) entry(ctx context.Context, i uint64, q *action.Query, role identity.Role) (*Entry, error) {
	data, err := s.cfg.Ledger.Read(ctx, i)
	if err != nil {
		return nil, err
	}
	var h struct {
		Type  string    `json:"type"`
		Scope string    `json:"scope"`
		Kind  string    `json:"kind"`
		Gate  string    `json:"gate"`
		Time  time.Time `json:"time"`
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("ledger entry %d: %w", i, err)
	}
	e := &Entry{Index: i, Type: h.Type, Scope: h.Scope, Kind: h.Kind, Gate: h.Gate, Time: h.Time.Format(time.RFC3339Nano)}
	inside := h.Scope == q.Scope && ((q.Scope == identity.ScopePlatform && platformRole(role)) || (q.Scope != identity.ScopePlatform && imvuRole(role)))
	// Drift found in what the platform shares (its router, say) touches every
	// IMVU and holds no IMVU's data: every reader sees it whole.
	shared := h.Type == "drift" && h.Scope == identity.ScopePlatform
	switch {
	case inside || shared:
		e.Record = data
	case platformRole(role):
		e.Redacted = true
	default:
		return nil, nil
	}
	return e, nil
}
