package resolver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"
)

// Bounds on the work one client query may cause.
const (
	maxChain     = 12 // CNAME/DNAME links
	maxReferrals = 24 // referrals followed in one iteration
	maxDepth     = 5  // nesting of name server address lookups
	maxServers   = 8  // servers tried per zone and query
	maxNSLookups = 4  // name server names resolved per zone and query
)

var (
	errBudget    = errors.New("work budget exhausted")
	errReferrals = errors.New("too many referrals")
	errChain     = errors.New("CNAME chain too long or looping")
	errNoServers = errors.New("no usable name server")
	errLame      = errors.New("lame reply")
)

// work is the state of one client query: the budget is shared with the
// nested lookups (name server addresses, DNSSEC chain) it causes. It is used
// by one goroutine.
type work struct {
	r     *Resolver
	spent *int
	depth int
	cd    bool
	do    bool
	busy  map[string]bool // name server names being resolved (loop guard)
}

func (w *work) spend() error {
	if *w.spent >= w.r.cfg.MaxWork {
		return errBudget
	}
	*w.spent++
	return nil
}

// resolveQuestion answers q; cd and do are the client's CD and DO bits.
func (r *Resolver) resolveQuestion(ctx context.Context, q mdns.Question, cd, do bool) *result {
	w := &work{r: r, spent: new(int), cd: cd, do: do, busy: map[string]bool{}}
	res := w.resolve(ctx, mdns.Fqdn(q.Name), q.Qtype)
	if res.local == nil {
		r.met.cacheResult(res.hit)
		r.met.validation(res.sec)
	}
	if res.err != nil {
		r.log.Debug("resolver: resolution failed", "name", q.Name, "type", mdns.TypeToString[q.Qtype], "err", res.err)
	}
	return res
}

// resolve follows name/qtype through Local, the cache and the network,
// across CNAMEs and DNAMEs.
func (w *work) resolve(ctx context.Context, qname string, qtype uint16) *result {
	res := &result{rcode: mdns.RcodeSuccess, sec: secUnchecked, hit: true}
	if w.r.validate {
		res.sec = secSecure
	}
	fail := func(err error, ede uint16) *result {
		res.rcode = mdns.RcodeServerFailure
		res.answer, res.ns = nil, nil
		res.err = err
		res.hit = false
		res.ede = &mdns.EDNS0_EDE{InfoCode: ede, ExtraText: err.Error()}
		return res
	}
	name := qname
	seen := map[string]bool{}
	for link := 0; ; link++ {
		if link >= maxChain || seen[lower(name)] {
			return fail(errChain, mdns.ExtendedErrorCodeOther)
		}
		seen[lower(name)] = true

		// The platform's own zones: never from the network.
		if w.r.local != nil {
			if lm, ok := w.r.local.Resolve(ctx, mdns.Question{Name: name, Qtype: qtype, Qclass: mdns.ClassINET}, w.do); ok && lm != nil {
				next := localNext(lm, name, qtype)
				if link == 0 && next == "" {
					res.local = lm
					res.hit = false
					return res
				}
				res.answer = append(res.answer, copyRRs(lm.Answer)...)
				if !lm.AuthenticatedData {
					res.sec = min(res.sec, secInsecure)
				}
				if next == "" {
					res.rcode = lm.Rcode
					res.ns = copyRRs(lm.Ns)
					return res
				}
				name = next
				continue
			}
		}

		if next, done, found := w.fromCache(res, name, qtype); found {
			if done {
				return res
			}
			name = next
			continue
		}
		res.hit = false

		st, err := w.iterate(ctx, name, qtype)
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%v)", err, ctx.Err())
			}
			return fail(err, mdns.ExtendedErrorCodeNoReachableAuthority)
		}
		sec, why := w.validateStep(ctx, st)
		w.r.cacheStep(st, sec)
		if sec == secBogus {
			w.r.log.Info("resolver: bogus answer", "name", name, "type", mdns.TypeToString[qtype], "why", why)
			if !w.cd {
				res.sec = secBogus
				return fail(fmt.Errorf("DNSSEC bogus: %s", why), mdns.ExtendedErrorCodeDNSBogus)
			}
		}
		res.sec = min(res.sec, sec)
		for _, s := range st.sets {
			res.answer = append(res.answer, copyRRs(s.rrs)...)
			res.answer = append(res.answer, copyRRs(s.sigs)...)
		}
		if st.next == "" {
			if st.negName != "" {
				res.rcode = st.rcode
				res.ns = withTTL(st.neg, st.negTTL)
			}
			return res
		}
		name = st.next
	}
}

