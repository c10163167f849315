package dns

import (
	"fmt"
	"strings"

	mdns "github.com/miekg/dns"
)

// Names inside the package are kept in two forms: lowercase presentation
// ("www.imvu042.world.") for records and messages made with miekg/dns, and
// lowercase uncompressed wire format ("\x03www\x08imvu042\x05world\x00") as
// index keys, because that is what the hot path gets from a query packet
// without any decoding.

// wireName returns the lowercase wire form of a fully qualified name.
func wireName(s string) (string, error) {
	var buf [256]byte
	n, err := mdns.PackDomainName(mdns.Fqdn(s), buf[:], 0, nil, false)
	if err != nil {
		return "", fmt.Errorf("name %q: %w", s, err)
	}
	lowerASCII(buf[:n])
	return string(buf[:n]), nil
}

// mustWire is wireName for names that were already checked.
func mustWire(s string) string {
	w, err := wireName(s)
	if err != nil {
		panic(err)
	}
	return w
}

// presentation turns a wire name back into text.
func presentation(w string) string {
	s, _, err := mdns.UnpackDomainName([]byte(w), 0)
	if err != nil {
		return "?"
	}
	return s
}

// lowerASCII lowercases A-Z in place. Label length bytes (0-63) are below 'A',
// so a whole wire name can be lowercased this way.
func lowerASCII(b []byte) {
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// isSubWire reports whether child is parent or below it (both wire, lowercase).
func isSubWire(child, parent string) bool {
	if len(child) < len(parent) {
		return false
	}
	for off := 0; off < len(child); off += int(child[off]) + 1 {
		if len(child)-off == len(parent) {
			return child[off:] == parent
		}
		if len(child)-off < len(parent) || child[off] == 0 {
			return false
		}
	}
	return false
}

// parentWire strips the first label ("" for the root).
func parentWire(w string) string {
	if len(w) == 0 || w[0] == 0 {
		return ""
	}
	return w[int(w[0])+1:]
}

// countLabels counts the labels of a wire name, the root not counted.
func countLabels(w string) int {
	n := 0
	for off := 0; off < len(w) && w[off] != 0; off += int(w[off]) + 1 {
		n++
	}
	return n
}

// labelOffsets returns the offsets of the labels of a wire name, root excluded.
func labelOffsets(w string) []int {
	var offs []int
	for off := 0; off < len(w) && w[off] != 0; off += int(w[off]) + 1 {
		offs = append(offs, off)
	}
	return offs
}

// canonicalCompare orders lowercase wire names as RFC 4034 section 6.1 does:
// label by label from the rightmost, each label as an unsigned byte string.
func canonicalCompare(a, b string) int {
	la, lb := labelOffsets(a), labelOffsets(b)
	for i, j := len(la)-1, len(lb)-1; i >= 0 && j >= 0; i, j = i-1, j-1 {
		x := a[la[i]+1 : la[i]+1+int(a[la[i]])]
		y := b[lb[j]+1 : lb[j]+1+int(b[lb[j]])]
		if c := strings.Compare(x, y); c != 0 {
			return c
		}
	}
	return len(la) - len(lb)
}

// relativeName is the Record.Name form of an owner: "@", "www", "*.stage",
// or the absolute name when it is not under origin.
func relativeName(owner, origin string) string {
	ow, err1 := wireName(owner)
	zw, err2 := wireName(origin)
	if err1 != nil || err2 != nil || !isSubWire(ow, zw) {
		return owner
	}
	if ow == zw {
		return "@"
	}
	k := countLabels(ow) - countLabels(zw)
	idx := mdns.Split(owner)
	if k <= 0 || k >= len(idx)+1 {
		return owner
	}
	if k == len(idx) {
		return strings.TrimSuffix(owner, ".")
	}
	return owner[:idx[k]-1]
}
