package dns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	mdns "github.com/miekg/dns"
)

// maxZoneFile bounds what ParseZoneFile reads.
const maxZoneFile = 256 << 20

// ParseZoneFile reads an RFC 1035 master file of the zone origin ($ORIGIN,
// $TTL, $GENERATE; $INCLUDE is refused) and returns its records, leaving out
// what Build makes (the apex SOA, NS and DNSKEY) and what is made online
// (RRSIG, NSEC, NSEC3, NSEC3PARAM), so a signed zone from elsewhere imports
// as its data. Errors name the line.
func ParseZoneFile(origin string, r io.Reader) ([]Record, error) {
	o, err := canonicalOrigin(origin)
	if err != nil {
		return nil, err
	}
	lr := &lineReader{r: bufio.NewReader(io.LimitReader(r, maxZoneFile)), line: 1}
	zp := mdns.NewZoneParser(lr, o, "")
	zp.SetIncludeAllowed(false)
	var out []Record
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		line := lr.recordLine()
		h := rr.Header()
		h.Name = mdns.CanonicalName(h.Name)
		if h.Class != mdns.ClassINET {
			return nil, fmt.Errorf("zone file line %d: class %s; only IN is served", line, mdns.ClassToString[h.Class])
		}
		switch {
		case (h.Rrtype == mdns.TypeSOA || h.Rrtype == mdns.TypeNS || h.Rrtype == mdns.TypeDNSKEY) && h.Name == o:
			continue // Build makes these
		case h.Rrtype == mdns.TypeRRSIG || h.Rrtype == mdns.TypeNSEC || h.Rrtype == mdns.TypeNSEC3 || h.Rrtype == mdns.TypeNSEC3PARAM:
			continue // signatures and denial are made online
		}
		rec := toRecord(o, rr)
		if _, err := parseRecord(o, rec); err != nil {
			return nil, fmt.Errorf("zone file line %d: %w", line, err)
		}
		out = append(out, rec)
	}
	if err := zp.Err(); err != nil {
		var pe *mdns.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("zone file: %s", strings.TrimPrefix(pe.Error(), "dns: "))
		}
		return nil, fmt.Errorf("zone file line %d: %w", lr.line, err)
	}
	if lr.err != nil && lr.err != io.EOF {
		return nil, fmt.Errorf("zone file: %w", lr.err)
	}
	return out, nil
}

// lineReader counts the lines the zone parser has read, so that errors found
// after parsing (a name outside the zone, a type not served) can name the
// line of the record: the parser returns a record once it has read the end
// of its last line.
type lineReader struct {
	r    *bufio.Reader
	line int
	err  error
	last byte
}

func (l *lineReader) ReadByte() (byte, error) {
	c, err := l.r.ReadByte()
	if err != nil {
		l.err = err
		return 0, err
	}
	if l.last == '\n' {
		l.line++
	}
	l.last = c
	return c, nil
}

func (l *lineReader) Read(p []byte) (int, error) {
	for i := range p {
		c, err := l.ReadByte()
		if err != nil {
			return i, err
		}
		p[i] = c
	}
	return len(p), nil
}

// recordLine is the line the last record ended on.
func (l *lineReader) recordLine() int { return l.line }

// WriteZoneFile writes the zone as an RFC 1035 master file: $ORIGIN and
// $TTL, the SOA, then every record in canonical order with absolute names,
// one per line (what named-checkzone and knotd load). The DNSKEY is written
// for a signed zone; signatures are made online and are not part of it.
func WriteZoneFile(w io.Writer, c *Compiled) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "; zone %s, IMVU %s, serial %d\n", c.origin, c.imvu, c.serial)
	fmt.Fprintf(bw, "$ORIGIN %s\n$TTL %d\n", c.origin, DefaultTTL)
	for _, rr := range c.all() {
		if _, err := bw.WriteString(rr.String()); err != nil {
			return err
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
