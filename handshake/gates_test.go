package handshake

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/revenue"
)

// probeParams drive the test-only kind "test.probe", which asks for whatever a
// case needs so the gates that guard later services (G05, G07, G12-G14) are
// exercised through the real engine.
type probeParams struct {
	Refer    []string  `json:"refer,omitempty"`
	Demand   Resources `json:"demand"`
	Domains  []string  `json:"domains,omitempty"`
	MailFrom []string  `json:"mail_from,omitempty"`
	Peers    []string  `json:"peers,omitempty"`
	Bind     []string  `json:"bind,omitempty"`
	Transfer bool      `json:"transfer,omitempty"`
}

func registerProbe(t testing.TB, e *Engine) {
	t.Helper()
	err := e.Register(Kind{Name: "test.probe", Resource: "imvu", Roles: []identity.Role{identity.RoleOwner, identity.RoleMember, identity.RoleAdmin},
		Prepare: decodeInto(func(r *Request, p *probeParams) error {
			for _, n := range p.Refer {
				r.Names = append(r.Names, Name{Type: "imvu", ID: n, Use: Refer})
			}
			for _, d := range p.Bind {
				r.Names = append(r.Names, Name{Type: "domain", ID: d, Use: Create})
			}
			r.Demand, r.Domains, r.MailFrom, r.Peers = p.Demand, p.Domains, p.MailFrom, p.Peers
			if p.Transfer {
				k := identity.PublicKey{9}
				r.Transfer = &k
			}
			return nil
		}),
		Apply: func(tx *Tx) error {
			m, err := tx.IMVU()
			if err != nil {
				return err
			}
			p := tx.Params().(*probeParams)
			if m.Used, err = m.Used.Add(p.Demand); err != nil {
				return err
			}
			for _, d := range p.Bind {
				if err := tx.Bind(Name{Type: "domain", ID: d}); err != nil {
					return err
				}
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
}

type gateCase struct {
	name string
	gate string // "" means the action must pass
	run  func(f *fixture) (*Result, error)
}

func TestGates(t *testing.T) {
	week := 7 * 24 * time.Hour
	cases := []gateCase{
		// G01 Authenticity
		{"G01 revoked admin", "G01", func(f *fixture) (*Result, error) {
			f.mustSubmit(f.root, KindRevoke, identity.ScopePlatform, RevokeParams{Key: identity.PublicOf(f.admin)})
			return f.submit(f.admin, KindCapacity, identity.ScopePlatform, CapacityParams{Capacity: f.genesis.Capacity})
		}},
		{"G01 revoked member", "G01", func(f *fixture) (*Result, error) {
			f.mustSubmit(f.owner, KindRevoke, "imvu042", RevokeParams{Key: identity.PublicOf(f.member)})
			return f.submit(f.member, "test.probe", "imvu042", probeParams{})
		}},
		{"G01 expired admin", "G01", func(f *fixture) (*Result, error) {
			f.now = f.now.Add(week)
			return f.submit(f.admin, KindCapacity, identity.ScopePlatform, CapacityParams{Capacity: f.genesis.Capacity})
		}},
		{"G01 named cosigner did not sign", "G01", func(f *fixture) (*Result, error) {
			s := f.signed(f.admin, KindResize, "imvu042", EnvelopeParams{Envelope: f.imvu("imvu042").Envelope}, f.owner)
			s.Sigs = s.Sigs[:1]
			return f.send(s)
		}},
		{"G01 bad cosignature", "G01", func(f *fixture) (*Result, error) {
			s := f.signed(f.admin, KindResize, "imvu042", EnvelopeParams{Envelope: f.imvu("imvu042").Envelope}, f.owner)
			s.Sigs[1].Sig[0] ^= 1
			return f.send(s)
		}},
		{"G01 allow", "", func(f *fixture) (*Result, error) {
			return f.submit(f.admin, KindCapacity, identity.ScopePlatform, CapacityParams{Capacity: f.genesis.Capacity})
		}},
		// G02 Freshness
		{"G02 replay", "G02", func(f *fixture) (*Result, error) {
			s := f.signed(f.owner, "test.probe", "imvu042", probeParams{})
			if _, err := f.send(s); err != nil {
				return nil, err
			}
			return f.send(s)
		}},
		{"G02 issued too long ago", "G02", func(f *fixture) (*Result, error) {
			s := f.signed(f.owner, "test.probe", "imvu042", probeParams{})
			f.now = f.now.Add(10 * time.Minute)
			return f.send(s)
		}},
		{"G02 issued in the future", "G02", func(f *fixture) (*Result, error) {
			s := f.signed(f.owner, "test.probe", "imvu042", probeParams{})
			f.now = f.now.Add(-10 * time.Minute)
			return f.send(s)
		}},
		// G03 Scope
		{"G03 owner of another IMVU", "G03", func(f *fixture) (*Result, error) {
			return f.submit(f.owner2, KindResize, "imvu042", EnvelopeParams{Envelope: f.imvu("imvu042").Envelope})
		}},
		{"G03 member may not resize", "G03", func(f *fixture) (*Result, error) {
			return f.submit(f.member, KindResize, "imvu042", EnvelopeParams{Envelope: f.imvu("imvu042").Envelope})
		}},
		{"G03 meter may not resize", "G03", func(f *fixture) (*Result, error) {
			return f.submit(f.meter, KindResize, "imvu042", EnvelopeParams{Envelope: f.imvu("imvu042").Envelope})
		}},
		{"G03 unknown kind", "G03", func(f *fixture) (*Result, error) {
			return f.submit(f.admin, "dns.teleport", "imvu042", struct{}{})
		}},
		{"G03 platform kind on an IMVU", "G03", func(f *fixture) (*Result, error) {
			return f.submit(f.admin, KindCapacity, "imvu042", CapacityParams{Capacity: f.genesis.Capacity})
		}},
		{"G03 no such IMVU", "G03", func(f *fixture) (*Result, error) {
			return f.submit(f.admin, KindResize, "imvu999", EnvelopeParams{})
		}},
		{"G03 unknown parameter", "G03", func(f *fixture) (*Result, error) {
			return f.submit(f.owner, "test.probe", "imvu042", map[string]any{"force": true})
		}},
		// G04 Ownership
		{"G04 create over an existing IMVU", "G04", func(f *fixture) (*Result, error) {
			return f.submit(f.stranger, KindCreate, "imvu042", f.handshake("imvu042", f.stranger))
		}},
		{"G04 bind a domain another IMVU holds", "G04", func(f *fixture) (*Result, error) {
			return f.submit(f.owner, "test.probe", "imvu042", probeParams{Bind: []string{"imvu043.world"}})
		}},
		{"G04 bind a name under another IMVU's", "G04", func(f *fixture) (*Result, error) {
			return f.submit(f.owner, "test.probe", "imvu042", probeParams{Bind: []string{"stage.imvu043.world"}})
		}},
		{"G04 bind a name over another IMVU's", "G04", func(f *fixture) (*Result, error) {
			return f.submit(f.owner, "test.probe", "imvu042", probeParams{Bind: []string{"World."}})
		}},
		{"G04 allow a second domain of its own", "", func(f *fixture) (*Result, error) {
			return f.submit(f.owner, "test.probe", "imvu042", probeParams{Bind: []string{"imvu042.example"}})
		}},
		// G05 Isolation
		{"G05 touch another IMVU without a grant", "G05", func(f *fixture) (*Result, error) {
			return f.submit(f.owner, "test.probe", "imvu042", probeParams{Refer: []string{"imvu043"}})
		}},
		{"G05 allow with both owners", "", func(f *fixture) (*Result, error) {
			return f.submit(f.owner, "test.probe", "imvu042", probeParams{Refer: []string{"imvu043"}}, f.owner2)
		}},
		// G06 Consent
		{"G06 admin alone", "G06", func(f *fixture) (*Result, error) {
			env := f.imvu("imvu042").Envelope
			env.CPUMilli += 100
			return f.submit(f.admin, KindResize, "imvu042", EnvelopeParams{Envelope: env})
		}},
		{"G06 admin with the wrong IMVU's owner", "G06", func(f *fixture) (*Result, error) {
			env := f.imvu("imvu042").Envelope
			env.CPUMilli += 100
			return f.submit(f.admin, KindResize, "imvu042", EnvelopeParams{Envelope: env}, f.owner2)
		}},
		{"G06 allow with the owner", "", func(f *fixture) (*Result, error) {
			env := f.imvu("imvu042").Envelope
			env.CPUMilli += 100
			return f.submit(f.admin, KindResize, "imvu042", EnvelopeParams{Envelope: env}, f.owner)
		}},
		// G07 Envelope
		{"G07 demand past the envelope", "G07", func(f *fixture) (*Result, error) {
			return f.submit(f.owner, "test.probe", "imvu042", probeParams{Demand: Resources{MemoryBytes: 2 << 30}})
		}},
		{"G07 demand past what is left", "G07", func(f *fixture) (*Result, error) {
			f.mustSubmit(f.owner, "test.probe", "imvu042", probeParams{Demand: Resources{Pids: 60}})
			return f.submit(f.owner, "test.probe", "imvu042", probeParams{Demand: Resources{Pids: 60}})
		}},
		{"G07 allow", "", func(f *fixture) (*Result, error) {
			return f.submit(f.owner, "test.probe", "imvu042", probeParams{Demand: Resources{Pids: 100}})
		}},
		// G08 Capacity and anti-siphon
		{"G08 envelope past capacity", "G08", func(f *fixture) (*Result, error) {
			h := f.handshake("imvu044", f.stranger)
			h.Envelope.CPUMilli = 6000
			return f.submit(f.stranger, KindCreate, "imvu044", h)
		}},
		{"G08 capacity below allocation", "G08", func(f *fixture) (*Result, error) {
			c := f.genesis.Capacity
			c.CPUMilli = 2000
			return f.submit(f.admin, KindCapacity, identity.ScopePlatform, CapacityParams{Capacity: c})
		}},
		{"G08 grow past capacity even with consent", "G08", func(f *fixture) (*Result, error) {
			env := f.imvu("imvu042").Envelope
			env.CPUMilli = 7000
			return f.submit(f.admin, KindResize, "imvu042", EnvelopeParams{Envelope: env}, f.owner)
		}},
		{"G08 shrink below use", "G08", func(f *fixture) (*Result, error) {
			f.mustSubmit(f.owner, "test.probe", "imvu042", probeParams{Demand: Resources{Pids: 80}})
			env := f.imvu("imvu042").Envelope
			env.Pids = 50
			return f.submit(f.owner, KindResize, "imvu042", EnvelopeParams{Envelope: env})
		}},
		{"G08 owner grows its own alone", "G08", func(f *fixture) (*Result, error) {
			env := f.imvu("imvu042").Envelope
			env.CPUMilli += 1000
			return f.submit(f.owner, KindResize, "imvu042", EnvelopeParams{Envelope: env})
		}},
		{"G08 owner grows with the platform", "", func(f *fixture) (*Result, error) {
			env := f.imvu("imvu042").Envelope
			env.CPUMilli += 1000
			return f.submit(f.owner, KindResize, "imvu042", EnvelopeParams{Envelope: env}, f.admin)
		}},
		{"G08 owner shrinks its own", "", func(f *fixture) (*Result, error) {
			env := f.imvu("imvu042").Envelope
			env.MemoryBytes /= 2
			return f.submit(f.owner, KindResize, "imvu042", EnvelopeParams{Envelope: env})
		}},
		// G09 Split integrity
		{"G09 handshake at 50/50", "G09", func(f *fixture) (*Result, error) {
			h := f.handshake("imvu044", f.stranger)
			h.Split = [2]int{50, 50}
			return f.submit(f.stranger, KindCreate, "imvu044", h)
		}},
		{"G09 handshake at 60/40", "G09", func(f *fixture) (*Result, error) {
			h := f.handshake("imvu044", f.stranger)
			h.Split = [2]int{60, 40}
			return f.submit(f.stranger, KindCreate, "imvu044", h)
		}},
		{"G09 settle at 50/50", "G09", func(f *fixture) (*Result, error) {
			s := f.closedSettlement()
			s.Creator, s.Platform = s.Gross/2, s.Gross-s.Gross/2
			return f.submit(f.admin, KindSettle, "imvu042", s)
		}},
		{"G09 settle twice", "G09", func(f *fixture) (*Result, error) {
			s := f.closedSettlement()
			f.mustSubmit(f.admin, KindSettle, "imvu042", s)
			return f.submit(f.admin, KindSettle, "imvu042", s)
		}},
		{"G09 settle an open period", "G09", func(f *fixture) (*Result, error) {
			f.mustSubmit(f.meter, KindUsage, "imvu042", f.usage("compute", "cpu_ms", 10, f.now))
			st, err := f.imvu("imvu042").Statement(f.cal(), f.period().String())
			if err != nil {
				return nil, err
			}
			return f.submit(f.admin, KindSettle, "imvu042", settleOf(st))
		}},
		{"G09 allow", "", func(f *fixture) (*Result, error) {
			return f.submit(f.admin, KindSettle, "imvu042", f.closedSettlement())
		}},
		// G10 Attribution
		{"G10 meter names another meter", "G10", func(f *fixture) (*Result, error) {
			return f.submit(f.meter, KindUsage, "imvu042", f.usage("dns", "cpu_ms", 10, f.now))
		}},
		{"G10 counter goes down", "G10", func(f *fixture) (*Result, error) {
			f.mustSubmit(f.meter, KindUsage, "imvu042", f.usage("compute", "cpu_ms", 10, f.now))
			return f.submit(f.meter, KindUsage, "imvu042", f.usage("compute", "cpu_ms", 9, f.now))
		}},
		{"G10 back-dated", "G10", func(f *fixture) (*Result, error) {
			return f.submit(f.meter, KindUsage, "imvu042", f.usage("compute", "cpu_ms", 10, f.now.Add(-time.Hour)))
		}},
		{"G10 dated into a period not begun", "G10", func(f *fixture) (*Result, error) {
			f.now = f.period().End.Add(-time.Minute)
			return f.submit(f.meter, KindUsage, "imvu042", f.usage("compute", "cpu_ms", 10, f.period().End.Add(time.Minute)))
		}},
		{"G10 event names another IMVU", "G10", func(f *fixture) (*Result, error) {
			p := f.usage("compute", "cpu_ms", 10, f.now)
			p.Events[0].IMVU = "imvu043"
			return f.submit(f.meter, KindUsage, "imvu042", p)
		}},
		{"G10 usage by an admin is no meter's", "G03", func(f *fixture) (*Result, error) {
			return f.submit(f.admin, KindUsage, "imvu042", f.usage("compute", "cpu_ms", 10, f.now))
		}},
		{"G10 allow", "", func(f *fixture) (*Result, error) {
			return f.submit(f.dnsMeter, KindUsage, "imvu042", f.usage("dns", "dns_queries", 10, f.now))
		}},
		// G11 Price agreement
		{"G11 reprice the current period", "G11", func(f *fixture) (*Result, error) {
			return f.submit(f.admin, KindPriceAgree, "imvu042", PriceParams{From: f.period().String(), Sheet: pricier()}, f.owner)
		}},
		{"G11 reprice a closed period", "G11", func(f *fixture) (*Result, error) {
			prev := f.cal().Of(f.period().Start.Add(-time.Minute))
			return f.submit(f.admin, KindPriceAgree, "imvu042", PriceParams{From: prev.String(), Sheet: pricier()}, f.owner)
		}},
		{"G11 reprice without the owner", "G06", func(f *fixture) (*Result, error) {
			return f.submit(f.admin, KindPriceAgree, "imvu042", PriceParams{From: f.cal().Next(f.period()).String(), Sheet: pricier()})
		}},
		{"G11 unpriced resource", "G11", func(f *fixture) (*Result, error) {
			return f.submit(f.meter, KindUsage, "imvu042", f.usage("compute", "gpu_ms", 10, f.now))
		}},
		{"G11 settlement drops usage", "G11", func(f *fixture) (*Result, error) {
			s := f.closedSettlement()
			s.Gross -= 20
			s.Creator, s.Platform, _ = revenue.Split(s.Gross)
			return f.submit(f.admin, KindSettle, "imvu042", s)
		}},
		{"G11 settlement names another sheet", "G11", func(f *fixture) (*Result, error) {
			s := f.closedSettlement()
			h := pricier().Hash()
			s.Sheet = hexHash(h)
			return f.submit(f.admin, KindSettle, "imvu042", s)
		}},
		{"G11 allow repricing from the next period", "", func(f *fixture) (*Result, error) {
			return f.submit(f.admin, KindPriceAgree, "imvu042", PriceParams{From: f.cal().Next(f.period()).String(), Sheet: pricier()}, f.owner)
		}},
		// G12 Name authority
		{"G12 name outside the IMVU", "G12", func(f *fixture) (*Result, error) {
			return f.submit(f.admin, "test.probe", "imvu043", probeParams{Domains: []string{"stage.imvu042.world"}}, f.owner2)
		}},
		{"G12 transfer without the holder", "G12", func(f *fixture) (*Result, error) {
			return f.submit(f.member, "test.probe", "imvu042", probeParams{Transfer: true})
		}},
		{"G12 allow inside", "", func(f *fixture) (*Result, error) {
			return f.submit(f.owner, "test.probe", "imvu042", probeParams{Domains: []string{"Stage.IMVU042.world."}})
		}},
		// G13 Mail identity
		{"G13 send as another IMVU", "G13", func(f *fixture) (*Result, error) {
			return f.submit(f.owner, "test.probe", "imvu042", probeParams{MailFrom: []string{"someone@imvu043.world"}})
		}},
		{"G13 allow own domain", "", func(f *fixture) (*Result, error) {
			return f.submit(f.owner, "test.probe", "imvu042", probeParams{MailFrom: []string{"creator@imvu042.world"}})
		}},
		// G14 Route integrity
		{"G14 path without the peer's owner", "G14", func(f *fixture) (*Result, error) {
			return f.submit(f.owner, "test.probe", "imvu042", probeParams{Peers: []string{"imvu043"}})
		}},
		{"G14 allow with both", "", func(f *fixture) (*Result, error) {
			return f.submit(f.owner, "test.probe", "imvu042", probeParams{Peers: []string{"imvu043"}}, f.owner2)
		}},
		// G15 Write-ahead audit
		{"G15 ledger unhealthy", "G15", func(f *fixture) (*Result, error) {
			f.eng.healthy.Store(false)
			return f.submit(f.owner, "test.probe", "imvu042", probeParams{})
		}},
		// G16 Exportability
		{"G16 resource lost its exporter", "G16", func(f *fixture) (*Result, error) {
			delete(f.eng.resources, "envelope")
			return f.submit(f.owner, KindResize, "imvu042", EnvelopeParams{Envelope: f.imvu("imvu042").Envelope})
		}},
		// G17 Exit freedom
		{"G17 admin acts on an exiting IMVU", "G17", func(f *fixture) (*Result, error) {
			f.mustSubmit(f.owner, KindExit, "imvu042", ExitParams{})
			env := f.imvu("imvu042").Envelope
			env.CPUMilli += 1
			return f.submit(f.admin, KindResize, "imvu042", EnvelopeParams{Envelope: env}, f.owner)
		}},
		{"G17 no settlement once exiting", "G17", func(f *fixture) (*Result, error) {
			s := f.closedSettlement()
			f.mustSubmit(f.owner, KindExit, "imvu042", ExitParams{})
			return f.submit(f.admin, KindSettle, "imvu042", s)
		}},
		{"G17 exit passes though the ledger is flagged unhealthy", "", func(f *fixture) (*Result, error) {
			f.eng.healthy.Store(false)
			return f.submit(f.owner, KindExit, "imvu042", ExitParams{})
		}},
		{"G17 exit by an admin", "G03", func(f *fixture) (*Result, error) {
			return f.submit(f.admin, KindExit, "imvu042", ExitParams{}, f.owner)
		}},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.name[:3]] = true
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			registerProbe(t, f.eng)
			size := f.log.Size()
			res, err := c.run(f)
			if c.gate == "" {
				if err != nil {
					t.Fatalf("want pass, got %v", err)
				}
				if rec := f.record(res.Index); rec.Type != RecordAction {
					t.Fatalf("entry %d is %s, want action", res.Index, rec.Type)
				}
				if rec := f.record(res.Effect); rec.Type != RecordEffect || rec.Ref != res.Index {
					t.Fatalf("entry %d is %+v, want the effect of %d", res.Effect, rec, res.Index)
				}
				return
			}
			var d *Denial
			if !errors.As(err, &d) {
				t.Fatalf("want denial by %s, got %v (result %+v)", c.gate, err, res)
			}
			if d.Gate != c.gate {
				t.Fatalf("denied by %s (%s), want %s", d.Gate, d.Reason, c.gate)
			}
			if f.stateHashes() != f.lastBefore {
				t.Fatal("state changed by a denied action")
			}
			if d.Summarised {
				// A refused handshake from a key with no identity is counted,
				// not ledgered on its own; the summary names the gate.
				if f.log.Size() != size {
					t.Fatalf("a summarised denial wrote %d entries", f.log.Size()-size)
				}
				if err := f.eng.FlushJunk(context.Background()); err != nil {
					t.Fatal(err)
				}
				rec := f.record(size)
				if rec.Type != RecordJunk || rec.Reasons[KindCreate+" denied by "+c.gate] != 1 {
					t.Fatalf("summary = %+v, want one %s denial by %s", rec, KindCreate, c.gate)
				}
				return
			}
			if d.Index < size {
				t.Fatalf("denial index %d is before the case started (size %d)", d.Index, size)
			}
			rec := f.record(d.Index)
			if rec.Type != RecordDenial || rec.Gate != c.gate || rec.Reason != d.Reason {
				t.Fatalf("ledger entry %d = %s %s %q, want the denial", d.Index, rec.Type, rec.Gate, rec.Reason)
			}
			// The denial is the last entry.
			if f.log.Size() != d.Index+1 {
				t.Fatalf("entries after the denial: size %d, denial at %d", f.log.Size(), d.Index)
			}
		})
	}
	for _, g := range Gates() {
		if !seen[g.ID] {
			t.Errorf("no case for %s", g.ID)
		}
	}
}

// TestDenialChangesNothing checks state hashes around one denial of each kind
// of actor.
func TestDenialChangesNothing(t *testing.T) {
	f := newFixture(t)
	env := f.imvu("imvu042").Envelope
	env.MemoryBytes /= 2
	f.mustDeny("G06", f.admin, KindResize, "imvu042", EnvelopeParams{Envelope: env})
	f.mustDeny("G03", f.owner2, KindResize, "imvu042", EnvelopeParams{Envelope: env})
	f.mustDeny("G03", f.member, KindResize, "imvu042", EnvelopeParams{Envelope: env})
}

func TestJunkIsCountedNotLedgered(t *testing.T) {
	f := newFixture(t)
	size := f.log.Size()
	for i := 0; i < 50; i++ {
		_, err := f.submit(f.stranger, KindResize, "imvu042", EnvelopeParams{})
		if !errors.Is(err, ErrJunk) {
			t.Fatalf("unknown key: want ErrJunk, got %v", err)
		}
	}
	s := f.signed(f.admin, KindCapacity, identity.ScopePlatform, CapacityParams{Capacity: f.genesis.Capacity})
	s.Sigs[0].Sig[3] ^= 1
	if _, err := f.send(s); !errors.Is(err, ErrJunk) {
		t.Fatalf("forged signature: want ErrJunk, got %v", err)
	}
	if f.log.Size() != size {
		t.Fatalf("junk wrote %d entries", f.log.Size()-size)
	}
	if err := f.eng.FlushJunk(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec := f.record(size)
	if rec.Type != RecordJunk || rec.Gate != "G01" || rec.Count != 51 {
		t.Fatalf("summary = %+v, want 51 junk requests under G01", rec)
	}
	if err := f.eng.FlushJunk(context.Background()); err != nil || f.log.Size() != size+1 {
		t.Fatalf("an empty flush wrote an entry (size %d, err %v)", f.log.Size(), err)
	}
}

func (f *fixture) cal() revenue.Calendar { return f.eng.state.Calendar }

func pricier() revenue.PriceSheet {
	s := revenue.DefaultPriceSheet()
	s.Version = "pricier"
	for k := range s.Prices {
		s.Prices[k] *= 2
	}
	return s
}

func settleOf(st revenue.Statement) SettleParams {
	return SettleParams{Period: st.Period, First: st.First, Last: st.Last, Sheet: hexHash(st.SheetHash),
		Gross: st.Gross, Creator: st.Creator, Platform: st.Platform}
}

// closedSettlement records usage in the current period, moves the clock past its
// end and returns the correct settlement of it.
func (f *fixture) closedSettlement() SettleParams {
	f.t.Helper()
	p := f.period()
	f.mustSubmit(f.meter, KindUsage, "imvu042", f.usage("compute", "cpu_ms", 1000, f.now))
	f.mustSubmit(f.dnsMeter, KindUsage, "imvu042", f.usage("dns", "dns_queries", 777, f.now))
	f.now = p.End.Add(time.Second)
	st, err := f.imvu("imvu042").Statement(f.cal(), p.String())
	if err != nil {
		f.t.Fatal(err)
	}
	if st.Gross != 1000*20+777*400 {
		f.t.Fatalf("gross %d", st.Gross)
	}
	return settleOf(st)
}

func TestGateList(t *testing.T) {
	gs := Gates()
	if len(gs) != GateSet {
		t.Fatalf("%d gates, want %d", len(gs), GateSet)
	}
	ids := make([]string, len(gs))
	for i, g := range gs {
		ids[i] = g.ID
		if want := fmt.Sprintf("G%02d", i+1); g.ID != want || g.Name == "" || g.Checks == "" || g.check == nil {
			t.Errorf("gate %d = %+v, want id %s with a name, text and check", i, g, want)
		}
	}
	if !sort.StringsAreSorted(ids) {
		t.Errorf("gates out of order: %v", ids)
	}
}

func ExampleGates() {
	for _, g := range Gates()[:3] {
		fmt.Println(g.ID, g.Name)
	}
	// Output:
	// G01 Authenticity
	// G02 Freshness
	// G03 Scope
}
