package resolver

import (
	"context"
	"crypto"
	"encoding/base64"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// This file builds a small DNS hierarchy of fake authoritative servers on
// 127.0.0.x, all on one port:
//
//	127.0.0.10  .              (signed, KSK+ZSK)    delegates test. (DS), other. (no DS)
//	127.0.0.11  test.          (signed, Ed25519)    delegates example.test. (DS, glue),
//	                                                noglue.test. (DS, NS without glue),
//	                                                evil.test. (out-of-bailiwick glue to the trap),
//	                                                insecure.test. (no DS, NSEC proof),
//	                                                nods.test. (no DS and no proof)
//	127.0.0.12  example.test.  (signed, ECDSA)      + insecure.test. (unsigned) + nods.test. (signed)
//	127.0.0.13  other.         (unsigned)           ns.hosting.other. -> 127.0.0.14
//	127.0.0.14  noglue.test.   (signed, Ed25519)    + evil.test. (unsigned)
//	127.0.0.66  the trap: answers everything with 6.6.6.6; nobody should ask it
//
// Queries never leave 127.0.0.0/8.

type seenQuery struct {
	name  string // as received (case preserved)
	qtype uint16
	id    uint16
	port  int
	tcp   bool
}

type fakeZone struct {
	origin   string
	data     map[string]map[uint16][]mdns.RR
	cuts     map[string]bool
	signed   bool
	ksk, zsk *mdns.DNSKEY
	kskPriv  crypto.Signer
	zskPriv  crypto.Signer
	sigs     map[setKey][]mdns.RR
	nsecs    []*mdns.NSEC // canonical order
	glue     map[string][]mdns.RR
	tamper   map[setKey]bool
	noDenial map[string]bool // cuts/names whose DS and NSEC are never sent
}

// testNameLess is an independent, simple canonical order for the test's
// plain names: labels compared from the right.
func testNameLess(a, b string) bool {
	la := strings.Split(strings.TrimSuffix(strings.ToLower(a), "."), ".")
	lb := strings.Split(strings.TrimSuffix(strings.ToLower(b), "."), ".")
	if a == "." {
		la = nil
	}
	if b == "." {
		lb = nil
	}
	slices.Reverse(la)
	slices.Reverse(lb)
	for i := 0; i < len(la) && i < len(lb); i++ {
		if la[i] != lb[i] {
			return la[i] < lb[i]
		}
	}
	return len(la) < len(lb)
}

func under(parent, child string) bool {
	parent, child = strings.ToLower(parent), strings.ToLower(child)
	return parent == "." || child == parent || strings.HasSuffix(child, "."+parent)
}

func parentName(n string) string {
	if n == "." {
		return "."
	}
	i := strings.IndexByte(n, '.')
	if i == len(n)-1 {
		return "."
	}
	return n[i+1:]
}

type zoneOpts struct {
	origin string
	text   string
	alg    uint8 // 0: unsigned
	split  bool  // separate KSK and ZSK
	ds     []mdns.RR
	glue   map[string][]string // extra glue for a cut: "name A addr"
	tamper []setKey
	noDen  []string
}

func newFakeZone(t testing.TB, o zoneOpts) *fakeZone {
	t.Helper()
	z := &fakeZone{origin: o.origin, data: map[string]map[uint16][]mdns.RR{}, cuts: map[string]bool{},
		sigs: map[setKey][]mdns.RR{}, glue: map[string][]mdns.RR{}, tamper: map[setKey]bool{}, noDenial: map[string]bool{}}
	zp := mdns.NewZoneParser(strings.NewReader("$TTL 300\n"+o.text), o.origin, "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		z.add(rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("zone %s: %v", o.origin, err)
	}
	for _, rr := range o.ds {
		z.add(rr)
	}
	for cut, lines := range o.glue {
		for _, l := range lines {
			rr, err := mdns.NewRR(l)
			if err != nil {
				t.Fatal(err)
			}
			z.glue[cut] = append(z.glue[cut], rr)
		}
	}
	for name, types := range z.data {
		if _, ok := types[mdns.TypeNS]; ok && name != z.origin {
			z.cuts[name] = true
		}
	}
	for _, k := range o.tamper {
		z.tamper[k] = true
	}
	for _, n := range o.noDen {
		z.noDenial[n] = true
	}
	if o.alg != 0 {
		z.signed = true
		gen := func(flags uint16) (*mdns.DNSKEY, crypto.Signer) {
			k := &mdns.DNSKEY{Hdr: mdns.RR_Header{Name: z.origin, Rrtype: mdns.TypeDNSKEY, Class: mdns.ClassINET, Ttl: 3600},
				Flags: flags, Protocol: 3, Algorithm: o.alg}
			bits := 256
			if o.alg == mdns.RSASHA256 {
				bits = 1024
			}
			priv, err := k.Generate(bits)
			if err != nil {
				t.Fatal(err)
			}
			return k, priv.(crypto.Signer)
		}
		z.ksk, z.kskPriv = gen(257)
		z.zsk, z.zskPriv = z.ksk, z.kskPriv
		z.add(z.ksk)
		if o.split {
			z.zsk, z.zskPriv = gen(256)
			z.add(z.zsk)
		}
		z.signAll(t)
	}
	return z
}

func (z *fakeZone) add(rr mdns.RR) {
	h := rr.Header()
	h.Name = strings.ToLower(h.Name)
	if z.data[h.Name] == nil {
		z.data[h.Name] = map[uint16][]mdns.RR{}
	}
	z.data[h.Name][h.Rrtype] = append(z.data[h.Name][h.Rrtype], rr)
}

// below reports whether name is strictly below a cut (glue, not ours).
func (z *fakeZone) below(name string) bool {
	for c := range z.cuts {
		if name != c && under(c, name) {
			return true
		}
	}
	return false
}

func (z *fakeZone) signAll(t testing.TB) {
	var names []string
	for n := range z.data {
		if !z.below(n) {
			names = append(names, n)
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		if testNameLess(a, b) {
			return -1
		}
		if testNameLess(b, a) {
			return 1
		}
		return 0
	})
	for i, n := range names {
		next := names[(i+1)%len(names)]
		types := []uint16{mdns.TypeNSEC, mdns.TypeRRSIG}
		for tp := range z.data[n] {
			types = append(types, tp)
		}
		slices.Sort(types)
		nsec := &mdns.NSEC{Hdr: mdns.RR_Header{Name: n, Rrtype: mdns.TypeNSEC, Class: mdns.ClassINET, Ttl: 60}, NextDomain: next, TypeBitMap: types}
		z.nsecs = append(z.nsecs, nsec)
		z.sigs[setKey{n, mdns.TypeNSEC}] = z.sign(t, []mdns.RR{nsec})
	}
	for _, n := range names {
		for tp, rrs := range z.data[n] {
			if z.cuts[n] && tp != mdns.TypeDS {
				continue // NS at a cut and glue are not signed
			}
			z.sigs[setKey{n, tp}] = z.sign(t, rrs)
		}
	}
}

func (z *fakeZone) sign(t testing.TB, rrs []mdns.RR) []mdns.RR {
	h := rrs[0].Header()
	keys := []*mdns.DNSKEY{z.zsk}
	privs := []crypto.Signer{z.zskPriv}
	if h.Rrtype == mdns.TypeDNSKEY && z.ksk != z.zsk {
		keys, privs = []*mdns.DNSKEY{z.ksk}, []crypto.Signer{z.kskPriv}
	}
	var out []mdns.RR
	now := time.Now()
	for i, k := range keys {
		sig := &mdns.RRSIG{Hdr: mdns.RR_Header{Ttl: h.Ttl}, Algorithm: k.Algorithm, KeyTag: k.KeyTag(), SignerName: z.origin,
			Inception: uint32(now.Add(-time.Hour).Unix()), Expiration: uint32(now.Add(30 * 24 * time.Hour).Unix())}
		if err := sig.Sign(privs[i], rrs); err != nil {
			t.Fatalf("sign %s: %v", h.Name, err)
		}
		if z.tamper[setKey{h.Name, h.Rrtype}] {
			b, _ := base64.StdEncoding.DecodeString(sig.Signature)
			b[len(b)/2] ^= 0x40
			sig.Signature = base64.StdEncoding.EncodeToString(b)
		}
		out = append(out, sig)
	}
	return out
}

func (z *fakeZone) ds(digest uint8) mdns.RR {
	d := z.ksk.ToDS(digest)
	d.Hdr.Ttl = 3600
	return d
}

// answer is the zone's authoritative reply to req.
func (z *fakeZone) answer(req *mdns.Msg, do bool) *mdns.Msg {
	q := req.Question[0]
	qn := strings.ToLower(q.Name)
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	add := func(sec *[]mdns.RR, owner string, t uint16, rename string) bool {
		rrs := z.data[owner][t]
		if len(rrs) == 0 {
			return false
		}
		for _, rr := range rrs {
			c := mdns.Copy(rr)
			if rename != "" {
				c.Header().Name = rename
			}
			*sec = append(*sec, c)
		}
		if do && z.signed {
			for _, rr := range z.sigs[setKey{owner, t}] {
				c := mdns.Copy(rr)
				if rename != "" {
					c.Header().Name = rename
				}
				*sec = append(*sec, c)
			}
		}
		return true
	}
	addNSEC := func(n *mdns.NSEC) {
		if !do || !z.signed || n == nil || z.noDenial[n.Hdr.Name] {
			return
		}
		m.Ns = append(m.Ns, n)
		m.Ns = append(m.Ns, z.sigs[setKey{n.Hdr.Name, mdns.TypeNSEC}]...)
	}
	soa := func() { add(&m.Ns, z.origin, mdns.TypeSOA, "") }

	// Delegations (the DS of a cut is answered here, on the parent side).
	for c := range z.cuts {
		if under(c, qn) && !(qn == c && q.Qtype == mdns.TypeDS) {
			m.Authoritative = false
			add(&m.Ns, c, mdns.TypeNS, "")
			if do && z.signed && !z.noDenial[c] {
				if !add(&m.Ns, c, mdns.TypeDS, "") {
					addNSEC(z.nsecAt(c))
				}
			}
			for _, rr := range z.data[c][mdns.TypeNS] {
				host := strings.ToLower(rr.(*mdns.NS).Ns)
				if under(z.origin, host) {
					add(&m.Extra, host, mdns.TypeA, "")
				}
			}
			m.Extra = append(m.Extra, z.glue[c]...)
			return m
		}
	}
	if _, ok := z.data[qn]; ok {
		if z.noDenial[qn] && q.Qtype == mdns.TypeDS {
			soa()
			return m
		}
		cur := qn
		for range 8 {
			if add(&m.Answer, cur, q.Qtype, "") {
				return m
			}
			cn := z.data[cur][mdns.TypeCNAME]
			if len(cn) == 0 || q.Qtype == mdns.TypeCNAME {
				break
			}
			add(&m.Answer, cur, mdns.TypeCNAME, "")
			cur = strings.ToLower(cn[0].(*mdns.CNAME).Target)
			if !under(z.origin, cur) || z.data[cur] == nil {
				return m
			}
		}
		if cur != qn {
			return m
		}
		soa()
		addNSEC(z.nsecAt(qn))
		return m
	}
	for anc := parentName(qn); under(z.origin, anc); anc = parentName(anc) {
		if add(&m.Answer, anc, mdns.TypeDNAME, "") {
			target := strings.TrimSuffix(qn, anc) + z.data[anc][mdns.TypeDNAME][0].(*mdns.DNAME).Target
			m.Answer = append(m.Answer, &mdns.CNAME{Hdr: mdns.RR_Header{Name: qn, Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: 300}, Target: target})
			return m
		}
		if anc == z.origin || anc == "." {
			break
		}
	}
	// closest encloser
	ce := parentName(qn)
	for !z.exists(ce) && ce != z.origin && ce != "." {
		ce = parentName(ce)
	}
	wc := "*." + ce
	if _, ok := z.data[wc]; ok {
		if add(&m.Answer, wc, q.Qtype, q.Name) {
			addNSEC(z.nsecCovering(qn))
			return m
		}
		soa()
		addNSEC(z.nsecCovering(qn))
		addNSEC(z.nsecAt(wc))
		return m
	}
	if z.exists(qn) { // empty non-terminal
		soa()
		addNSEC(z.nsecCovering(qn))
		return m
	}
	m.Rcode = mdns.RcodeNameError
	soa()
	if z.noDenial[qn] {
		return m
	}
	c1 := z.nsecCovering(qn)
	addNSEC(c1)
	if c2 := z.nsecCovering(wc); c2 != c1 {
		addNSEC(c2)
	}
	return m
}

func (z *fakeZone) exists(n string) bool {
	if _, ok := z.data[n]; ok {
		return true
	}
	for name := range z.data {
		if under(n, name) {
			return true
		}
	}
	return false
}

func (z *fakeZone) nsecAt(n string) *mdns.NSEC {
	for _, x := range z.nsecs {
		if x.Hdr.Name == n {
			return x
		}
	}
	return nil
}

func (z *fakeZone) nsecCovering(n string) *mdns.NSEC {
	for _, x := range z.nsecs {
		if testNameLess(x.Hdr.Name, n) && (testNameLess(n, x.NextDomain) || !testNameLess(x.Hdr.Name, x.NextDomain)) {
			return x
		}
	}
	return nil
}

// fakeServer serves zones on ip:port over UDP and TCP and logs every query.
type fakeServer struct {
	ip    string
	zones []*fakeZone
	trap  bool
	modes map[string]string // lowercased name -> tc, spoof-id, spoof-q, spoof-case, wrong-case

	mu  sync.Mutex
	log []seenQuery

	udp, tcp *mdns.Server
}

func (s *fakeServer) queries() []seenQuery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

func (s *fakeServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.log)
}