// localNext returns where a chain that leaves a local answer continues: the
// target of its last CNAME when nothing of qtype answers it ("" if the local
// answer is complete).
func localNext(lm *mdns.Msg, name string, qtype uint16) string {
	if lm.Rcode != mdns.RcodeSuccess || qtype == mdns.TypeCNAME {
		return ""
	}
	cur := name
	for range maxChain {
		var target string
		for _, rr := range lm.Answer {
			h := rr.Header()
			if !equalName(h.Name, cur) {
				continue
			}
			if h.Rrtype == qtype {
				return ""
			}
			if c, ok := rr.(*mdns.CNAME); ok {
				target = c.Target
			}
		}
		if target == "" {
			break
		}
		cur = target
	}
	if equalName(cur, name) {
		return ""
	}
	return cur
}

// usable reports whether a cached entry may answer a client.
func (w *work) usable(e *entry) bool {
	return !w.r.validate || e.sec == secSecure || e.sec == secInsecure
}

// fromCache answers name/qtype from the cache into res: done when the
// answer is complete, else the name the chain continues at; found=false on a
// miss.
func (w *work) fromCache(res *result, name string, qtype uint16) (next string, done, found bool) {
	now := w.r.now()
	ln := lower(name)
	c := w.r.cache
	add := func(e *entry) {
		ttl := e.ttlLeft(now)
		res.answer = append(res.answer, withTTL(e.pre, ttl)...)
		res.answer = append(res.answer, withTTL(e.rrs, ttl)...)
		res.answer = append(res.answer, withTTL(e.sigs, ttl)...)
		res.sec = min(res.sec, e.sec)
	}
	if e := c.get(cacheKey{ln, qtype, kindAnswer}, now); e != nil && w.usable(e) {
		add(e)
		return "", true, true
	}
	if qtype != mdns.TypeCNAME {
		if e := c.get(cacheKey{ln, mdns.TypeCNAME, kindAnswer}, now); e != nil && w.usable(e) && len(e.rrs) == 1 {
			if cn, ok := e.rrs[0].(*mdns.CNAME); ok {
				add(e)
				return cn.Target, false, true
			}
		}
	}
	for _, k := range []cacheKey{{ln, mdns.TypeNone, kindNegative}, {ln, qtype, kindNegative}} {
		if e := c.get(k, now); e != nil && w.usable(e) {
			res.rcode = e.rcode
			res.ns = withTTL(e.rrs, e.ttlLeft(now))
			res.sec = min(res.sec, e.sec)
			return "", true, true
		}
	}
	return "", false, false
}

// delegation is a set of servers for a zone.
type delegation struct {
	zone    string // lowercased
	forward bool
	addrs   []netip.AddrPort
	names   []string // name servers whose addresses are not known yet
}

// iterate asks the servers of the closest known zone cut about name/qtype
// and follows referrals until an answer, a negative answer or a failure. It
// does not validate; its caller does.
func (w *work) iterate(ctx context.Context, name string, qtype uint16) (*step, error) {
	d := w.startDelegation(name, qtype)
	st, err := w.iterateFrom(ctx, d, name, qtype)
	if err != nil && !d.forward && d.zone != "." && ctx.Err() == nil && !errors.Is(err, errBudget) && !errors.Is(err, errLame) {
		// No server of the cached zone cut answered: it may be stale, so
		// once more from the root.
		w.r.log.Debug("resolver: retrying from the root", "name", name, "zone", d.zone, "err", err)
		return w.iterateFrom(ctx, &delegation{zone: ".", addrs: w.r.roots}, name, qtype)
	}
	return st, err
}

func (w *work) iterateFrom(ctx context.Context, d *delegation, name string, qtype uint16) (*step, error) {
	for range maxReferrals {
		o, err := w.ask(ctx, d, name, qtype)
		if err != nil {
			return nil, err
		}
		if o.ref == nil {
			return o.step, nil
		}
		w.r.cacheReferral(o.ref)
		d = w.r.delegationFor(o.ref.zone, o.ref.ns, o.ref.glue)
	}
	return nil, errReferrals
}

// startDelegation finds the deepest cached zone cut above name (for DS, the
// cut above its parent side) or the root hints.
func (w *work) startDelegation(name string, qtype uint16) *delegation {
	r := w.r
	if len(r.forwarders) > 0 {
		return &delegation{zone: ".", forward: true, addrs: r.forwarders}
	}
	n := lower(name)
	if qtype == mdns.TypeDS && n != "." {
		n = parentOf(n)
	}
	now := r.now()
	for ; n != "."; n = parentOf(n) {
		if e := r.cache.get(cacheKey{n, mdns.TypeNS, kindDeleg}, now); e != nil {
			return r.delegationFor(n, e.rrs, nil)
		}
	}
	return &delegation{zone: ".", addrs: r.roots}
}

