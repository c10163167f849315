package dns

import (
	"encoding/binary"
	"errors"

	mdns "github.com/miekg/dns"
)

// tmpl is a response packed ahead of time: everything after the question.
// Records owned by the query name point to the question (offset 12), every
// other name is written in full, so the body fits any query for the same
// answer, whatever the case or length of its name.
type tmpl struct {
	flags      uint16 // AA and RCODE bits of the header
	an, ns, ar uint16
	body       []byte
	arOff      int   // where the additional section starts in body
	refresh    int64 // unix time after which to remake it (signatures); 0 never
}

// pack packs a result into a template.
func pack(r *result) (*tmpl, error) {
	t := &tmpl{flags: uint16(r.rcode & 0xf), refresh: r.refresh}
	if r.aa {
		t.flags |= 1 << 10
	}
	size := 0
	for _, sec := range [][]entry{r.an, r.ns, r.ar} {
		for _, e := range sec {
			size += mdns.Len(e.rr) + 16
		}
	}
	if size > 65535 {
		return nil, errors.New("answer too large")
	}
	scratch := make([]byte, size)
	body := make([]byte, 0, size)
	for i, sec := range [][]entry{r.an, r.ns, r.ar} {
		if i == 2 {
			t.arOff = len(body)
		}
		for _, e := range sec {
			// PackRR writes Rdlength into the record it packs: give it a
			// copy, the zone's records are shared by every reader.
			n, err := mdns.PackRR(mdns.Copy(e.rr), scratch, 0, nil, false)
			if err != nil {
				return nil, err
			}
			b := scratch[:n]
			if e.atQ {
				body = append(body, 0xc0, 0x0c)
				b = b[wireNameLen(b):]
			}
			body = append(body, b...)
		}
	}
	t.an, t.ns, t.ar = uint16(len(r.an)), uint16(len(r.ns)), uint16(len(r.ar))
	t.body = body
	return t, nil
}

// wireNameLen is the length of the uncompressed name at the start of b.
func wireNameLen(b []byte) int {
	off := 0
	for off < len(b) && b[off] != 0 {
		off += int(b[off]) + 1
	}
	return off + 1
}

// Header bits.
const (
	hdrQR = 1 << 15
	hdrAA = 1 << 10
	hdrTC = 1 << 9
	hdrRD = 1 << 8
	hdrCD = 1 << 4
)

// query is what the hot path reads from a packet.
type query struct {
	id      uint16
	opcode  uint8
	flags   uint16 // the query's header flags
	qEnd    int    // end of the question section in the packet
	nameLen int
	lower   [256]byte // the query name, lowercase wire
	qtype   uint16
	qclass  uint16
	ancount uint16
	nscount uint16

	edns    bool
	udpSize uint16
	version uint8
	do      bool
	tsig    bool // a TSIG record ends the message
}

func (q *query) name() []byte { return q.lower[:q.nameLen] }

// parse outcomes.
const (
	parseOK      = iota
	parseDrop    // not a query, or too short to answer
	parseFormErr // answer FORMERR without a question
	parseNoQ     // opcode NOTIMP with no usable question
)

