package ledger

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// maxNoteSize bounds the size of a signed note the parsers accept. A
// checkpoint from this package is about 200 bytes; cosignatures from a few
// witnesses add about 100 bytes each.
const maxNoteSize = 32 << 10

// Checkpoint is a signed tree head: a c2sp.org/tlog-checkpoint signed note
// committing to the first Size entries of the log named Origin.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   [32]byte
	Note   []byte // the full signed note text, body and signature lines
}

// MarshalText returns the signed note.
func (c Checkpoint) MarshalText() ([]byte, error) {
	if len(c.Note) == 0 {
		return nil, errors.New("ledger: marshal checkpoint: no signed note")
	}
	return bytes.Clone(c.Note), nil
}

// UnmarshalText parses a signed checkpoint note WITHOUT verifying any
// signature (encoding.TextUnmarshaler has no way to pass a key). Use
// [ParseCheckpoint] for anything that came from outside the process.
func (c *Checkpoint) UnmarshalText(text []byte) error {
	if len(text) > maxNoteSize {
		return fmt.Errorf("ledger: parse checkpoint: note is %d bytes, limit %d", len(text), maxNoteSize)
	}
	n, err := note.Open(text, nil)
	var unverified *note.UnverifiedNoteError
	switch {
	case errors.As(err, &unverified):
		n = unverified.Note
	case err != nil:
		return fmt.Errorf("ledger: parse checkpoint note: %w", err)
	}
	origin, size, root, err := parseCheckpointBody(n.Text)
	if err != nil {
		return err
	}
	*c = Checkpoint{Origin: origin, Size: size, Root: root, Note: bytes.Clone(text)}
	return nil
}

// ParseCheckpoint parses a c2sp.org/tlog-checkpoint signed note and verifies
// that it carries a valid signature by v. The checkpoint's origin line must be
// v's key name (this package always names the log key after the origin).
// Signatures by other keys (witness cosignatures) are allowed and ignored.
// Extension lines after the root are allowed and ignored.
func ParseCheckpoint(signedNote []byte, v note.Verifier) (Checkpoint, error) {
	if v == nil {
		return Checkpoint{}, errors.New("ledger: parse checkpoint: nil verifier")
	}
	if len(signedNote) > maxNoteSize {
		return Checkpoint{}, fmt.Errorf("ledger: parse checkpoint: note is %d bytes, limit %d", len(signedNote), maxNoteSize)
	}
	n, err := note.Open(signedNote, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("ledger: verify checkpoint signature by %q: %w: %w", v.Name(), ErrBadSignature, err)
	}
	origin, size, root, err := parseCheckpointBody(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("ledger: parse checkpoint: origin %q is not the verifier's log %q", origin, v.Name())
	}
	return Checkpoint{Origin: origin, Size: size, Root: root, Note: bytes.Clone(signedNote)}, nil
}

// checkpointBody formats the note text of a checkpoint.
func checkpointBody(origin string, size uint64, root [32]byte) string {
	return origin + "\n" + strconv.FormatUint(size, 10) + "\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n"
}

// signCheckpoint builds and signs the checkpoint for a tree head.
func signCheckpoint(s note.Signer, origin string, size uint64, root [32]byte) (Checkpoint, error) {
	msg, err := note.Sign(&note.Note{Text: checkpointBody(origin, size, root)}, s)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("ledger: sign checkpoint at size %d: %w", size, err)
	}
	return Checkpoint{Origin: origin, Size: size, Root: root, Note: msg}, nil
}

// parseCheckpointBody parses the text of a checkpoint note: origin, size and
// base64 root hash lines, then optional non-empty extension lines.
func parseCheckpointBody(text string) (origin string, size uint64, root [32]byte, err error) {
	if !strings.HasSuffix(text, "\n") {
		return "", 0, root, errors.New("ledger: parse checkpoint: note text does not end in a newline")
	}
	lines := strings.Split(text[:len(text)-1], "\n")
	if len(lines) < 3 {
		return "", 0, root, fmt.Errorf("ledger: parse checkpoint: %d lines, want at least 3", len(lines))
	}
	for i, l := range lines {
		if l == "" {
			return "", 0, root, fmt.Errorf("ledger: parse checkpoint: line %d is empty", i+1)
		}
	}
	origin = lines[0]
	if err := validOrigin(origin); err != nil {
		return "", 0, root, fmt.Errorf("ledger: parse checkpoint: %w", err)
	}
	size, err = parseDecimal(lines[1])
	if err != nil {
		return "", 0, root, fmt.Errorf("ledger: parse checkpoint size: %w", err)
	}
	root, err = parseHash(lines[2])
	if err != nil {
		return "", 0, root, fmt.Errorf("ledger: parse checkpoint root: %w", err)
	}
	return origin, size, root, nil
}

// parseDecimal parses an ASCII decimal with no sign and no leading zeroes
// (unless it is "0").
func parseDecimal(s string) (uint64, error) {
	if s == "" || len(s) > 20 {
		return 0, fmt.Errorf("bad decimal %q", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("bad decimal %q", s)
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("decimal %q has a leading zero", s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad decimal %q: %w", s, err)
	}
	return n, nil
}

// parseHash decodes a canonical standard-base64 SHA-256 hash.
func parseHash(s string) ([32]byte, error) {
	var h [32]byte
	if len(s) != base64.StdEncoding.EncodedLen(len(h)) {
		return h, fmt.Errorf("hash %q is not 44 base64 characters", s)
	}
	var buf [33]byte // DecodedLen(44)
	n, err := base64.StdEncoding.Strict().Decode(buf[:], []byte(s))
	if err != nil || n != len(h) {
		return h, fmt.Errorf("hash %q is not canonical base64 of 32 bytes", s)
	}
	copy(h[:], buf[:n])
	return h, nil
}
