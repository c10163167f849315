package dns

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	mdns "github.com/miekg/dns"
)

// Zone is the data of one zone as the engine hands it over.
type Zone struct {
	Origin  string
	IMVU    string
	Serial  uint32
	Records []Record
	// Key is the zone's P-256 key (a combined ZSK/KSK) for online signing;
	// nil serves the zone unsigned.
	Key *ecdsa.PrivateKey
}

// SOA timers of every zone: refresh, retry, expire and the negative TTL
// (minimum), in seconds.
const (
	SOARefresh = 3600
	SOARetry   = 600
	SOAExpire  = 1209600
	SOAMinimum = 300
)

// Compiled is a zone checked and indexed for answering. It is immutable once
// Build returns (its caches of signatures are internal and invisible), so one
// Compiled may be served while the next is built.
type Compiled struct {
	origin string // lowercase FQDN
	owire  string // lowercase wire
	imvu   string
	serial uint32

	soa    *mdns.SOA
	negSOA *mdns.SOA // the SOA as put in negative answers: TTL = minimum
	negTTL uint32
	nsSet  []mdns.RR

	nodes map[string]*node // by lowercase wire name, empty non-terminals included
	apex  *node
	order []*node // nodes holding data, canonical order

	nx      *tmpl // unsigned NXDOMAIN
	nodata  *tmpl // unsigned NODATA
	records []Record
	count   int

	key    *ecdsa.PrivateKey
	dnskey *mdns.DNSKEY
	sigs   *sigCache

	xfrMu     sync.Mutex
	xfrSigned []mdns.RR
	xfrAt     int64
}

// node is one owner name of a zone.
type node struct {
	name  string // lowercase FQDN
	wire  string // lowercase wire
	sets  []*rrset
	cname *rrset
	deleg *node // the topmost zone cut at or above this name; nil if none
	wild  *node // the "*" child, if any
	fast  bool  // every unsigned answer at this name comes from tmpls or c.nodata
	tmpls []*tmpl
}

// rrset is the records of one name and type.
type rrset struct {
	typ uint16
	rrs []mdns.RR
}

func (n *node) get(t uint16) *rrset {
	for _, s := range n.sets {
		if s.typ == t {
			return s
		}
	}
	return nil
}

// types returns the types present at n.
func (n *node) types() []uint16 {
	ts := make([]uint16, 0, len(n.sets)+2)
	for _, s := range n.sets {
		ts = append(ts, s.typ)
	}
	return ts
}

// Origin returns the zone's name, lowercase and fully qualified.
func (c *Compiled) Origin() string { return c.origin }

// IMVU returns the IMVU that owns the zone.
func (c *Compiled) IMVU() string { return c.imvu }

// Serial returns the SOA serial.
func (c *Compiled) Serial() uint32 { return c.serial }

// Signed reports whether answers are signed (the zone has a key).
func (c *Compiled) Signed() bool { return c.key != nil }

// Len returns the number of records, SOA, apex NS and DNSKEY included.
func (c *Compiled) Len() int { return c.count }

// Records returns the zone's own records as Build normalised them (owner
// lowercased, relative to the origin, RDATA canonical), without SOA, apex NS
// and DNSKEY.
func (c *Compiled) Records() []Record { return slices.Clone(c.records) }

// DNSKEY returns the zone key as a DNSKEY record, or nil when unsigned.
func (c *Compiled) DNSKEY() *mdns.DNSKEY {
	if c.dnskey == nil {
		return nil
	}
	return mdns.Copy(c.dnskey).(*mdns.DNSKEY)
}

