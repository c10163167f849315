package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/ledger"
)

// Options tune Verify.
type Options struct {
	// VerifierKey, if set, is the checkpoint verifier key the owner pinned
	// (from the offer at creation); the bundle must name the same.
	VerifierKey string
	// Register adds the action kinds of services beyond the core, so the
	// entries can be replayed.
	Register []func(*handshake.Engine) error
}

// Report is what Verify checked.
type Report struct {
	IMVU     string   `json:"imvu"`
	Owner    string   `json:"owner"`
	Entries  int      `json:"entries"`
	Files    int      `json:"files"`
	TreeSize uint64   `json:"tree_size"`
	Domains  []string `json:"domains"`
	State    string   `json:"state"` // hash of the derived state
}

// Verify checks a bundle offline: the manifest signature and every file hash,
// every entry's inclusion proof against the signed checkpoint, the handshake's
// signatures, the domain hand-over, and that replaying the entries yields the
// bundle's state and exported files byte for byte. Any altered byte fails it.
func Verify(ctx context.Context, b *Bundle, opts Options) (*Report, error) {
	m := b.Manifest
	if m.Version != Version {
		return nil, fmt.Errorf("bundle: version %d, want %d", m.Version, Version)
	}
	sigHex := strings.TrimSpace(string(b.Files[SignatureFile]))
	sig, err := hex.DecodeString(sigHex)
	// One spelling only: lower-case hex, so no byte of the bundle is slack.
	if err == nil && hex.EncodeToString(sig)+"\n" != string(b.Files[SignatureFile]) {
		err = errors.New("not lower-case hex on one line")
	}
	if err != nil || !identity.Verify(m.Platform, identity.ContextBundle, b.Files[ManifestFile], sig) {
		return nil, errors.New("bundle: the manifest signature does not verify with the platform key it names")
	}
	if err := checkFiles(b); err != nil {
		return nil, err
	}
	v, err := verifier(m, opts.VerifierKey)
	if err != nil {
		return nil, err
	}
	cp, err := ledger.ParseCheckpoint([]byte(m.Checkpoint), v)
	if err != nil {
		return nil, fmt.Errorf("bundle: checkpoint: %w", err)
	}
	if err := b.readEntries(cp, v); err != nil {
		return nil, err
	}
	if err := b.checkHandshake(); err != nil {
		return nil, err
	}
	records := make([]handshake.Record, len(b.Records))
	for i, r := range b.Records {
		records[i] = r.WithIndex(b.Entries[i].Index)
	}
	d, err := handshake.Derive(b.Genesis, records, opts.Register...)
	if err != nil {
		return nil, fmt.Errorf("bundle: replay: %w", err)
	}
	st := d.State().IMVUs[m.IMVU]
	if st == nil {
		return nil, fmt.Errorf("bundle: the entries never create %s", m.IMVU)
	}
	b.State = st
	if err := b.checkExports(ctx, d); err != nil {
		return nil, err
	}
	if err := b.checkTransfer(st); err != nil {
		return nil, err
	}
	h, _, _ := st.Hash()
	return &Report{IMVU: m.IMVU, Owner: m.Owner.String(), Entries: len(b.Entries), Files: len(m.Files),
		TreeSize: cp.Size, Domains: st.Domains(), State: h}, nil
}