// delegationFor builds the server list of zone from its NS records, glue
// (already bailiwick-checked) and cached addresses.
func (r *Resolver) delegationFor(zone string, ns []mdns.RR, glue map[string][]mdns.RR) *delegation {
	d := &delegation{zone: zone}
	now := r.now()
	seen := map[netip.AddrPort]bool{}
	for _, rr := range ns {
		nsr, ok := rr.(*mdns.NS)
		if !ok {
			continue
		}
		host := lower(nsr.Ns)
		var addrs []netip.AddrPort
		add := func(rrs []mdns.RR) {
			for _, a := range rrs {
				if ap, ok := r.addrOfRR(a); ok && !seen[ap] {
					seen[ap] = true
					addrs = append(addrs, ap)
				}
			}
		}
		add(glue[host])
		for _, t := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
			for _, kind := range []uint8{kindAnswer, kindGlue} {
				if e := r.cache.get(cacheKey{host, t, kind}, now); e != nil {
					add(e.rrs)
				}
			}
		}
		if len(addrs) == 0 {
			d.names = append(d.names, host)
		}
		d.addrs = append(d.addrs, addrs...)
	}
	return d
}

func (r *Resolver) addrOfRR(rr mdns.RR) (netip.AddrPort, bool) {
	var ip netip.Addr
	switch t := rr.(type) {
	case *mdns.A:
		ip, _ = netip.AddrFromSlice(t.A.To4())
	case *mdns.AAAA:
		ip, _ = netip.AddrFromSlice(t.AAAA.To16())
	}
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), r.cfg.UpstreamPort), true
}

// ask queries the servers of d until one gives a usable reply.
func (w *work) ask(ctx context.Context, d *delegation, name string, qtype uint16) (outcome, error) {
	q := mdns.Question{Name: name, Qtype: qtype, Qclass: mdns.ClassINET}
	// DO always: a security-aware resolver keeps the DNSSEC records for
	// clients that validate themselves, validating or not.
	f := qflags{do: true}
	if d.forward {
		f.rd, f.cd = true, w.r.validate
	}
	tried := map[netip.AddrPort]bool{}
	lastErr := errNoServers
	try := func(a netip.AddrPort) (outcome, bool, error) {
		if tried[a] {
			return outcome{}, false, nil
		}
		tried[a] = true
		if err := ctx.Err(); err != nil {
			return outcome{}, false, err
		}
		if err := w.spend(); err != nil {
			return outcome{}, false, err
		}
		m, err := w.r.up.exchange(ctx, a, q, f)
		if err != nil {
			lastErr = fmt.Errorf("%s: %w", a, err)
			return outcome{}, false, nil
		}
		o := classify(d.zone, name, qtype, m, d.forward)
		if o.lame != "" {
			lastErr = fmt.Errorf("%w from %s for %s: %s", errLame, a, d.zone, o.lame)
			return outcome{}, false, nil
		}
		return o, true, nil
	}
	addrs := append([]netip.AddrPort(nil), d.addrs...)
	if !d.forward {
		rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	}
	for i, a := range addrs {
		if i >= maxServers {
			break
		}
		if o, ok, err := try(a); err != nil || ok {
			return o, err
		}
	}
	names := append([]string(nil), d.names...)
	rand.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	for i, n := range names {
		if i >= maxNSLookups {
			break
		}
		for _, a := range w.nsAddrs(ctx, n) {
			if o, ok, err := try(a); err != nil || ok {
				return o, err
			}
		}
	}
	return outcome{}, lastErr
}

// nsAddrs resolves the addresses of a name server that came without glue.
// These are routing data: not validated, never handed to clients.
func (w *work) nsAddrs(ctx context.Context, host string) []netip.AddrPort {
	lh := lower(host)
	if w.busy[lh] || w.depth >= maxDepth {
		return nil
	}
	w.busy[lh] = true
	defer delete(w.busy, lh)
	sub := &work{r: w.r, spent: w.spent, depth: w.depth + 1, cd: true, do: false, busy: w.busy}
	for _, t := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
		if addrs := sub.addrsOf(ctx, lh, t); len(addrs) > 0 {
			return addrs
		}
		if ctx.Err() != nil {
			return nil
		}
	}
	return nil
}