// Build checks a zone and compiles it for answering. It adds the SOA (serial
// z.Serial, the first nameserver as MNAME, hostmaster as RNAME) and the apex
// NS set, and the DNSKEY when z.Key is set. nameservers are absolute names or
// names relative to the origin; hostmaster is a mailbox ("hostmaster@example.org")
// or a name ("hostmaster.example.org."), and "" means hostmaster@origin.
//
// It refuses names outside the zone, unsupported types, RRsets whose TTLs
// differ, CNAMEs beside other data (or more than one), data at or below a
// delegation other than glue, and nameservers inside the zone without an
// address record.
func Build(z Zone, nameservers []string, hostmaster string) (*Compiled, error) {
	origin, err := canonicalOrigin(z.Origin)
	if err != nil {
		return nil, err
	}
	c := &Compiled{origin: origin, owire: mustWire(origin), imvu: z.IMVU, serial: z.Serial, negTTL: SOAMinimum}
	if len(nameservers) == 0 {
		return nil, fmt.Errorf("zone %s: no nameservers", origin)
	}
	var nsNames []string
	for _, ns := range nameservers {
		n, err := absName(origin, ns)
		if err != nil {
			return nil, fmt.Errorf("zone %s: nameserver %w", origin, err)
		}
		if !slices.Contains(nsNames, n) {
			nsNames = append(nsNames, n)
		}
	}
	rname, err := mailboxName(origin, hostmaster)
	if err != nil {
		return nil, fmt.Errorf("zone %s: hostmaster %w", origin, err)
	}
	hdr := func(t uint16, ttl uint32) mdns.RR_Header {
		return mdns.RR_Header{Name: origin, Rrtype: t, Class: mdns.ClassINET, Ttl: ttl}
	}
	c.soa = &mdns.SOA{Hdr: hdr(mdns.TypeSOA, DefaultTTL), Ns: nsNames[0], Mbox: rname, Serial: z.Serial,
		Refresh: SOARefresh, Retry: SOARetry, Expire: SOAExpire, Minttl: SOAMinimum}
	for i, n := range nsNames {
		nsNames[i] = presentation(mustWire(n)) // one spelling per name
	}
	c.soa.Ns = nsNames[0]
	c.soa.Mbox = presentation(mustWire(rname))
	c.negSOA = mdns.Copy(c.soa).(*mdns.SOA)
	c.negSOA.Hdr.Ttl = min(DefaultTTL, SOAMinimum)
	c.negTTL = c.negSOA.Hdr.Ttl
	for _, n := range nsNames {
		c.nsSet = append(c.nsSet, &mdns.NS{Hdr: hdr(mdns.TypeNS, DefaultTTL), Ns: n})
	}
	rrs := []mdns.RR{c.soa}
	rrs = append(rrs, c.nsSet...)
	if z.Key != nil {
		if z.Key.Curve != elliptic.P256() {
			return nil, fmt.Errorf("zone %s: key is not a P-256 key (DNSSEC algorithm 13 needs P-256)", origin)
		}
		c.key = z.Key
		if c.dnskey, err = dnskeyOf(origin, &z.Key.PublicKey); err != nil {
			return nil, fmt.Errorf("zone %s: %w", origin, err)
		}
		rrs = append(rrs, c.dnskey)
		c.sigs = newSigCache(sigCacheSize(len(z.Records)))
	}
	var errs []error
	for i, r := range z.Records {
		rr, err := parseRecord(origin, r)
		if err != nil {
			errs = append(errs, fmt.Errorf("records[%d]: %w", i, err))
			if len(errs) >= 20 {
				errs = append(errs, errors.New("(more errors not shown)"))
				break
			}
			continue
		}
		rrs = append(rrs, rr)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("zone %s: %w", origin, errors.Join(errs...))
	}
	if err := c.index(rrs); err != nil {
		return nil, fmt.Errorf("zone %s: %w", origin, err)
	}
	if err := c.compileFast(); err != nil {
		return nil, fmt.Errorf("zone %s: %w", origin, err)
	}
	return c, nil
}

// absName resolves a name that may be relative to origin and may lie outside it.
func absName(origin, name string) (string, error) {
	if err := plainText(name, "name"); err != nil {
		return "", err
	}
	n := name
	if n == "@" {
		n = origin
	} else if !mdns.IsFqdn(n) {
		if origin == "." {
			n += "."
		} else {
			n += "." + origin
		}
	}
	if _, ok := mdns.IsDomainName(n); !ok {
		return "", fmt.Errorf("%q is not a domain name", name)
	}
	if _, err := wireName(n); err != nil {
		return "", err
	}
	return mdns.CanonicalName(n), nil
}

