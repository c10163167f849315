package dns

import (
	"errors"
	"fmt"
	"strings"

	mdns "github.com/miekg/dns"
)

// Record is one resource record as the owner of a zone states it.
//
// Name is relative to the zone's origin ("@" for the apex, "www", "*.stage")
// or absolute with a trailing dot. Data is the RDATA in RFC 1035 presentation
// format ("10.0.0.5", "10 mail", "\"v=spf1 -all\""); names inside Data are
// relative to the origin unless they end with a dot. TTL 0 means DefaultTTL.
type Record struct {
	Name string `json:"name"`
	Type string `json:"type"`
	TTL  uint32 `json:"ttl"`
	Data string `json:"data"`
}

// DefaultTTL is the TTL of records that give none, of the SOA and the apex NS.
const DefaultTTL = 3600

// supported are the types a zone may hold. SOA and the apex NS are made by
// Build, DNSKEY by Build from the zone key.
var supported = map[uint16]bool{
	mdns.TypeSOA: true, mdns.TypeNS: true, mdns.TypeA: true, mdns.TypeAAAA: true,
	mdns.TypeCNAME: true, mdns.TypeMX: true, mdns.TypeTXT: true, mdns.TypeSRV: true,
	mdns.TypeCAA: true, mdns.TypePTR: true,
}

// SupportedTypes lists the record types CheckRecord accepts, SOA and NS
// included (both only where Build does not make them itself).
func SupportedTypes() []string {
	return []string{"A", "AAAA", "CAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT"}
}

// CheckRecord parses one record of the zone origin and says what is wrong with
// it, if anything: a name outside the zone, an unsupported type, RDATA that
// does not parse, or a record Build makes itself (the SOA, the apex NS).
func CheckRecord(origin string, r Record) error {
	o, err := canonicalOrigin(origin)
	if err != nil {
		return err
	}
	_, err = parseRecord(o, r)
	return err
}

// canonicalOrigin checks a zone name and returns it lowercase and fully
// qualified.
func canonicalOrigin(origin string) (string, error) {
	if strings.TrimSpace(origin) == "" {
		return "", errors.New("zone origin is empty")
	}
	if err := plainText(origin, "zone origin"); err != nil {
		return "", err
	}
	o := mdns.CanonicalName(origin)
	if _, ok := mdns.IsDomainName(o); !ok {
		return "", fmt.Errorf("zone origin %q is not a domain name", origin)
	}
	if _, err := wireName(o); err != nil {
		return "", fmt.Errorf("zone origin %q: %w", origin, err)
	}
	return o, nil
}

// plainText refuses characters that would let one field of a record be read
// as several (spaces, line breaks, comments, quotes, parentheses, directives).
func plainText(s, what string) error {
	for i, c := range []byte(s) {
		switch {
		case c < 0x21 || c == 0x7f:
			return fmt.Errorf("%s %q has a space or control character at byte %d", what, s, i)
		case c == ';' || c == '(' || c == ')' || c == '"':
			return fmt.Errorf("%s %q has %q, which is not allowed in a name", what, s, c)
		case c == '$' && i == 0:
			return fmt.Errorf("%s %q starts with '$'", what, s)
		}
	}
	return nil
}

// ownerName resolves a Record name against the (canonical) origin.
func ownerName(origin, name string) (string, error) {
	switch {
	case name == "" || name == "@":
		return origin, nil
	}
	if err := plainText(name, "name"); err != nil {
		return "", err
	}
	var owner string
	if mdns.IsFqdn(name) {
		owner = name
	} else if origin == "." {
		owner = name + "."
	} else {
		owner = name + "." + origin
	}
	if _, ok := mdns.IsDomainName(owner); !ok {
		return "", fmt.Errorf("name %q is not a domain name", name)
	}
	ow, err := wireName(owner)
	if err != nil {
		return "", fmt.Errorf("name %q: %w", name, err)
	}
	if !isSubWire(ow, mustWire(origin)) {
		return "", fmt.Errorf("name %q is outside the zone %s", name, origin)
	}
	return mdns.CanonicalName(owner), nil
}

// parseRecord turns a Record into an RR of the zone origin (canonical), with
// its owner lowercased. A record must read back the same from the text it is
// written as (what WriteZoneFile and Records give out), so the parser's
// leniencies cannot produce a zone file that no longer loads.
func parseRecord(origin string, r Record) (mdns.RR, error) {
	rr, err := parseRecordOnce(origin, r)
	if err != nil {
		return nil, err
	}
	again, err := parseRecordOnce(origin, toRecord(origin, rr))
	if err != nil || !mdns.IsDuplicate(rr, again) || rr.String() != again.String() {
		return nil, fmt.Errorf("record %s %s: data %q does not read back the same once written out", orAt(r.Name), r.Type, r.Data)
	}
	return rr, nil
}