func (w *work) addrsOf(ctx context.Context, host string, t uint16) []netip.AddrPort {
	r := w.r
	name := host
	var out []netip.AddrPort
	collect := func(rrs []mdns.RR, owner string) {
		for _, rr := range rrs {
			if rr.Header().Rrtype == t && equalName(rr.Header().Name, owner) {
				if ap, ok := r.addrOfRR(rr); ok {
					out = append(out, ap)
				}
			}
		}
	}
	for range maxChain {
		if r.local != nil {
			if lm, ok := r.local.Resolve(ctx, mdns.Question{Name: name, Qtype: t, Qclass: mdns.ClassINET}, false); ok && lm != nil {
				if next := localNext(lm, name, t); next != "" {
					name = lower(next)
					continue
				}
				collect(lm.Answer, name)
				return out
			}
		}
		now := r.now()
		for _, kind := range []uint8{kindAnswer, kindGlue} {
			if e := r.cache.get(cacheKey{name, t, kind}, now); e != nil {
				collect(e.rrs, name)
			}
		}
		if len(out) > 0 {
			return out
		}
		if e := r.cache.get(cacheKey{name, mdns.TypeCNAME, kindAnswer}, now); e != nil && len(e.rrs) == 1 {
			if cn, ok := e.rrs[0].(*mdns.CNAME); ok {
				name = lower(cn.Target)
				continue
			}
		}
		if r.cache.get(cacheKey{name, mdns.TypeNone, kindNegative}, now) != nil || r.cache.get(cacheKey{name, t, kindNegative}, now) != nil {
			return nil
		}
		st, err := w.iterate(ctx, name, t)
		if err != nil {
			return nil
		}
		r.cacheStep(st, secUnchecked)
		for _, s := range st.sets {
			if s.rtype == t {
				collect(s.rrs, s.name)
			}
		}
		if st.next == "" || len(out) > 0 {
			return out
		}
		name = st.next
	}
	return out
}

// cacheStep stores what an iteration learnt: each RRset with its own
// security state and the negative answer with sec. Bogus data is not
// stored.
func (r *Resolver) cacheStep(st *step, sec secState) {
	now := r.now()
	for i, s := range st.sets {
		state := s.sec
		if sec == secUnchecked {
			state = secUnchecked
		}
		if state < secUnchecked { // bogus, or never validated
			continue
		}
		ttl := r.capTTL(s.rrs, s.sigs, state, r.cfg.MaxTTL, now)
		e := &entry{key: cacheKey{s.name, s.rtype, kindAnswer}, rrs: s.rrs, sigs: s.sigs, sec: state, expire: now.Add(ttl)}
		if s.synth && i > 0 {
			dn := st.sets[i-1]
			e.pre = append(append([]mdns.RR(nil), dn.rrs...), dn.sigs...)
			e.expire = now.Add(min(ttl, r.capTTL(dn.rrs, dn.sigs, state, r.cfg.MaxTTL, now)))
		}
		r.cache.put(e, now)
	}
	if st.negName != "" && sec != secBogus {
		t := st.qtype
		if st.rcode == mdns.RcodeNameError {
			t = mdns.TypeNone
		}
		ttl := min(time.Duration(st.negTTL)*time.Second, r.cfg.MaxNegativeTTL)
		r.cache.put(&entry{key: cacheKey{st.negName, t, kindNegative}, rrs: st.neg, rcode: st.rcode, sec: sec, expire: now.Add(ttl)}, now)
	}
}

// capTTL is how long an RRset may be cached: its TTL, capped by limit and, for
// validated data, by the signatures' original TTL and expiry (RFC 4035
// 5.3.3).
func (r *Resolver) capTTL(rrs, sigs []mdns.RR, sec secState, limit time.Duration, now time.Time) time.Duration {
	if len(rrs) == 0 {
		return 0
	}
	ttl := min(time.Duration(rrs[0].Header().Ttl)*time.Second, limit)
	if sec == secSecure {
		for _, rr := range sigs {
			if sig, ok := rr.(*mdns.RRSIG); ok {
				ttl = min(ttl, time.Duration(sig.OrigTtl)*time.Second)
				if left := time.Unix(int64(sig.Expiration), 0).Sub(now); left < ttl {
					ttl = max(left, 0)
				}
			}
		}
	}
	return ttl
}

// cacheReferral stores a zone cut and its glue, for routing only.
func (r *Resolver) cacheReferral(ref *referral) {
	now := r.now()
	ttl := min(time.Duration(ref.ttl)*time.Second, r.cfg.MaxTTL)
	r.cache.put(&entry{key: cacheKey{ref.zone, mdns.TypeNS, kindDeleg}, rrs: ref.ns, sec: secUnchecked, expire: now.Add(ttl)}, now)
	for host, rrs := range ref.glue {
		byType := map[uint16][]mdns.RR{}
		for _, rr := range rrs {
			byType[rr.Header().Rrtype] = append(byType[rr.Header().Rrtype], rr)
		}
		for t, set := range byType {
			gttl := min(time.Duration(minTTL(set))*time.Second, r.cfg.MaxTTL)
			r.cache.put(&entry{key: cacheKey{host, t, kindGlue}, rrs: set, sec: secUnchecked, expire: now.Add(gttl)}, now)
		}
	}
}

func minTTL(rrs []mdns.RR) uint32 {
	if len(rrs) == 0 {
		return 0
	}
	t := rrs[0].Header().Ttl
	for _, rr := range rrs[1:] {
		t = min(t, rr.Header().Ttl)
	}
	return t
}