// mailboxName turns "local@domain" into the RNAME form, or checks a name.
func mailboxName(origin, box string) (string, error) {
	if box == "" {
		return absName(origin, "hostmaster."+origin)
	}
	if local, domain, ok := strings.Cut(box, "@"); ok {
		if local == "" || domain == "" || strings.ContainsAny(local, `\ "`) {
			return "", fmt.Errorf("%q is not a mailbox", box)
		}
		return absName(origin, strings.ReplaceAll(local, ".", `\.`)+"."+mdns.Fqdn(domain))
	}
	return absName(origin, box)
}

// dnskeyOf makes the DNSKEY (flags 257: one key signs everything) of a P-256 key.
func dnskeyOf(origin string, pub *ecdsa.PublicKey) (*mdns.DNSKEY, error) {
	raw, err := pub.Bytes() // 0x04 || X || Y; the DNSKEY holds X || Y (RFC 6605)
	if err != nil || len(raw) != 65 {
		return nil, fmt.Errorf("zone key: %v", err)
	}
	return &mdns.DNSKEY{
		Hdr:   mdns.RR_Header{Name: origin, Rrtype: mdns.TypeDNSKEY, Class: mdns.ClassINET, Ttl: DefaultTTL},
		Flags: 257, Protocol: 3, Algorithm: mdns.ECDSAP256SHA256,
		PublicKey: base64.StdEncoding.EncodeToString(raw[1:]),
	}, nil
}

