package netfab

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprintf("family%d", f)
}

// fingerprint identifies a rule as the kernel holds it. Counter values are
// zeroed first: traffic is not drift.
func fingerprint(fam nftables.TableFamily, r *nftables.Rule) string {
	h := sha256.New()
	for _, e := range r.Exprs {
		if _, ok := e.(*expr.Counter); ok {
			e = &expr.Counter{}
		}
		b, err := expr.Marshal(byte(fam), e)
		if err != nil {
			fmt.Fprintf(h, "%T %v", e, err)
		}
		h.Write(b)
		h.Write([]byte{0})
	}
	h.Write(r.UserData)
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func comment(r *nftables.Rule) string {
	c, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return c
}

// describeRule is a short readable form of a rule the plane did not write.
func describeRule(r *nftables.Rule) string {
	var kinds []string
	for _, e := range r.Exprs {
		k := strings.ToLower(strings.TrimPrefix(fmt.Sprintf("%T", e), "*expr."))
		if v, ok := e.(*expr.Verdict); ok {
			k = verdictName(v)
		}
		kinds = append(kinds, k)
	}
	s := fmt.Sprintf("handle %d [%s]", r.Handle, strings.Join(kinds, " "))
	if c := comment(r); c != "" {
		s += fmt.Sprintf(" comment %q", c)
	}
	return s
}

func verdictName(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	case expr.VerdictReturn:
		return "return"
	}
	return fmt.Sprintf("verdict %d", v.Kind)
}

func (ps *pass) chainKey(s *nsSpec, chain string) string { return s.name + "\x00" + chain }

