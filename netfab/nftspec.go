package netfab

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// tableSpec is an nftables table the plane owns, as approved.
type tableSpec struct {
	family   nftables.TableFamily
	name     string
	counters []string
	chains   []*chainSpec // regular chains are listed before the base chains jumping to them
}

type chainSpec struct {
	name   string
	imvu   string
	hook   *nftables.ChainHook // nil for a regular chain
	prio   *nftables.ChainPriority
	ctype  nftables.ChainType
	policy *nftables.ChainPolicy
	rules  []ruleSpec
}

// ruleSpec is one approved rule. desc is its readable form; the comment the
// rule carries in the kernel is a hash of desc, its approved identity.
type ruleSpec struct {
	desc  string
	imvu  string
	exprs []expr.Any
}

func (c *chainSpec) base() bool { return c.hook != nil }

// describe is the chain's header in readable form, for hashing and drift
// reports.
func (c *chainSpec) describe() string {
	if !c.base() {
		return "chain " + c.name
	}
	pol := "accept"
	if c.policy != nil && *c.policy == nftables.ChainPolicyDrop {
		pol = "drop"
	}
	return fmt.Sprintf("chain %s type %s hook %d priority %d policy %s", c.name, c.ctype, *c.hook, *c.prio, pol)
}

// comment returns the rule's identity comment: the table prefix and a hash of
// what the rule is for.
func ruleComment(prefix, chain, desc string) string {
	h := sha256.Sum256([]byte(chain + "\x00" + desc))
	return prefix + ":" + hex.EncodeToString(h[:8])
}

// rb builds a rule's expressions together with its readable description.
type rb struct {
	desc  []string
	exprs []expr.Any
}

func (b *rb) add(desc string, e ...expr.Any) *rb {
	b.desc = append(b.desc, desc)
	b.exprs = append(b.exprs, e...)
	return b
}

func (b *rb) rule(imvu string) ruleSpec {
	return ruleSpec{desc: strings.Join(b.desc, " "), imvu: imvu, exprs: b.exprs}
}

func ifname(s string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, s)
	return b
}

func cmpEq(data []byte) *expr.Cmp {
	return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data}
}

func (b *rb) iif(name string) *rb {
	return b.add("iifname "+name, &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, cmpEq(ifname(name)))
}

func (b *rb) oif(name string) *rb {
	return b.add("oifname "+name, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, cmpEq(ifname(name)))
}

func (b *rb) payload(desc string, base expr.PayloadBase, off uint32, data []byte) *rb {
	return b.add(desc, &expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: uint32(len(data))}, cmpEq(data))
}

// ipv4 restricts an inet-family rule to IPv4 so header offsets mean what
// they say.
func (b *rb) ipv4() *rb {
	return b.add("ipv4", &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, cmpEq([]byte{unix.NFPROTO_IPV4}))
}

func (b *rb) saddr(a netip.Addr) *rb {
	s := a.As4()
	return b.payload("ip saddr "+a.String(), expr.PayloadBaseNetworkHeader, 12, s[:])
}

func (b *rb) daddr(a netip.Addr) *rb {
	s := a.As4()
	return b.payload("ip daddr "+a.String(), expr.PayloadBaseNetworkHeader, 16, s[:])
}

func (b *rb) l4proto(p byte, name string) *rb {
	return b.add("l4proto "+name, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmpEq([]byte{p}))
}

func (b *rb) l4(proto string, dport uint16) *rb {
	p := byte(unix.IPPROTO_TCP)
	if proto == "udp" {
		p = unix.IPPROTO_UDP
	}
	b.l4proto(p, proto)
	return b.payload(fmt.Sprintf("dport %d", dport), expr.PayloadBaseTransportHeader, 2, binary.BigEndian.AppendUint16(nil, dport))
}

func (b *rb) ctState(bits uint32, desc string) *rb {
	return b.add("ct state "+desc,
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
}

func (b *rb) established() *rb {
	return b.ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, "established,related")
}

// limitOver drops what exceeds rate per second. A byte limit gets a burst of
// at least 256 KiB because veths carry GSO packets of up to 64 KiB, which a
// smaller bucket would never let through.
func (b *rb) limitOver(rate uint64, bytes bool) *rb {
	l := &expr.Limit{Type: expr.LimitTypePkts, Rate: rate, Over: true, Unit: expr.LimitTimeSecond}
	desc := fmt.Sprintf("limit rate over %d/second", rate)
	if bytes {
		l.Type = expr.LimitTypePktBytes
		l.Burst = uint32(min(max(rate/10, 256<<10), 1<<30))
		desc = fmt.Sprintf("limit rate over %d bytes/second burst %d", rate, l.Burst)
	} else {
		l.Burst = uint32(min(max(rate/10, 16), 1<<20))
	}
	b.add(desc, l)
	return b.drop()
}

func (b *rb) counter(name string) *rb {
	return b.add("counter name "+name, &expr.Objref{Type: int(nftables.ObjTypeCounter), Name: name})
}

func (b *rb) verdict(desc string, v expr.VerdictKind) *rb {
	return b.add(desc, &expr.Verdict{Kind: v})
}

func (b *rb) accept() *rb { return b.verdict("accept", expr.VerdictAccept) }
func (b *rb) drop() *rb   { return b.verdict("drop", expr.VerdictDrop) }

func (b *rb) jump(chain string) *rb {
	return b.add("jump "+chain, &expr.Verdict{Kind: expr.VerdictJump, Chain: chain})
}

func (b *rb) masquerade() *rb { return b.add("masquerade", &expr.Masq{}) }

// Bridge-family matches: link-layer header and the ARP header, which is
// what the network header offset points at for ARP frames.
func (b *rb) etherSaddr(mac net.HardwareAddr) *rb {
	return b.payload("ether saddr "+mac.String(), expr.PayloadBaseLLHeader, 6, mac)
}

func (b *rb) etherType(t uint16, name string) *rb {
	return b.payload("ether type "+name, expr.PayloadBaseLLHeader, 12, binary.BigEndian.AppendUint16(nil, t))
}

func (b *rb) arpSender(mac net.HardwareAddr, a netip.Addr) *rb {
	ip := a.As4()
	// htype 1 (ethernet), ptype 0x0800, hlen 6, plen 4
	b.payload("arp htype 1 ptype ip hlen 6 plen 4", expr.PayloadBaseNetworkHeader, 0, []byte{0, 1, 8, 0, 6, 4})
	b.payload("arp saddr ether "+mac.String(), expr.PayloadBaseNetworkHeader, 8, mac)
	return b.payload("arp saddr ip "+a.String(), expr.PayloadBaseNetworkHeader, 14, ip[:])
}

func hookRef(h nftables.ChainHook) *nftables.ChainHook         { return &h }
func prioRef(p nftables.ChainPriority) *nftables.ChainPriority { return &p }
func policyRef(p nftables.ChainPolicy) *nftables.ChainPolicy   { return &p }