func checkFiles(b *Bundle) error {
	for name, want := range b.Manifest.Files {
		data, ok := b.Files[name]
		if !ok {
			return fmt.Errorf("bundle: %s is in the manifest but not in the bundle", name)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != want {
			return fmt.Errorf("bundle: %s does not match its hash in the manifest", name)
		}
	}
	for name := range b.Files {
		if _, ok := b.Manifest.Files[name]; !ok && name != ManifestFile && name != SignatureFile {
			return fmt.Errorf("bundle: %s is not in the manifest", name)
		}
	}
	return nil
}

// verifier builds the checkpoint verifier from the manifest's key, checks it
// names the manifest's platform key, and that it is the one pinned, if any.
func verifier(m Manifest, pinned string) (note.Verifier, error) {
	if pinned != "" && strings.TrimSpace(pinned) != m.VerifierKey {
		return nil, errors.New("bundle: the verifier key differs from the one pinned")
	}
	v, err := note.NewVerifier(m.VerifierKey)
	if err != nil {
		return nil, fmt.Errorf("bundle: verifier key: %w", err)
	}
	// name+hash+base64(algorithm byte || key); the base64 may hold '+' too.
	parts := strings.SplitN(m.VerifierKey, "+", 3)
	if len(parts) != 3 {
		return nil, errors.New("bundle: malformed verifier key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 33 || !bytes.Equal(raw[1:], m.Platform[:]) {
		return nil, errors.New("bundle: the verifier key is not the platform key the manifest names")
	}
	return v, nil
}

func (b *Bundle) readEntries(cp ledger.Checkpoint, v note.Verifier) error {
	data, ok := b.Files[EntriesFile]
	if !ok {
		return fmt.Errorf("bundle: no %s", EntriesFile)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var last int64 = -1
	for dec.More() {
		var e Entry
		if err := dec.Decode(&e); err != nil {
			return fmt.Errorf("bundle: %s: %w", EntriesFile, err)
		}
		if int64(e.Index) <= last {
			return fmt.Errorf("bundle: entry %d is out of order", e.Index)
		}
		last = int64(e.Index)
		proof := make([][32]byte, len(e.Proof))
		for i, p := range e.Proof {
			if len(p) != 32 {
				return fmt.Errorf("bundle: entry %d: proof hash %d has %d bytes", e.Index, i, len(p))
			}
			copy(proof[i][:], p)
		}
		r := ledger.Receipt{Index: e.Index, LeafHash: ledger.LeafHash(e.Index, e.Data), Proof: proof, Checkpoint: cp}
		if err := ledger.VerifyReceipt(r, e.Data, v); err != nil {
			return fmt.Errorf("bundle: entry %d is not in the checkpointed log: %w", e.Index, err)
		}
		rec, err := handshake.ParseRecord(e.Data)
		if err != nil {
			return fmt.Errorf("bundle: entry %d: %w", e.Index, err)
		}
		b.Entries = append(b.Entries, e)
		b.Records = append(b.Records, rec)
	}
	if len(b.Entries) == 0 || b.Entries[0].Index != 0 || b.Records[0].Genesis == nil {
		return errors.New("bundle: the first entry is not the genesis entry 0")
	}
	b.Genesis = *b.Records[0].Genesis
	for i, r := range b.Records[1:] {
		if r.Scope != b.Manifest.IMVU && !HandedTo(r, b.Manifest.Owner, b.Manifest.IMVU) {
			return fmt.Errorf("bundle: entry %d is in scope %s, not %s, and not co-signed by its owner", b.Entries[i+1].Index, r.Scope, b.Manifest.IMVU)
		}
	}
	return nil
}

// checkHandshake finds the creating entry: signed by the owner the manifest
// names, countersigned by the platform.
func (b *Bundle) checkHandshake() error {
	if b.Genesis.Platform != b.Manifest.Platform {
		return errors.New("bundle: the genesis entry names another platform key than the manifest")
	}
	for _, r := range b.Records {
		if r.Type != handshake.RecordAction || r.Kind != handshake.KindCreate {
			continue
		}
		a, err := r.Action.Open()
		if err != nil {
			return fmt.Errorf("bundle: handshake: %w", err)
		}
		good, _ := r.Action.Verify()
		switch {
		case a.Actor != b.Manifest.Owner:
			return errors.New("bundle: the handshake was made by another key than the manifest's owner")
		case !good[a.Actor]:
			return errors.New("bundle: the owner's signature of the handshake does not verify")
		case !identity.Verify(b.Manifest.Platform, identity.ContextCountersign, r.Action.Body, r.Countersig):
			return errors.New("bundle: the platform's countersignature of the handshake does not verify")
		}
		return nil
	}
	return errors.New("bundle: no handshake entry")
}

// checkExports writes the derived state with every exporter and requires each
// file to equal the bundle's.
func (b *Bundle) checkExports(ctx context.Context, d *handshake.Derived) error {
	dir, err := os.MkdirTemp("", "nexus-verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := d.Export(ctx, b.Manifest.IMVU, dir); err != nil {
		return fmt.Errorf("bundle: re-export: %w", err)
	}
	var names []string
	err = filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		names = append(names, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, n := range names {
		want, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(n)))
		if err != nil {
			return err
		}
		if got, ok := b.Files[n]; !ok || !bytes.Equal(got, want) {
			return fmt.Errorf("bundle: %s is not what the ledger entries derive", n)
		}
	}
	return nil
}

func (b *Bundle) checkTransfer(st *handshake.IMVU) error {
	raw, ok := b.Files[TransferFile]
	if !ok {
		return fmt.Errorf("bundle: no %s", TransferFile)
	}
	var t Transfer
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("bundle: %s: %w", TransferFile, err)
	}
	body, err := json.Marshal(t.Record)
	if err != nil {
		return err
	}
	switch {
	case !identity.Verify(b.Manifest.Platform, identity.ContextTransfer, body, t.Sig):
		return errors.New("bundle: the domain hand-over is not signed by the platform")
	case t.Record.To != b.Manifest.Owner || t.Record.IMVU != b.Manifest.IMVU:
		return errors.New("bundle: the domain hand-over names another owner or IMVU")
	case strings.Join(t.Record.Domains, ",") != strings.Join(st.Domains(), ","):
		return fmt.Errorf("bundle: the hand-over names %v; the ledger binds %v", t.Record.Domains, st.Domains())
	}
	b.Transfer = t
	return nil
}

// HandedTo reports whether a record of another scope belongs in IMVU id's
// bundle: an action its owner co-signed, with a valid signature, whose
// parameters name the IMVU as "imvu" (a domain handed over to it). An owner
// of several IMVUs co-signs actions of the others too; those stay out.
func HandedTo(r handshake.Record, owner identity.PublicKey, id string) bool {
	if r.Type != handshake.RecordAction || r.Action == nil {
		return false
	}
	a, err := r.Action.Open()
	if err != nil {
		return false
	}
	var p struct {
		IMVU string `json:"imvu"`
	}
	if json.Unmarshal(a.Params, &p) != nil || p.IMVU != id {
		return false
	}
	good, _ := r.Action.Verify()
	for _, k := range a.Cosigners {
		if k == owner && good[k] {
			return true
		}
	}
	return false
}