// parseQuery reads the header, the question and the OPT and TSIG records.
func parseQuery(pkt []byte, q *query) int {
	if len(pkt) < 12 {
		return parseDrop
	}
	q.id = binary.BigEndian.Uint16(pkt)
	q.flags = binary.BigEndian.Uint16(pkt[2:])
	if q.flags&hdrQR != 0 {
		return parseDrop
	}
	q.opcode = uint8(q.flags>>11) & 0xf
	qd := binary.BigEndian.Uint16(pkt[4:])
	q.ancount = binary.BigEndian.Uint16(pkt[6:])
	q.nscount = binary.BigEndian.Uint16(pkt[8:])
	ar := binary.BigEndian.Uint16(pkt[10:])
	if qd != 1 {
		if q.opcode != mdns.OpcodeQuery && q.opcode != mdns.OpcodeNotify {
			return parseNoQ
		}
		return parseFormErr
	}
	off, n := 12, 0
	for {
		if off >= len(pkt) {
			return parseFormErr
		}
		l := int(pkt[off])
		if l&0xc0 != 0 { // compression pointer or extended label in a question
			return parseFormErr
		}
		if n+l+1 > 255 || off+l+1 > len(pkt) {
			return parseFormErr
		}
		q.lower[n] = byte(l)
		for i := 1; i <= l; i++ {
			c := pkt[off+i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			q.lower[n+i] = c
		}
		n += l + 1
		off += l + 1
		if l == 0 {
			break
		}
	}
	if off+4 > len(pkt) {
		return parseFormErr
	}
	q.nameLen = n
	q.qtype = binary.BigEndian.Uint16(pkt[off:])
	q.qclass = binary.BigEndian.Uint16(pkt[off+2:])
	off += 4
	q.qEnd = off
	q.edns, q.tsig, q.do, q.version, q.udpSize = false, false, false, 0, 0
	if q.opcode != mdns.OpcodeQuery && q.opcode != mdns.OpcodeNotify {
		return parseOK // answered NOTIMP with the question
	}
	// Answer and authority records: only skipped (NOTIFY may carry the SOA,
	// IXFR carries the client's SOA).
	for i := 0; i < int(q.ancount)+int(q.nscount); i++ {
		var ok bool
		if off, _, ok = skipRR(pkt, off); !ok {
			return parseFormErr
		}
	}
	for i := 0; i < int(ar); i++ {
		start := off
		var typ uint16
		var ok bool
		if off, typ, ok = skipRR(pkt, off); !ok {
			return parseFormErr
		}
		switch typ {
		case mdns.TypeOPT:
			if q.edns || pkt[start] != 0 {
				return parseFormErr // two OPTs, or an OPT not owned by the root
			}
			q.edns = true
			q.udpSize = binary.BigEndian.Uint16(pkt[start+3:])
			q.version = pkt[start+6]
			q.do = pkt[start+7]&0x80 != 0
			rdlen := int(binary.BigEndian.Uint16(pkt[start+9:]))
			for o := start + 11; o < start+11+rdlen; {
				if o+4 > start+11+rdlen {
					return parseFormErr
				}
				o += 4 + int(binary.BigEndian.Uint16(pkt[o+2:]))
				if o > start+11+rdlen {
					return parseFormErr
				}
			}
		case mdns.TypeTSIG:
			if i != int(ar)-1 {
				return parseFormErr // TSIG must be the last record
			}
			q.tsig = true
		}
	}
	return parseOK
}

// skipRR steps over one record, returning its type.
func skipRR(pkt []byte, off int) (int, uint16, bool) {
	for {
		if off >= len(pkt) {
			return 0, 0, false
		}
		l := int(pkt[off])
		if l&0xc0 == 0xc0 {
			off += 2
			break
		}
		if l&0xc0 != 0 {
			return 0, 0, false
		}
		off += l + 1
		if l == 0 {
			break
		}
	}
	if off+10 > len(pkt) {
		return 0, 0, false
	}
	typ := binary.BigEndian.Uint16(pkt[off:])
	rdlen := int(binary.BigEndian.Uint16(pkt[off+8:]))
	off += 10 + rdlen
	if off > len(pkt) {
		return 0, 0, false
	}
	return off, typ, true
}

// render writes the response to q with template t into out (which must have
// room for limit bytes): header, the query's own question, the body, and an
// OPT when the query had one. When it does not fit in limit, the additional
// section goes first, then everything but the question (TC).
func render(out, pkt []byte, q *query, t *tmpl, limit int, udpSize uint16, extRcode uint8) []byte {
	qlen := q.qEnd - 12
	opt := 0
	if q.edns {
		opt = 11
	}
	body, an, ns, ar := t.body, t.an, t.ns, t.ar
	flags := hdrQR | uint16(q.opcode)<<11 | q.flags&(hdrRD|hdrCD) | t.flags
	if 12+qlen+len(body)+opt > limit {
		if 12+qlen+t.arOff+opt <= limit {
			body, ar = body[:t.arOff], 0
		} else {
			body, an, ns, ar = nil, 0, 0, 0
			flags |= hdrTC
		}
	}
	if q.edns {
		ar++
	}
	out = out[:12]
	binary.BigEndian.PutUint16(out[0:], q.id)
	binary.BigEndian.PutUint16(out[2:], flags)
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint16(out[6:], an)
	binary.BigEndian.PutUint16(out[8:], ns)
	binary.BigEndian.PutUint16(out[10:], ar)
	out = append(out, pkt[12:q.qEnd]...)
	out = append(out, body...)
	if q.edns {
		out = appendOPT(out, udpSize, extRcode, q.do)
	}
	return out
}

// appendOPT adds the server's OPT: its UDP size, the extended RCODE bits,
// version 0 and DO echoed.
func appendOPT(out []byte, udpSize uint16, extRcode uint8, do bool) []byte {
	var fl byte
	if do {
		fl = 0x80
	}
	return append(out, 0, 0, 41, byte(udpSize>>8), byte(udpSize), extRcode, 0, fl, 0, 0, 0)
}

// headerOnly writes a response with no question (FORMERR, and NOTIMP to
// messages without one).
func headerOnly(out, pkt []byte, rcode int) []byte {
	flags := binary.BigEndian.Uint16(pkt[2:])
	out = out[:12]
	clear(out)
	copy(out, pkt[:2])
	binary.BigEndian.PutUint16(out[2:], hdrQR|flags&(0xf<<11|hdrRD|hdrCD)|uint16(rcode))
	return out
}