// nft makes the namespace's nftables ruleset match: any table but the
// plane's is deleted (an admin's table hooking the same paths could mirror
// or redirect traffic), and the plane's table is corrected chain by chain.
// A chain that differs in any rule is rewritten whole in one transaction,
// so no packet ever sees it half-done; the named counters are separate
// objects and keep their values through rewrites.
func (ps *pass) nft(h *nsHandle, s *nsSpec) error {
	c := h.nft
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyUnspecified)
	if err != nil {
		return fmt.Errorf("list nftables tables in %s: %w", s.name, err)
	}
	want := s.table
	var have *nftables.Table
	for _, t := range tables {
		if want != nil && t.Name == want.name && t.Family == want.family {
			have = t
			continue
		}
		c.DelTable(t)
		ps.note(s, s.imvu, fmt.Sprintf("nft table %s %s", familyName(t.Family), t.Name), ChangeAdded, "not the plane's; deleted")
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete foreign nftables tables in %s: %w", s.name, err)
	}
	if want == nil {
		return nil
	}
	t := &nftables.Table{Name: want.name, Family: want.family}
	if have == nil {
		if err := ps.buildTable(h, s, t); err != nil {
			return err
		}
		ps.note(s, s.imvu, fmt.Sprintf("nft table %s %s", familyName(t.Family), t.Name), ChangeRemoved, "made again")
		return nil
	}

	chains, err := c.ListChainsOfTableFamily(want.family)
	if err != nil {
		return fmt.Errorf("list nftables chains in %s: %w", s.name, err)
	}
	haveChain := map[string]*nftables.Chain{}
	for _, ch := range chains {
		if ch.Table.Name == want.name {
			haveChain[ch.Name] = ch
		}
	}
	wantChain := map[string]*chainSpec{}
	for _, cs := range want.chains {
		wantChain[cs.name] = cs
		hc := haveChain[cs.name]
		if hc == nil {
			continue
		}
		if !sameHook(hc, cs) {
			// A base chain's hook cannot be changed in place.
			ps.harvest(h, s)
			c.DelTable(t)
			if err := c.Flush(); err != nil {
				return fmt.Errorf("delete nftables table %s in %s: %w", t.Name, s.name, err)
			}
			if err := ps.buildTable(h, s, t); err != nil {
				return err
			}
			ps.note(s, cs.imvu, "nft chain "+cs.name, ChangeChanged, "hook changed; table made again")
			return nil
		}
	}

	// Named objects and sets the plane did not make go after the rules that
	// might use them are rewritten, in the same transaction.
	objs, err := c.GetNamedObjects(t)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("list nftables objects in %s: %w", s.name, err)
	}
	haveObj := map[string]bool{}
	for _, o := range objs {
		if n, ok := o.(*nftables.NamedObj); ok {
			haveObj[n.Name] = true
		}
	}
	for _, name := range want.counters {
		if !haveObj[name] {
			c.AddObj(&nftables.NamedObj{Table: t, Name: name, Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
			ps.note(s, s.imvu, "nft counter "+name, ChangeRemoved, "made again at zero")
		}
	}
	for _, cs := range want.chains {
		if haveChain[cs.name] == nil {
			c.AddChain(chainOf(t, cs))
			ps.note(s, cs.imvu, "nft chain "+cs.name, ChangeRemoved, "")
		} else if cs.base() && !samePolicy(haveChain[cs.name], cs) {
			c.AddChain(chainOf(t, cs))
			ps.note(s, cs.imvu, "nft chain "+cs.name, ChangeChanged, "policy")
		}
	}
	var rewritten []*chainSpec
	for _, cs := range want.chains {
		var rules []*nftables.Rule
		if haveChain[cs.name] != nil {
			rules, err = c.GetRules(t, &nftables.Chain{Name: cs.name, Table: t})
			if err != nil {
				// A rule this library cannot parse is not one the plane wrote.
				ps.note(s, cs.imvu, "nft chain "+cs.name, ChangeChanged, "unreadable rule: "+err.Error())
				rules = nil
				ps.rewrite(c, t, cs)
				rewritten = append(rewritten, cs)
				continue
			}
		}
		if ps.rulesMatch(s, t, cs, rules) {
			continue
		}
		ps.rewrite(c, t, cs)
		rewritten = append(rewritten, cs)
	}
	for name, hc := range haveChain {
		if wantChain[name] == nil {
			c.FlushChain(hc)
			c.DelChain(hc)
			ps.note(s, "", "nft chain "+name, ChangeAdded, "")
		}
	}
	for _, o := range objs {
		n, ok := o.(*nftables.NamedObj)
		if ok && !slices.Contains(want.counters, n.Name) {
			c.DeleteObject(n)
			ps.note(s, s.imvu, "nft object "+n.Name, ChangeAdded, "")
		}
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return fmt.Errorf("list nftables sets in %s: %w", s.name, err)
	}
	for _, set := range sets {
		if !set.Anonymous {
			c.DelSet(set)
			ps.note(s, s.imvu, "nft set "+set.Name, ChangeAdded, "")
		}
	}
	fts, err := c.ListFlowtables(t)
	if err != nil {
		return fmt.Errorf("list nftables flowtables in %s: %w", s.name, err)
	}
	for _, ft := range fts {
		c.DelFlowtable(ft)
		ps.note(s, "", "nft flowtable "+ft.Name, ChangeAdded, "")
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("correct nftables table %s in %s: %w", t.Name, s.name, err)
	}
	return ps.learn(h, s, t, rewritten)
}

func sameHook(h *nftables.Chain, cs *chainSpec) bool {
	if (h.Hooknum == nil) != (cs.hook == nil) {
		return false
	}
	if cs.hook == nil {
		return true
	}
	return *h.Hooknum == *cs.hook && h.Priority != nil && *h.Priority == *cs.prio && h.Type == cs.ctype
}

func samePolicy(h *nftables.Chain, cs *chainSpec) bool {
	return h.Policy != nil && cs.policy != nil && *h.Policy == *cs.policy
}

func chainOf(t *nftables.Table, cs *chainSpec) *nftables.Chain {
	return &nftables.Chain{Name: cs.name, Table: t, Hooknum: cs.hook, Priority: cs.prio, Type: cs.ctype, Policy: cs.policy}
}

// rulesMatch compares a chain's rules with the approved ones: the same
// identity comments in the same order, each rule as the kernel held it when
// the plane last wrote it. Differences are noted.
func (ps *pass) rulesMatch(s *nsSpec, t *nftables.Table, cs *chainSpec, have []*nftables.Rule) bool {
	base, known := ps.p.baseline[ps.chainKey(s, cs.name)]
	wantComments := make([]string, len(cs.rules))
	byComment := map[string]*ruleSpec{}
	for i := range cs.rules {
		wantComments[i] = ruleComment(ps.p.opts.Prefix, cs.name, cs.rules[i].desc)
		byComment[wantComments[i]] = &cs.rules[i]
	}
	ok := known && len(have) == len(cs.rules) && len(base) == len(cs.rules)
	for i := 0; ok && i < len(have); i++ {
		ok = comment(have[i]) == wantComments[i] && fingerprint(t.Family, have[i]) == base[i]
	}
	if ok {
		return true
	}
	if !known {
		return false // not written by this plane yet: rewrite without calling it drift
	}
	// Explain what differs, rule by rule.
	noted := len(ps.drifts)
	seen := map[string]bool{}
	baseOf := map[string]string{}
	for i, c := range wantComments {
		if i < len(base) {
			baseOf[c] = base[i]
		}
	}
	for _, r := range have {
		c := comment(r)
		want, ours := byComment[c]
		switch {
		case !ours || seen[c]:
			ps.note(s, cs.imvu, "nft rule in chain "+cs.name, ChangeAdded, describeRule(r))
		case fingerprint(t.Family, r) != baseOf[c]:
			ps.note(s, want.imvu, "nft rule in chain "+cs.name, ChangeChanged, want.desc)
		}
		seen[c] = true
	}
	for _, c := range wantComments {
		if !seen[c] {
			ps.note(s, byComment[c].imvu, "nft rule in chain "+cs.name, ChangeRemoved, byComment[c].desc)
		}
	}
	if len(ps.drifts) == noted {
		// Same rules, different order.
		ps.note(s, cs.imvu, "nft chain "+cs.name, ChangeChanged, "rules reordered")
	}
	return false
}

// rewrite queues the chain's approved rules in place of whatever it holds.
func (ps *pass) rewrite(c *nftables.Conn, t *nftables.Table, cs *chainSpec) {
	ch := &nftables.Chain{Name: cs.name, Table: t}
	c.FlushChain(ch)
	for _, r := range cs.rules {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, ruleComment(ps.p.opts.Prefix, cs.name, r.desc))})
	}
}