func parseRecordOnce(origin string, r Record) (mdns.RR, error) {
	what := fmt.Sprintf("record %s %s", orAt(r.Name), r.Type)
	typ, ok := mdns.StringToType[strings.ToUpper(strings.TrimSpace(r.Type))]
	if !ok {
		return nil, fmt.Errorf("%s: unknown type %q", what, r.Type)
	}
	if !supported[typ] {
		return nil, fmt.Errorf("%s: type %s is not supported (supported: %s)", what, mdns.TypeToString[typ], strings.Join(SupportedTypes(), " "))
	}
	owner, err := ownerName(origin, r.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if typ == mdns.TypeSOA {
		return nil, fmt.Errorf("%s: the SOA is made by Build (serial from the zone); leave it out", what)
	}
	if typ == mdns.TypeNS && owner == origin {
		return nil, fmt.Errorf("%s: the apex NS set is made by Build from the nameservers; leave it out", what)
	}
	data := strings.TrimSpace(r.Data)
	if data == "" {
		return nil, fmt.Errorf("%s: empty data", what)
	}
	for i, c := range []byte(data) {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return nil, fmt.Errorf("%s: data has a control character at byte %d", what, i)
		}
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl > 1<<31-1 {
		return nil, fmt.Errorf("%s: TTL %d is above 2^31-1 (RFC 2181)", what, ttl)
	}
	// The zone parser of miekg/dns (what mdns.NewRR uses) with the origin set,
	// so names in Data are relative to the zone, and with $INCLUDE off.
	text := fmt.Sprintf("%s %d IN %s %s\n", owner, ttl, mdns.TypeToString[typ], data)
	zp := mdns.NewZoneParser(strings.NewReader(text), origin, "")
	zp.SetIncludeAllowed(false)
	rr, ok := zp.Next()
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("%s: %s", what, parseMessage(err))
	}
	if !ok || rr == nil {
		return nil, fmt.Errorf("%s: data %q does not parse", what, r.Data)
	}
	if _, more := zp.Next(); more || zp.Err() != nil {
		return nil, fmt.Errorf("%s: data %q holds more than one record", what, r.Data)
	}
	h := rr.Header()
	if h.Rrtype != typ || h.Class != mdns.ClassINET || mdns.CanonicalName(h.Name) != owner {
		return nil, fmt.Errorf("%s: data %q does not parse as one %s record", what, r.Data, mdns.TypeToString[typ])
	}
	h.Name = owner
	if err := checkRdata(rr); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	c, err := canonicalRR(rr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return c, nil
}

// canonicalRR passes a record through its wire form, so that equal records
// have equal text (escapes in names and strings are written one way), with
// the owner in lowercase.
func canonicalRR(rr mdns.RR) (mdns.RR, error) {
	buf := make([]byte, mdns.Len(rr)+512)
	n, err := mdns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		return nil, err
	}
	c, _, err := mdns.UnpackRR(buf[:n], 0)
	if err != nil {
		return nil, err
	}
	c.Header().Name = mdns.CanonicalName(c.Header().Name)
	return c, nil
}

// checkRdata refuses RDATA names that cannot be packed, and CAA tags that
// RFC 8659 does not allow.
func checkRdata(rr mdns.RR) error {
	var target string
	switch v := rr.(type) {
	case *mdns.CNAME:
		target = v.Target
	case *mdns.NS:
		target = v.Ns
	case *mdns.MX:
		target = v.Mx
	case *mdns.SRV:
		target = v.Target
	case *mdns.PTR:
		target = v.Ptr
	case *mdns.CAA:
		if len(v.Tag) == 0 || len(v.Tag) > 15 || strings.IndexFunc(v.Tag, func(c rune) bool {
			return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9')
		}) >= 0 {
			return fmt.Errorf("CAA tag %q must be 1 to 15 letters or digits (RFC 8659)", v.Tag)
		}
		return nil
	default:
		return nil
	}
	tw, err := wireName(target)
	if err != nil {
		return fmt.Errorf("target %q: %w", target, err)
	}
	if _, ok := rr.(*mdns.CNAME); ok && tw == mustWire(rr.Header().Name) {
		return fmt.Errorf("CNAME points to itself")
	}
	return nil
}

func orAt(name string) string {
	if name == "" {
		return "@"
	}
	return name
}

// parseMessage drops the "at line: 1:30" that miekg/dns adds to errors of a
// one-line parse, which only confuses when the input was a single record.
func parseMessage(err error) string {
	s := err.Error()
	if i := strings.Index(s, " at line: 1:"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimPrefix(s, "dns: ")
}
