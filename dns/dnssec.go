package dns

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// Online signing: signatures are made when first needed and kept per RRset
// for as long as the Compiled lives (its serial), bounded, and made again a
// day before they would need it: each is valid from an hour ago for a week.
const (
	sigInception = time.Hour
	sigValidity  = 7 * 24 * time.Hour
	sigRefresh   = 24 * time.Hour
	// Signatures in a zone transfer must outlive the secondary's copy for a
	// while: they are valid for two weeks (the SOA expire) and the snapshot
	// is remade after a day.
	xfrValidity = 14 * 24 * time.Hour
	xfrRefresh  = 24 * time.Hour
)

// sigCache holds RRSIGs by owner and type.
type sigCache struct {
	mu  sync.Mutex
	m   map[sigKey]sigEntry
	max int
}

type sigKey struct {
	owner string
	typ   uint16
}

type sigEntry struct {
	sig     *mdns.RRSIG
	refresh int64
}

func sigCacheSize(records int) int { return min(max(4*records+1024, 4096), 1<<18) }

func newSigCache(max int) *sigCache { return &sigCache{m: make(map[sigKey]sigEntry), max: max} }

// DS returns the DS record (SHA-256 digest) of the zone key, as text, for the
// zone's owner to give to the parent zone.
func DS(c *Compiled) (string, error) {
	if c == nil || c.dnskey == nil {
		return "", errors.New("zone is not signed: it has no key")
	}
	ds := c.dnskey.ToDS(mdns.SHA256)
	if ds == nil {
		return "", errors.New("cannot compute the DS of the zone key")
	}
	return ds.String(), nil
}

// rrsig returns the signature of an RRset (all records with the same owner
// and type), from the cache or freshly made.
func (c *Compiled) rrsig(rrs []mdns.RR) (*mdns.RRSIG, int64, error) {
	h := rrs[0].Header()
	k := sigKey{h.Name, h.Rrtype}
	now := time.Now()
	c.sigs.mu.Lock()
	e, ok := c.sigs.m[k]
	c.sigs.mu.Unlock()
	if ok && now.Unix() < e.refresh {
		return e.sig, e.refresh, nil
	}
	sig, err := c.sign(rrs, now, sigValidity)
	if err != nil {
		return nil, 0, err
	}
	e = sigEntry{sig, now.Add(sigRefresh).Unix()}
	c.sigs.mu.Lock()
	if len(c.sigs.m) >= c.sigs.max {
		// Drop an arbitrary tenth; it is remade when asked for again.
		n := c.sigs.max / 10
		for k := range c.sigs.m {
			delete(c.sigs.m, k)
			if n--; n <= 0 {
				break
			}
		}
	}
	c.sigs.m[k] = e
	c.sigs.mu.Unlock()
	return sig, e.refresh, nil
}

func (c *Compiled) sign(rrs []mdns.RR, now time.Time, validity time.Duration) (*mdns.RRSIG, error) {
	h := rrs[0].Header()
	sig := &mdns.RRSIG{
		Hdr:        mdns.RR_Header{Ttl: h.Ttl},
		Algorithm:  mdns.ECDSAP256SHA256,
		KeyTag:     c.dnskey.KeyTag(),
		SignerName: c.origin,
		Inception:  uint32(now.Add(-sigInception).Unix()),
		Expiration: uint32(now.Add(validity).Unix()),
	}
	if err := sig.Sign(c.key, rrs); err != nil {
		return nil, fmt.Errorf("sign %s %s: %w", h.Name, mdns.TypeToString[h.Rrtype], err)
	}
	sig.Hdr.Ttl = h.Ttl
	return sig, nil
}

// nsecAt is the compact-denial NSEC at a name: next name "\000.name", types
// of the node (src nil: the name does not exist, RRSIG NSEC NXNAME).
func (c *Compiled) nsecAt(name string, src *node) *mdns.NSEC {
	return &mdns.NSEC{
		Hdr:        mdns.RR_Header{Name: name, Rrtype: mdns.TypeNSEC, Class: mdns.ClassINET, Ttl: c.negTTL},
		NextDomain: successor(name),
		TypeBitMap: c.bitmap(src),
	}
}

// bitmap lists the types of a node for its NSEC.
func (c *Compiled) bitmap(n *node) []uint16 {
	switch {
	case n == nil:
		return []uint16{mdns.TypeRRSIG, mdns.TypeNSEC, mdns.TypeNXNAME}
	case n.deleg == n:
		return []uint16{mdns.TypeNS, mdns.TypeRRSIG, mdns.TypeNSEC}
	}
	ts := append(n.types(), mdns.TypeRRSIG, mdns.TypeNSEC)
	slices.Sort(ts)
	return slices.Compact(ts)
}

// successor is the name right after name in canonical order: "\000.name",
// or, when that would be too long, name with its first label's last byte
// incremented (only NODATA proofs are made, which do not depend on it).
func successor(name string) string {
	s := `\000.` + name
	if name == "." {
		s = `\000.`
	}
	if _, err := wireName(s); err == nil {
		return s
	}
	w := []byte(mustWire(name))
	l := int(w[0])
	if l > 0 && w[l] < 0xff {
		w[l]++
	}
	return presentation(string(w))
}

// signedTransfer returns the zone as a secondary needs it when signed: every
// record, the DNSKEY, a full NSEC chain and RRSIGs over all authoritative
// RRsets, so that a plain secondary serves answers that validate. It is made
// once and remade a day later.
func (c *Compiled) signedTransfer() ([]mdns.RR, error) {
	c.xfrMu.Lock()
	defer c.xfrMu.Unlock()
	now := time.Now()
	if c.xfrSigned != nil && now.Unix() < c.xfrAt+int64(xfrRefresh/time.Second) {
		return c.xfrSigned, nil
	}
	// Names in the chain: those with data that are authoritative or cuts
	// (glue below a cut and empty non-terminals have no NSEC).
	var chain []*node
	for _, n := range c.order {
		if n.deleg == nil || n.deleg == n {
			chain = append(chain, n)
		}
	}
	out := []mdns.RR{}
	var soaSig *mdns.RRSIG
	for i, n := range chain {
		next := chain[(i+1)%len(chain)].name
		nsec := &mdns.NSEC{
			Hdr:        mdns.RR_Header{Name: n.name, Rrtype: mdns.TypeNSEC, Class: mdns.ClassINET, Ttl: c.negTTL},
			NextDomain: next,
			TypeBitMap: c.bitmap(n),
		}
		for _, s := range n.sets {
			if s.typ != mdns.TypeSOA {
				out = append(out, s.rrs...)
			}
			if n.deleg == n { // a cut's NS is not signed
				continue
			}
			sig, err := c.sign(s.rrs, now, xfrValidity)
			if err != nil {
				return nil, err
			}
			if s.typ == mdns.TypeSOA {
				soaSig = sig
				continue
			}
			out = append(out, sig)
		}
		sig, err := c.sign([]mdns.RR{nsec}, now, xfrValidity)
		if err != nil {
			return nil, err
		}
		out = append(out, nsec, sig)
	}
	for _, n := range c.order {
		if n.deleg != nil && n.deleg != n {
			for _, s := range n.sets {
				out = append(out, s.rrs...)
			}
		}
	}
	all := append([]mdns.RR{c.soa, soaSig}, out...)
	c.xfrSigned, c.xfrAt = all, now.Unix()
	return all, nil
}