// buildTable makes the plane's table from nothing, in one transaction.
func (ps *pass) buildTable(h *nsHandle, s *nsSpec, t *nftables.Table) error {
	c := h.nft
	c.AddTable(t)
	for _, name := range s.table.counters {
		c.AddObj(&nftables.NamedObj{Table: t, Name: name, Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
	}
	for _, cs := range s.table.chains {
		c.AddChain(chainOf(t, cs))
	}
	for _, cs := range s.table.chains {
		ps.rewrite(c, t, cs)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("create nftables table %s in %s: %w", t.Name, s.name, err)
	}
	return ps.learn(h, s, t, s.table.chains)
}

// learn reads back chains just written and keeps each rule's fingerprint as
// the approved one.
func (ps *pass) learn(h *nsHandle, s *nsSpec, t *nftables.Table, chains []*chainSpec) error {
	for _, cs := range chains {
		rules, err := h.nft.GetRules(t, &nftables.Chain{Name: cs.name, Table: t})
		if err != nil {
			return fmt.Errorf("read back nftables chain %s in %s: %w", cs.name, s.name, err)
		}
		fps := make([]string, len(rules))
		for i, r := range rules {
			fps[i] = fingerprint(t.Family, r)
		}
		ps.p.baseline[ps.chainKey(s, cs.name)] = fps
	}
	return nil
}