// index groups the records by name and type and checks the zone's shape.
func (c *Compiled) index(rrs []mdns.RR) error {
	c.nodes = make(map[string]*node, len(rrs)+8)
	get := func(name string) *node {
		w := mustWire(name)
		n := c.nodes[w]
		if n == nil {
			n = &node{name: name, wire: w}
			c.nodes[w] = n
		}
		return n
	}
	c.apex = get(c.origin)
	var errs []error
	for _, rr := range rrs {
		h := rr.Header()
		n := get(h.Name)
		s := n.get(h.Rrtype)
		if s == nil {
			s = &rrset{typ: h.Rrtype}
			n.sets = append(n.sets, s)
		}
		dup := false
		for _, o := range s.rrs {
			if mdns.IsDuplicate(o, rr) {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		if len(s.rrs) > 0 && s.rrs[0].Header().Ttl != h.Ttl {
			errs = append(errs, fmt.Errorf("%s %s: records have different TTLs (%d and %d); an RRset has one TTL",
				relativeName(h.Name, c.origin), mdns.TypeToString[h.Rrtype], s.rrs[0].Header().Ttl, h.Ttl))
			continue
		}
		s.rrs = append(s.rrs, rr)
	}
	// Empty non-terminals: every name between an owner and the apex exists.
	for _, n := range slices.Collect(maps.Values(c.nodes)) {
		for w := parentWire(n.wire); len(w) > len(c.owire); w = parentWire(w) {
			if c.nodes[w] == nil {
				c.nodes[w] = &node{name: presentation(w), wire: w}
			}
		}
	}
	for _, n := range c.nodes {
		slices.SortFunc(n.sets, func(a, b *rrset) int { return int(a.typ) - int(b.typ) })
		for _, s := range n.sets {
			c.count += len(s.rrs)
		}
		n.cname = n.get(mdns.TypeCNAME)
		n.wild = c.nodes["\x01*"+n.wire]
		// The topmost cut at or above n (the apex is no cut).
		for w := n.wire; len(w) > len(c.owire); w = parentWire(w) {
			if p := c.nodes[w]; p != nil && p.get(mdns.TypeNS) != nil {
				n.deleg = p
			}
		}
		if len(n.sets) > 0 {
			c.order = append(c.order, n)
		}
	}
	slices.SortFunc(c.order, func(a, b *node) int { return canonicalCompare(a.wire, b.wire) })
	for _, n := range c.order {
		for _, s := range n.sets {
			if s.typ == mdns.TypeSOA || s.typ == mdns.TypeDNSKEY || (s.typ == mdns.TypeNS && n == c.apex) {
				continue
			}
			for _, rr := range s.rrs {
				c.records = append(c.records, toRecord(c.origin, rr))
			}
		}
	}
	for _, n := range c.order {
		rel := relativeName(n.name, c.origin)
		switch {
		case n.cname != nil && len(n.cname.rrs) > 1:
			errs = append(errs, fmt.Errorf("%s: more than one CNAME", rel))
		case n.cname != nil && len(n.sets) > 1:
			errs = append(errs, fmt.Errorf("%s: a CNAME cannot share its name with other data (%s)", rel, typeList(n.types())))
		case n.deleg == n && len(n.sets) > 1:
			errs = append(errs, fmt.Errorf("%s: is a delegation (NS) and holds only NS here, not %s", rel, typeList(n.types())))
		case n.deleg != nil && n.deleg != n && slices.ContainsFunc(n.sets, func(s *rrset) bool { return s.typ != mdns.TypeA && s.typ != mdns.TypeAAAA }):
			errs = append(errs, fmt.Errorf("%s: is below the delegation %s; only glue (A, AAAA) may be there", rel, relativeName(n.deleg.name, c.origin)))
		case strings.HasPrefix(n.wire, "\x01*") && n.get(mdns.TypeNS) != nil:
			errs = append(errs, fmt.Errorf("%s: a wildcard cannot hold NS", rel))
		}
		if s := n.get(mdns.TypeNS); s != nil {
			for _, rr := range s.rrs {
				t := rr.(*mdns.NS).Ns
				tw := mustWire(t)
				if !isSubWire(tw, c.owire) {
					continue
				}
				if tn := c.nodes[tw]; tn == nil || (tn.get(mdns.TypeA) == nil && tn.get(mdns.TypeAAAA) == nil) {
					errs = append(errs, fmt.Errorf("%s NS %s: the nameserver is inside the zone and has no A or AAAA record", rel, t))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func typeList(ts []uint16) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = mdns.TypeToString[t]
	}
	return strings.Join(s, " ")
}

// toRecord turns an RR back into a Record relative to origin.
func toRecord(origin string, rr mdns.RR) Record {
	h := rr.Header()
	return Record{Name: relativeName(h.Name, origin), Type: mdns.TypeToString[h.Rrtype], TTL: h.Ttl,
		Data: strings.TrimPrefix(rr.String(), h.String())}
}

// all returns every record in canonical order: SOA first, then by name and type.
func (c *Compiled) all() []mdns.RR {
	out := make([]mdns.RR, 0, c.count)
	out = append(out, c.soa)
	for _, n := range c.order {
		for _, s := range n.sets {
			if s.typ != mdns.TypeSOA {
				out = append(out, s.rrs...)
			}
		}
	}
	return out
}

// lookup returns the template of type qt at a fast node.
func (n *node) lookup(qt uint16, c *Compiled) *tmpl {
	for i, s := range n.sets {
		if s.typ == qt {
			return n.tmpls[i]
		}
	}
	return c.nodata
}

// compileFast packs, for every name whose answers depend only on the name and
// type (no CNAME, not at or below a cut), the unsigned answer of each type it
// holds; NODATA and NXDOMAIN are one template each for the zone.
func (c *Compiled) compileFast() error {
	var err error
	nx := &result{aa: true}
	if err := c.deny(nx, "", nil, false, false); err != nil {
		return err
	}
	if c.nx, err = pack(nx); err != nil {
		return err
	}
	if c.nodata, err = pack(&result{aa: true, ns: []entry{{c.negSOA, false}}}); err != nil {
		return err
	}
	for _, n := range c.nodes {
		if n.deleg != nil || n.cname != nil {
			continue
		}
		n.tmpls = make([]*tmpl, len(n.sets))
		for i, s := range n.sets {
			r := c.resolve(n.wire, s.typ, false)
			if r.rcode != 0 {
				return fmt.Errorf("%s %s: cannot answer", n.name, mdns.TypeToString[s.typ])
			}
			if n.tmpls[i], err = pack(r); err != nil {
				return fmt.Errorf("%s %s: %w", n.name, mdns.TypeToString[s.typ], err)
			}
		}
		n.fast = true
	}
	return nil
}
