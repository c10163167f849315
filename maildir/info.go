package maildir

import (
	"errors"
	"sort"
	"strings"
)

// System flags understood by the Maildir info suffix. Message.Flags and
// SetFlags use these IMAP-style names; the letters are the Maildir encoding.
const (
	FlagDraft     = `\Draft`     // D
	FlagFlagged   = `\Flagged`   // F
	FlagForwarded = `$Forwarded` // P ("passed")
	FlagAnswered  = `\Answered`  // R ("replied")
	FlagSeen      = `\Seen`      // S
	FlagDeleted   = `\Deleted`   // T ("trashed")
)

// ErrBadInfo reports an info suffix that is not a Maildir "2," suffix.
var ErrBadInfo = errors.New("maildir: malformed info suffix")

// ErrUnknownFlag reports a flag with no Maildir letter.
var ErrUnknownFlag = errors.New("maildir: flag has no maildir letter")

func flagLetter(flag string) (byte, bool) {
	switch strings.ToLower(flag) {
	case `\draft`:
		return 'D', true
	case `\flagged`:
		return 'F', true
	case `$forwarded`:
		return 'P', true
	case `\answered`:
		return 'R', true
	case `\seen`:
		return 'S', true
	case `\deleted`:
		return 'T', true
	}
	return 0, false
}

func letterFlag(c byte) (string, bool) {
	switch c {
	case 'D':
		return FlagDraft, true
	case 'F':
		return FlagFlagged, true
	case 'P':
		return FlagForwarded, true
	case 'R':
		return FlagAnswered, true
	case 'S':
		return FlagSeen, true
	case 'T':
		return FlagDeleted, true
	}
	return "", false
}

// KnownFlag reports whether flag (case-insensitive) can be stored in a
// Maildir info suffix.
func KnownFlag(flag string) bool {
	_, ok := flagLetter(flag)
	return ok
}

// ParseInfo parses the part of a Maildir file name after the ':' separator
// ("2,FRS") and returns the system flags it carries, in letter order. Letters
// that are not system flags (for example Dovecot keyword letters a-z) are
// ignored. An empty info or the experimental "1," form yields no flags.
func ParseInfo(info string) ([]string, error) {
	flags, _, err := parseInfo(info)
	return flags, err
}

// parseInfo also returns the unknown-but-valid letters, which SetFlags keeps.
func parseInfo(info string) (flags []string, extra string, err error) {
	if info == "" {
		return nil, "", nil
	}
	if strings.HasPrefix(info, "1,") {
		return nil, "", nil
	}
	if !strings.HasPrefix(info, "2,") {
		return nil, "", ErrBadInfo
	}
	var seen [256]bool
	var ext []byte
	for i := 2; i < len(info); i++ {
		c := info[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == ':' || c == ',' {
			return nil, "", ErrBadInfo
		}
		if seen[c] {
			continue
		}
		seen[c] = true
		if f, ok := letterFlag(c); ok {
			flags = append(flags, f)
		} else {
			ext = append(ext, c)
		}
	}
	sort.Slice(flags, func(i, j int) bool {
		a, _ := flagLetter(flags[i])
		b, _ := flagLetter(flags[j])
		return a < b
	})
	return flags, string(ext), nil
}

// FormatInfo returns the info suffix ("2,FS") for flags. Letters are sorted
// in ASCII order as the Maildir specification requires. Unknown flags yield
// ErrUnknownFlag.
func FormatInfo(flags []string) (string, error) {
	return formatInfo(flags, "")
}

func formatInfo(flags []string, extra string) (string, error) {
	var set [256]bool
	for _, f := range flags {
		c, ok := flagLetter(f)
		if !ok {
			return "", ErrUnknownFlag
		}
		set[c] = true
	}
	for i := 0; i < len(extra); i++ {
		set[extra[i]] = true
	}
	b := []byte("2,")
	for c := 0; c < 256; c++ {
		if set[c] {
			b = append(b, byte(c))
		}
	}
	return string(b), nil
}

// splitName splits a file name into its unique key and info suffix.
func splitName(name string) (key, info string) {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return name, ""
}
