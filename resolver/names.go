package resolver

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"

	mdns "github.com/miekg/dns"
)

// lower lowercases the ASCII letters of a name (DNS names compare
// case-insensitively in ASCII only).
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// equalName reports whether two names are the same, ignoring case.
func equalName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// isSub reports whether child is parent or below it.
func isSub(parent, child string) bool {
	if parent == "." {
		return true
	}
	return mdns.IsSubDomain(parent, child)
}

// parentOf returns the name with its first label removed ("." for ".").
func parentOf(name string) string {
	if name == "." || name == "" {
		return "."
	}
	i, end := mdns.NextLabel(name, 0)
	if end {
		return "."
	}
	return name[i:]
}

// childToward returns the name one label below anc on the way to name
// (anc must be a proper ancestor of name).
func childToward(anc, name string) string {
	idx := mdns.Split(name)
	strip := len(idx) - mdns.CountLabel(anc) - 1
	if strip < 0 || strip >= len(idx) {
		return name
	}
	return name[idx[strip]:]
}

// commonAncestor returns the longest common ancestor of a and b, spelled as
// in a.
func commonAncestor(a, b string) string {
	n := mdns.CompareDomainName(a, b)
	idx := mdns.Split(a)
	if n <= 0 || len(idx) == 0 {
		return "."
	}
	if n >= len(idx) {
		return a
	}
	return a[idx[len(idx)-n]:]
}

// wireLabels returns the labels of name in wire form, lowercased, or nil if
// the name does not pack.
func wireLabels(name string) [][]byte {
	buf := make([]byte, 256)
	n, err := mdns.PackDomainName(name, buf, 0, nil, false)
	if err != nil {
		return nil
	}
	buf = buf[:n]
	var out [][]byte
	for off := 0; off < len(buf); {
		l := int(buf[off])
		if l == 0 || off+1+l > len(buf) {
			break
		}
		lab := buf[off+1 : off+1+l]
		for i, c := range lab {
			if 'A' <= c && c <= 'Z' {
				lab[i] = c + 'a' - 'A'
			}
		}
		out = append(out, lab)
		off += 1 + l
	}
	return out
}

// canonicalCompare orders names canonically (RFC 4034 6.1): label by label
// from the right, each label as lowercased bytes; a name sorts before its
// descendants.
func canonicalCompare(a, b string) int {
	la, lb := wireLabels(a), wireLabels(b)
	for i := 1; i <= len(la) && i <= len(lb); i++ {
		if c := bytes.Compare(la[len(la)-i], lb[len(lb)-i]); c != 0 {
			return c
		}
	}
	switch {
	case len(la) < len(lb):
		return -1
	case len(la) > len(lb):
		return 1
	}
	return 0
}

// randomID returns an unpredictable 16-bit message ID.
func randomID() uint16 {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint16(b[:])
}

// randomPort returns an unpredictable port in 1024-65535.
func randomPort() int {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return 1024 + int(binary.BigEndian.Uint16(b[:]))%(65536-1024)
}

// randomizeCase flips the case of each ASCII letter of name at random
// (draft-vixie-dnsext-dns0x20), leaving escape sequences alone.
func randomizeCase(name string) string {
	var bits [32]byte
	_, _ = rand.Read(bits[:])
	b := []byte(name)
	escaped := false
	for i, c := range b {
		if escaped {
			escaped = false
			continue
		}
		if c == '\\' {
			escaped = true
			continue
		}
		lc := c | 0x20
		if lc < 'a' || lc > 'z' {
			continue
		}
		if bits[(i/8)%len(bits)]&(1<<(i%8)) != 0 {
			b[i] = lc - ('a' - 'A')
		} else {
			b[i] = lc
		}
	}
	return string(b)
}