func swapCase(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 32
		} else if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

func (s *fakeServer) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	port := 0
	if ap, err := netip.ParseAddrPort(w.RemoteAddr().String()); err == nil {
		port = int(ap.Port())
	}
	if len(req.Question) != 1 {
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	s.mu.Lock()
	s.log = append(s.log, seenQuery{name: q.Name, qtype: q.Qtype, id: req.Id, port: port, tcp: tcp})
	s.mu.Unlock()
	opt := req.IsEdns0()
	do := opt != nil && opt.Do()
	var m *mdns.Msg
	if s.trap {
		m = new(mdns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		m.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 300}, A: net.IPv4(6, 6, 6, 6)}}
	} else {
		var best *fakeZone
		qn := strings.ToLower(q.Name)
		for _, z := range s.zones {
			if under(z.origin, qn) && (best == nil || len(z.origin) > len(best.origin)) {
				best = z
			}
		}
		if best == nil {
			m = new(mdns.Msg)
			m.SetRcode(req, mdns.RcodeRefused)
		} else {
			m = best.answer(req, do)
		}
	}
	if opt != nil {
		m.SetEdns0(1232, do)
	}
	poisoned := func(name string) *mdns.Msg {
		p := m.Copy()
		p.Question[0].Name = name
		p.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 300}, A: net.IPv4(6, 6, 6, 6)}}
		return p
	}
	switch s.modes[strings.ToLower(q.Name)] {
	case "tc":
		if !tcp {
			t := new(mdns.Msg)
			t.SetReply(req)
			t.Authoritative = true
			t.Truncated = true
			_ = w.WriteMsg(t)
			return
		}
	case "spoof-id":
		p := poisoned(q.Name)
		p.Id ^= 0x5555
		_ = w.WriteMsg(p)
		time.Sleep(20 * time.Millisecond)
	case "spoof-q":
		_ = w.WriteMsg(poisoned("x" + q.Name))
		time.Sleep(20 * time.Millisecond)
	case "spoof-case":
		_ = w.WriteMsg(poisoned(swapCase(q.Name)))
		time.Sleep(20 * time.Millisecond)
	case "wrong-case":
		_ = w.WriteMsg(poisoned(swapCase(q.Name)))
		return
	}
	if !tcp {
		size := 512
		if opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// hierarchy is the whole fake DNS tree.
type hierarchy struct {
	port    int
	servers map[string]*fakeServer // by role: root, tld, example, other, noglue, trap
	anchor  string                 // the root's DS
}

func (h *hierarchy) total() int {
	n := 0
	for _, s := range h.servers {
		n += s.count()
	}
	return n
}

func (h *hierarchy) allQueries() []seenQuery {
	var out []seenQuery
	for _, s := range h.servers {
		out = append(out, s.queries()...)
	}
	return out
}

var serverIPs = map[string]string{
	"root": "127.0.0.10", "tld": "127.0.0.11", "example": "127.0.0.12",
	"other": "127.0.0.13", "noglue": "127.0.0.14", "trap": "127.0.0.66",
}

func buildHierarchy(t testing.TB) *hierarchy {
	t.Helper()
	example := newFakeZone(t, zoneOpts{origin: "example.test.", alg: mdns.ECDSAP256SHA256, text: `
@        IN SOA ns1.example.test. hostmaster.example.test. 1 7200 3600 1209600 60
@        IN NS  ns1.example.test.
ns1      IN A   127.0.0.12
www      IN A   127.1.0.1
mail     IN MX  10 mx.example.test.
mx       IN A   127.1.0.2
alias    IN CNAME www.noglue.test.
inzone   IN CNAME www.example.test.
chain    IN CNAME alias.example.test.
tolocal  IN CNAME gw.nexus.internal.
loop1    IN CNAME loop2.example.test.
loop2    IN CNAME loop1.example.test.
dname    IN DNAME noglue.test.
bad      IN A   127.1.0.66
tc       IN TXT "` + strings.Repeat("x", 250) + `" "` + strings.Repeat("y", 250) + `" "` + strings.Repeat("z", 250) + `"
*.wild   IN A   127.1.0.7
a.b      IN A   127.1.0.8
spoofid  IN A   127.1.0.3
spoofq   IN A   127.1.0.4
spoofcase IN A  127.1.0.5
wrongcase IN A  127.1.0.6
`, tamper: []setKey{{"bad.example.test.", mdns.TypeA}}, noDen: []string{"gone.example.test."}})
	insecure := newFakeZone(t, zoneOpts{origin: "insecure.test.", text: `
@    IN SOA ns1.insecure.test. hostmaster.insecure.test. 1 7200 3600 1209600 60
@    IN NS  ns1.insecure.test.
ns1  IN A   127.0.0.12
www  IN A   127.2.0.1
`})
	nods := newFakeZone(t, zoneOpts{origin: "nods.test.", alg: mdns.ECDSAP256SHA256, text: `
@    IN SOA ns1.nods.test. hostmaster.nods.test. 1 7200 3600 1209600 60
@    IN NS  ns1.nods.test.
ns1  IN A   127.0.0.12
www  IN A   127.3.0.1
`})
	noglue := newFakeZone(t, zoneOpts{origin: "noglue.test.", alg: mdns.ED25519, text: `
@    IN SOA ns.hosting.other. hostmaster.noglue.test. 1 7200 3600 1209600 60
@    IN NS  ns.hosting.other.
www  IN A   127.4.0.1
`})
	evil := newFakeZone(t, zoneOpts{origin: "evil.test.", text: `
@    IN SOA ns.hosting.other. hostmaster.evil.test. 1 7200 3600 1209600 60
@    IN NS  ns.hosting.other.
www  IN A   127.5.0.1
`})
	other := newFakeZone(t, zoneOpts{origin: "other.", text: `
@                IN SOA ns.other. hostmaster.other. 1 7200 3600 1209600 60
@                IN NS  ns.other.
ns               IN A   127.0.0.13
ns.hosting       IN A   127.0.0.14
`})
	tld := newFakeZone(t, zoneOpts{origin: "test.", alg: mdns.ED25519, text: `
@                IN SOA ns1.test. hostmaster.test. 1 7200 3600 1209600 60
@                IN NS  ns1.test.
ns1              IN A   127.0.0.11
example          IN NS  ns1.example.test.
ns1.example      IN A   127.0.0.12
noglue           IN NS  ns.hosting.other.
evil             IN NS  ns.hosting.other.
insecure         IN NS  ns1.insecure.test.
ns1.insecure     IN A   127.0.0.12
nods             IN NS  ns1.nods.test.
ns1.nods         IN A   127.0.0.12
`, ds: []mdns.RR{example.ds(mdns.SHA256), noglue.ds(mdns.SHA256)},
		glue:  map[string][]string{"evil.test.": {"ns.hosting.other. 300 IN A 127.0.0.66"}},
		noDen: []string{"nods.test."}})
	root := newFakeZone(t, zoneOpts{origin: ".", alg: mdns.ECDSAP256SHA256, split: true, text: `
.          IN SOA ns.root. hostmaster.root. 1 7200 3600 1209600 60
.          IN NS  ns.root.
ns.root.   IN A   127.0.0.10
test.      IN NS  ns1.test.
ns1.test.  IN A   127.0.0.11
other.     IN NS  ns.other.
ns.other.  IN A   127.0.0.13
`, ds: []mdns.RR{tld.ds(mdns.SHA256)}})

	h := &hierarchy{servers: map[string]*fakeServer{
		"root":    {zones: []*fakeZone{root}},
		"tld":     {zones: []*fakeZone{tld}},
		"example": {zones: []*fakeZone{example, insecure, nods}},
		"other":   {zones: []*fakeZone{other}},
		"noglue":  {zones: []*fakeZone{noglue, evil}},
		"trap":    {trap: true},
	}, anchor: root.ds(mdns.SHA256).String()}
	h.servers["example"].modes = map[string]string{
		"tc.example.test.": "tc", "spoofid.example.test.": "spoof-id", "spoofq.example.test.": "spoof-q",
		"spoofcase.example.test.": "spoof-case", "wrongcase.example.test.": "wrong-case",
	}
	for role, s := range h.servers {
		s.ip = serverIPs[role]
	}
	h.listen(t)
	return h
}

// listen binds every server on its address and one shared port (glue and
// referrals carry addresses only, so the resolver's UpstreamPort is it).
func (h *hierarchy) listen(t testing.TB) {
	t.Helper()
	var servers []*fakeServer // one fixed order for both loops below
	for _, role := range slices.Sorted(maps.Keys(h.servers)) {
		servers = append(servers, h.servers[role])
	}
	for attempt := 0; attempt < 50; attempt++ {
		first, err := net.ListenPacket("udp", "127.0.0.10:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		port := first.LocalAddr().(*net.UDPAddr).Port
		var pcs []net.PacketConn
		var lns []net.Listener
		ok := true
		for _, s := range servers {
			var pc net.PacketConn
			if s.ip == "127.0.0.10" {
				pc = first
			} else if pc, err = net.ListenPacket("udp", net.JoinHostPort(s.ip, strconv.Itoa(port))); err != nil {
				ok = false
				break
			}
			pcs = append(pcs, pc)
			ln, err := net.Listen("tcp", net.JoinHostPort(s.ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		if !ok {
			for _, c := range pcs {
				c.Close()
			}
			for _, l := range lns {
				l.Close()
			}
			if len(pcs) == 0 {
				first.Close()
			}
			continue
		}
		h.port = port
		i := 0
		for _, s := range servers {
			s.udp = &mdns.Server{PacketConn: pcs[i], Handler: s}
			s.tcp = &mdns.Server{Listener: lns[i], Handler: s}
			for _, srv := range []*mdns.Server{s.udp, s.tcp} {
				started := make(chan struct{})
				srv.NotifyStartedFunc = func() { close(started) }
				go func() { _ = srv.ActivateAndServe() }()
				<-started
			}
			i++
		}
		t.Cleanup(func() {
			for _, s := range h.servers {
				_ = s.udp.Shutdown()
				_ = s.tcp.Shutdown()
			}
		})
		return
	}
	t.Fatal("could not find a port free on all fake server addresses")
}

// fakeClock is a settable clock for TTL tests.
type fakeClock struct{ off atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *fakeClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// testLocal is the platform's own zone nexus.internal., answered in process.
type testLocal struct{ calls atomic.Int64 }

func (l *testLocal) Resolve(_ context.Context, q mdns.Question, do bool) (*mdns.Msg, bool) {
	if !under("nexus.internal.", q.Name) {
		return nil, false
	}
	l.calls.Add(1)
	m := new(mdns.Msg)
	m.SetQuestion(q.Name, q.Qtype)
	m.Response, m.Authoritative = true, true
	name := strings.ToLower(q.Name)
	switch {
	case name == "gw.nexus.internal." && q.Qtype == mdns.TypeA:
		rr, _ := mdns.NewRR("gw.nexus.internal. 300 IN A 10.0.0.1")
		m.Answer = []mdns.RR{rr}
	case name == "ext.nexus.internal.":
		rr, _ := mdns.NewRR("ext.nexus.internal. 300 IN CNAME www.example.test.")
		m.Answer = []mdns.RR{rr}
	case name == "gw.nexus.internal.":
	default:
		m.Rcode = mdns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		soa, _ := mdns.NewRR("nexus.internal. 300 IN SOA ns.nexus.internal. hostmaster.nexus.internal. 1 7200 3600 1209600 60")
		m.Ns = []mdns.RR{soa}
	}
	return m, true
}

type testEnv struct {
	h     *hierarchy
	r     *Resolver
	clock *fakeClock
	local *testLocal
}

// attributeTest: 127.0.0.1 is imvu-a, 127.0.0.2 is imvu-b; nobody else.
func attributeTest(a netip.Addr) (string, bool) {
	switch a.String() {
	case "127.0.0.1":
		return "imvu-a", true
	case "127.0.0.2":
		return "imvu-b", true
	}
	return "", false
}

func newEnv(t testing.TB, validate bool, mod func(*Config)) *testEnv {
	t.Helper()
	h := buildHierarchy(t)
	e := &testEnv{h: h, clock: &fakeClock{}, local: &testLocal{}}
	cfg := Config{
		Addr:         "127.0.0.1:0",
		Local:        e.local,
		RootHints:    []string{fmt.Sprintf("127.0.0.10:%d", h.port)},
		UpstreamPort: uint16(h.port),
		Attribute:    attributeTest,
		Now:          e.clock.now,
		QueryTimeout: time.Second, // generous: CI runs many packages at once on 2 cores
		Timeout:      10 * time.Second,
	}
	if validate {
		cfg.TrustAnchors = []string{h.anchor}
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	e.r = r
	return e
}

// ask sends one query to the resolver from src over the network.
func (e *testEnv) ask(t testing.TB, src, name string, qtype uint16, opts ...func(*mdns.Msg)) *mdns.Msg {
	t.Helper()
	return askFrom(t, e.r.Addr(), src, "udp", name, qtype, opts...)
}

func askFrom(t testing.TB, addr, src, network, name string, qtype uint16, opts ...func(*mdns.Msg)) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, false)
	for _, o := range opts {
		o(m)
	}
	var local net.Addr = &net.UDPAddr{IP: net.ParseIP(src)}
	if network == "tcp" {
		local = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c := &mdns.Client{Net: network, Timeout: 10 * time.Second, Dialer: &net.Dialer{LocalAddr: local, Timeout: 10 * time.Second}}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s from %s: %v", name, mdns.TypeToString[qtype], src, err)
	}
	return resp
}

func withDO(m *mdns.Msg) { m.IsEdns0().SetDo() }
func withCD(m *mdns.Msg) { m.CheckingDisabled = true }

// addrs returns the A/AAAA addresses of an answer, in order.
func addrs(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch a := rr.(type) {
		case *mdns.A:
			out = append(out, a.A.String())
		case *mdns.AAAA:
			out = append(out, a.AAAA.String())
		}
	}
	return out
}

func types(rrs []mdns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, mdns.TypeToString[rr.Header().Rrtype])
	}
	return out
}

func mustAddrPort(t testing.TB, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}
