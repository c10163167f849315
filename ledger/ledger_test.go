package ledger_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexus-core/nexus/ledger"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
)

func TestAppendReadScan(t *testing.T) {
	ctx := context.Background()
	l, _ := openTemp(t)
	entries := [][]byte{
		[]byte("first"),
		{},  // empty entry
		nil, // nil is stored as empty
		{0x00, 0xff, '\n', 0x01},
		bytes.Repeat([]byte("x"), 10_000),
	}
	for i, d := range entries {
		e, err := l.Append(ctx, d)
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		if e.Index != uint64(i) || e.Size != uint64(i+1) || e.LeafHash != ledger.LeafHash(uint64(i), d) {
			t.Fatalf("Append %d = %+v", i, e)
		}
	}
	if got := l.Size(); got != uint64(len(entries)) {
		t.Fatalf("Size = %d, want %d", got, len(entries))
	}
	for i, want := range entries {
		got, err := l.Read(ctx, uint64(i))
		if err != nil {
			t.Fatalf("Read %d: %v", i, err)
		}
		if !bytes.Equal(got, want) || got == nil {
			t.Fatalf("Read %d = %q, want %q (non-nil)", i, got, want)
		}
	}
	if _, err := l.Read(ctx, uint64(len(entries))); !errors.Is(err, ledger.ErrOutOfRange) {
		t.Fatalf("Read past end: err = %v, want ErrOutOfRange", err)
	}

	tests := []struct {
		name       string
		start, end uint64
		wantErr    error
	}{
		{"all", 0, 5, nil},
		{"middle", 1, 4, nil},
		{"empty", 3, 3, nil},
		{"past end", 2, 6, ledger.ErrOutOfRange},
		{"reversed", 3, 2, ledger.ErrOutOfRange},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []uint64
			err := l.Scan(ctx, tc.start, tc.end, func(i uint64, data []byte) error {
				if !bytes.Equal(data, entries[i]) {
					t.Errorf("Scan %d = %q, want %q", i, data, entries[i])
				}
				got = append(got, i)
				return nil
			})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Scan err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				return
			}
			var want []uint64
			for i := tc.start; i < tc.end; i++ {
				want = append(want, i)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("Scan visited %v, want %v", got, want)
			}
		})
	}

	stop := errors.New("stop")
	n := 0
	if err := l.Scan(ctx, 0, 5, func(uint64, []byte) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("Scan with failing fn: err = %v after %d calls, want stop after 1", err, n)
	}
}

func TestScanManyChunks(t *testing.T) {
	ctx := context.Background()
	l, _ := openTemp(t)
	const n = 2500 // more than one scan chunk
	batch := make([][]byte, n)
	for i := range batch {
		batch[i] = fmt.Appendf(nil, "entry-%d", i)
	}
	if _, err := l.AppendBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	next := uint64(10)
	err := l.Scan(ctx, 10, n, func(i uint64, data []byte) error {
		if i != next || string(data) != fmt.Sprintf("entry-%d", i) {
			return fmt.Errorf("got %d %q, want %d", i, data, next)
		}
		next++
		return nil
	})
	if err != nil || next != n {
		t.Fatalf("Scan: %v (stopped at %d)", err, next)
	}
}

func TestAppendBatch(t *testing.T) {
	ctx := context.Background()
	l, _ := openTemp(t)
	if _, err := l.Append(ctx, []byte("zero")); err != nil {
		t.Fatal(err)
	}
	es, err := l.AppendBatch(ctx, [][]byte{[]byte("a"), []byte("b"), []byte("c")})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range es {
		if e.Index != uint64(1+i) || e.Size != 4 {
			t.Fatalf("entry %d = %+v, want index %d size 4", i, e, 1+i)
		}
	}
	// One batch, one checkpoint: none at sizes 2 and 3.
	for size, want := range map[uint64]error{0: nil, 1: nil, 2: ledger.ErrNotFound, 3: ledger.ErrNotFound, 4: nil, 5: ledger.ErrOutOfRange} {
		cp, err := l.CheckpointAt(ctx, size)
		if !errors.Is(err, want) {
			t.Fatalf("CheckpointAt(%d): err = %v, want %v", size, err, want)
		}
		if err == nil && cp.Size != size {
			t.Fatalf("CheckpointAt(%d) has size %d", size, cp.Size)
		}
	}
	if _, err := l.AppendBatch(ctx, nil); !errors.Is(err, ledger.ErrEmptyBatch) {
		t.Fatalf("empty batch: err = %v", err)
	}
}

func TestAppendLimits(t *testing.T) {
	ctx := context.Background()
	opts := testOptions(t)
	opts.MaxEntrySize = 10
	l, err := ledger.Open(ctx, filepath.Join(t.TempDir(), "l.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(ctx, make([]byte, 11)); !errors.Is(err, ledger.ErrEntryTooLarge) {
		t.Fatalf("oversized entry: err = %v", err)
	}
	if _, err := l.Append(ctx, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Append(cctx, []byte("never")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled append: err = %v", err)
	}
	if l.Size() != 1 {
		t.Fatalf("Size = %d after a cancelled append, want 1", l.Size())
	}
}

func TestReopenKeepsSizeAndRoot(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	for round := range 3 {
		l, err := ledger.Open(ctx, path, testOptions(t))
		if err != nil {
			t.Fatalf("round %d: Open: %v", round, err)
		}
		if got := l.Size(); got != uint64(round*7) {
			t.Fatalf("round %d: Size after reopen = %d, want %d", round, got, round*7)
		}
		before := l.Checkpoint()
		for i := range 7 {
			if _, err := l.Append(ctx, fmt.Appendf(nil, "r%d-%d", round, i)); err != nil {
				t.Fatal(err)
			}
		}
		want := l.Checkpoint()
		proof, err := l.Consistency(ctx, before.Size, want.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := ledger.VerifyConsistency(before, want, proof); err != nil {
			t.Fatalf("round %d: consistency with previous session: %v", round, err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		l2, err := ledger.Open(ctx, path, testOptions(t))
		if err != nil {
			t.Fatal(err)
		}
		got := l2.Checkpoint()
		if got.Size != want.Size || got.Root != want.Root || !bytes.Equal(got.Note, want.Note) {
			t.Fatalf("round %d: checkpoint after reopen = %d %x, want %d %x", round, got.Size, got.Root, want.Size, want.Root)
		}
		if err := l2.Close(); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := ledger.Verify(ctx, path, testVerifier(t), nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Entries != 21 || rep.Checkpoints != 22 {
		t.Fatalf("Verify report = %+v, want 21 entries and 22 checkpoints", rep)
	}
}

func TestOpenValidation(t *testing.T) {
	ctx := context.Background()
	good := testOptions(t)
	otherSigner, otherVerifier := testKeys(t, testOrigin, "other key")
	wrongNameSigner, wrongNameVerifier := testKeys(t, "another.log", "test")
	tests := []struct {
		name string
		opts ledger.Options
	}{
		{"no signer", ledger.Options{Origin: testOrigin, Verifier: good.Verifier}},
		{"no verifier", ledger.Options{Origin: testOrigin, Signer: good.Signer}},
		{"verifier for another key", ledger.Options{Origin: testOrigin, Signer: good.Signer, Verifier: otherVerifier}},
		{"signer for another key", ledger.Options{Origin: testOrigin, Signer: otherSigner, Verifier: good.Verifier}},
		{"key named differently", ledger.Options{Origin: testOrigin, Signer: wrongNameSigner, Verifier: wrongNameVerifier}},
		{"bad origin", ledger.Options{Origin: "has space", Signer: good.Signer, Verifier: good.Verifier}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ledger.Open(ctx, filepath.Join(t.TempDir(), "l.db"), tc.opts)
			if err == nil {
				l.Close()
				t.Fatal("Open succeeded, want error")
			}
		})
	}

	// A database belongs to one origin.
	path := filepath.Join(t.TempDir(), "l.db")
	l := openPath(t, path)
	l.Close()
	s, v := testKeys(t, "another.log", "test")
	if l, err := ledger.Open(ctx, path, ledger.Options{Signer: s, Verifier: v}); err == nil {
		l.Close()
		t.Fatal("opened a database with another log's origin")
	}
}

func TestReceipts(t *testing.T) {
	ctx := context.Background()
	l, _ := openTemp(t)
	v := testVerifier(t)
	var data [][]byte
	for i := range 37 {
		data = append(data, fmt.Appendf(nil, "receipt entry %d", i))
	}
	// Mixed commit sizes so the tree has imperfect right edges.
	for i := 0; i < len(data); {
		n := min(1+i%5, len(data)-i)
		if _, err := l.AppendBatch(ctx, data[i:i+n]); err != nil {
			t.Fatal(err)
		}
		i += n
	}
	for i, d := range data {
		r, err := l.Receipt(ctx, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := ledger.VerifyReceipt(r, d, v); err != nil {
			t.Fatalf("receipt %d: %v", i, err)
		}
	}

	r, err := l.Receipt(ctx, 11)
	if err != nil {
		t.Fatal(err)
	}
	_, otherV := testKeys(t, testOrigin, "other key")
	tamper := []struct {
		name   string
		mutate func(r *ledger.Receipt, data []byte) []byte
		v      note.Verifier
	}{
		{"changed byte of data", func(r *ledger.Receipt, d []byte) []byte { d[0] ^= 1; return d }, v},
		{"data of another entry", func(r *ledger.Receipt, d []byte) []byte { return data[12] }, v},
		{"changed index", func(r *ledger.Receipt, d []byte) []byte { r.Index = 12; r.LeafHash = [32]byte{}; return d }, v},
		{"changed proof hash", func(r *ledger.Receipt, d []byte) []byte { r.Proof[1][5] ^= 0x80; return d }, v},
		{"dropped proof hash", func(r *ledger.Receipt, d []byte) []byte { r.Proof = r.Proof[1:]; return d }, v},
		{"changed root field", func(r *ledger.Receipt, d []byte) []byte { r.Checkpoint.Root[0] ^= 1; return d }, v},
		{"changed size field", func(r *ledger.Receipt, d []byte) []byte { r.Checkpoint.Size++; return d }, v},
		{"changed signed note", func(r *ledger.Receipt, d []byte) []byte {
			r.Checkpoint.Note = bytes.Replace(r.Checkpoint.Note, []byte("\n37\n"), []byte("\n38\n"), 1)
			return d
		}, v},
		{"wrong verifier", func(r *ledger.Receipt, d []byte) []byte { return d }, otherV},
	}
	for _, tc := range tamper {
		t.Run(tc.name, func(t *testing.T) {
			rc := cloneReceipt(r)
			d := tc.mutate(&rc, bytes.Clone(data[11]))
			if err := ledger.VerifyReceipt(rc, d, tc.v); err == nil {
				t.Fatal("VerifyReceipt succeeded on a tampered receipt")
			}
		})
	}
	if _, err := l.Receipt(ctx, 37); !errors.Is(err, ledger.ErrOutOfRange) {
		t.Fatalf("receipt past end: %v", err)
	}
}

func cloneReceipt(r ledger.Receipt) ledger.Receipt {
	r.Proof = slices.Clone(r.Proof)
	r.Checkpoint.Note = bytes.Clone(r.Checkpoint.Note)
	r.Extra = bytes.Clone(r.Extra)
	return r
}

func TestReceiptTextRoundTrip(t *testing.T) {
	ctx := context.Background()
	l, _ := openTemp(t)
	v := testVerifier(t)
	for i := range 9 {
		if _, err := l.Append(ctx, fmt.Appendf(nil, "e%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		index uint64
		extra []byte
	}{
		{"first", 0, nil},
		{"last", 8, nil},
		{"middle with extra", 5, []byte("app context")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := l.Receipt(ctx, tc.index)
			if err != nil {
				t.Fatal(err)
			}
			r.Extra = tc.extra
			text, err := r.MarshalText()
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(text), "\n")
			if lines[0] != "c2sp.org/tlog-proof@v1" {
				t.Fatalf("first line %q", lines[0])
			}
			wantIndexLine := 1
			if tc.extra != nil {
				wantIndexLine = 2
				if !strings.HasPrefix(lines[1], "extra ") {
					t.Fatalf("second line %q, want extra", lines[1])
				}
			}
			if lines[wantIndexLine] != fmt.Sprintf("index %d", tc.index) {
				t.Fatalf("index line %q", lines[wantIndexLine])
			}
			if !bytes.HasSuffix(text, r.Checkpoint.Note) {
				t.Fatal("receipt does not end with the checkpoint note verbatim")
			}

			parsed, err := ledger.ParseReceipt(text, v)
			if err != nil {
				t.Fatalf("ParseReceipt: %v\n%s", err, text)
			}
			want := r
			want.LeafHash = [32]byte{} // not carried by the text format
			if !receiptsEqual(parsed, want) {
				t.Fatalf("ParseReceipt = %+v, want %+v", parsed, want)
			}
			if err := ledger.VerifyReceipt(parsed, fmt.Appendf(nil, "e%d", tc.index), v); err != nil {
				t.Fatalf("VerifyReceipt of parsed receipt: %v", err)
			}
			var un ledger.Receipt
			if err := un.UnmarshalText(text); err != nil {
				t.Fatal(err)
			}
			if !receiptsEqual(un, want) {
				t.Fatalf("UnmarshalText = %+v, want %+v", un, want)
			}
			again, err := parsed.MarshalText()
			if err != nil || !bytes.Equal(again, text) {
				t.Fatalf("re-marshal differs: %v\n%s\n%s", err, again, text)
			}
		})
	}

	// ParseReceipt checks the signature; UnmarshalText does not.
	r, _ := l.Receipt(ctx, 3)
	text, _ := r.MarshalText()
	_, otherV := testKeys(t, testOrigin, "other key")
	if _, err := ledger.ParseReceipt(text, otherV); err == nil {
		t.Fatal("ParseReceipt accepted a checkpoint signed by another key")
	}
}

func receiptsEqual(a, b ledger.Receipt) bool {
	return a.Index == b.Index && a.LeafHash == b.LeafHash && slices.Equal(a.Proof, b.Proof) &&
		a.Checkpoint.Origin == b.Checkpoint.Origin && a.Checkpoint.Size == b.Checkpoint.Size &&
		a.Checkpoint.Root == b.Checkpoint.Root && bytes.Equal(a.Checkpoint.Note, b.Checkpoint.Note) &&
		bytes.Equal(a.Extra, b.Extra)
}

func TestParseReceiptRejects(t *testing.T) {
	ctx := context.Background()
	l, _ := openTemp(t)
	v := testVerifier(t)
	for i := range 4 {
		if _, err := l.Append(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	r, _ := l.Receipt(ctx, 1)
	good, _ := r.MarshalText()
	if _, err := ledger.ParseReceipt(good, v); err != nil {
		t.Fatal(err)
	}
	s := string(good)
	h0 := strings.Split(s, "\n")[2]
	tests := map[string]string{
		"empty":              "",
		"wrong header":       strings.Replace(s, "tlog-proof@v1", "tlog-proof@v2", 1),
		"no index":           strings.Replace(s, "index 1\n", "", 1),
		"leading zero index": strings.Replace(s, "index 1\n", "index 01\n", 1),
		"negative index":     strings.Replace(s, "index 1\n", "index -1\n", 1),
		"index beyond size":  strings.Replace(s, "index 1\n", "index 4\n", 1),
		"short hash":         strings.Replace(s, h0, h0[:40], 1),
		"non-base64 hash":    strings.Replace(s, h0, "!"+h0[1:], 1),
		"no blank line":      strings.Replace(s, "\n\n"+testOrigin, "\n"+testOrigin, 1),
		"no checkpoint":      s[:strings.Index(s, "\n\n")+2],
		"empty extra":        strings.Replace(s, "index 1", "extra \nindex 1", 1),
		"bad extra":          strings.Replace(s, "index 1", "extra %%%\nindex 1", 1),
		"CR line ending":     strings.Replace(s, "index 1\n", "index 1\r\n", 1),
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ledger.ParseReceipt([]byte(text), v); err == nil {
				t.Fatalf("ParseReceipt accepted:\n%s", text)
			}
		})
	}
}

func TestParseCheckpoint(t *testing.T) {
	ctx := context.Background()
	l, _ := openTemp(t)
	if _, err := l.AppendBatch(ctx, [][]byte{[]byte("a"), []byte("b"), []byte("c")}); err != nil {
		t.Fatal(err)
	}
	cp := l.Checkpoint()
	signer, v := testKeys(t, testOrigin, "test")
	_, otherV := testKeys(t, testOrigin, "other key")
	_, witnessV := testKeys(t, "witness.example", "witness")
	witnessS, _ := testKeys(t, "witness.example", "witness")

	sign := func(text string) []byte {
		msg, err := note.Sign(&note.Note{Text: text}, signer)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	root := strings.Split(string(cp.Note), "\n")[2]
	cosigned := func() []byte {
		n, err := note.Open(cp.Note, note.VerifierList(v))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := note.Sign(n, witnessS)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}()
	_ = witnessV

	tests := []struct {
		name     string
		note     []byte
		v        note.Verifier
		wantSize uint64
		wantErr  bool
	}{
		{"valid", cp.Note, v, 3, false},
		{"cosigned by a witness", cosigned, v, 3, false},
		{"extension line", sign(testOrigin + "\n3\n" + root + "\nextension\n"), v, 3, false},
		{"other key", cp.Note, otherV, 0, true},
		{"flipped signature byte", flipSig(cp.Note), v, 0, true},
		{"changed size", bytes.Replace(cp.Note, []byte("\n3\n"), []byte("\n4\n"), 1), v, 0, true},
		{"origin is not the key name", sign("other.origin\n3\n" + root + "\n"), v, 0, true},
		{"leading zero size", sign(testOrigin + "\n03\n" + root + "\n"), v, 0, true},
		{"negative size", sign(testOrigin + "\n-3\n" + root + "\n"), v, 0, true},
		{"size overflows", sign(testOrigin + "\n18446744073709551616\n" + root + "\n"), v, 0, true},
		{"short root", sign(testOrigin + "\n3\n" + root[:40] + "\n"), v, 0, true},
		{"missing root", sign(testOrigin + "\n3\n"), v, 0, true},
		{"empty extension line", sign(testOrigin + "\n3\n" + root + "\n\nx\n"), v, 0, true},
		{"unsigned", []byte(testOrigin + "\n3\n" + root + "\n"), v, 0, true},
		{"empty", nil, v, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ledger.ParseCheckpoint(tc.note, tc.v)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseCheckpoint accepted %q", tc.note)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCheckpoint: %v", err)
			}
			if got.Size != tc.wantSize || got.Origin != testOrigin || got.Root != cp.Root || !bytes.Equal(got.Note, tc.note) {
				t.Fatalf("ParseCheckpoint = %+v", got)
			}
		})
	}

	// Text round trip.
	text, err := cp.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	var un ledger.Checkpoint
	if err := un.UnmarshalText(text); err != nil {
		t.Fatal(err)
	}
	if un.Origin != cp.Origin || un.Size != cp.Size || un.Root != cp.Root || !bytes.Equal(un.Note, cp.Note) {
		t.Fatalf("UnmarshalText = %+v, want %+v", un, cp)
	}
	if errors.Is(func() error { _, err := ledger.ParseCheckpoint(flipSig(cp.Note), v); return err }(), ledger.ErrBadSignature) == false {
		t.Fatal("bad signature error does not wrap ErrBadSignature")
	}
}

// flipSig flips a bit in the signature of a signed note.
func flipSig(msg []byte) []byte {
	out := bytes.Clone(msg)
	i := bytes.LastIndex(out, []byte(" ")) + 10
	if out[i] == 'A' {
		out[i] = 'B'
	} else {
		out[i] = 'A'
	}
	return out
}

func TestKeys(t *testing.T) {
	seed := sha256.Sum256([]byte("keys"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	pub := priv.Public().(ed25519.PublicKey)
	s, err := ledger.NewSigner(testOrigin, priv)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := ledger.VerifierKey(testOrigin, pub)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyHash() != v.KeyHash() || s.Name() != v.Name() {
		t.Fatalf("signer %s/%08x vs verifier %s/%08x", s.Name(), s.KeyHash(), v.Name(), v.KeyHash())
	}
	msg, err := note.Sign(&note.Note{Text: "hello\n"}, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Fatalf("note signed by NewSigner does not verify with the vkey: %v", err)
	}
	for _, bad := range []string{"", "a b", "a+b", "a\nb"} {
		if _, err := ledger.NewSigner(bad, priv); err == nil {
			t.Errorf("NewSigner(%q) succeeded", bad)
		}
		if _, err := ledger.NewVerifier(bad, pub); err == nil {
			t.Errorf("NewVerifier(%q) succeeded", bad)
		}
	}
	if _, err := ledger.NewSigner(testOrigin, priv[:10]); err == nil {
		t.Error("NewSigner accepted a short key")
	}
}

func TestConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	l, path := openTemp(t)
	v := testVerifier(t)
	const (
		writers = 64
		each    = 40
	)
	type acked struct {
		e    ledger.Entry
		data []byte
	}
	results := make([][]acked, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				d := fmt.Appendf(nil, "writer %d entry %d", w, i)
				e, err := l.Append(ctx, d)
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				results[w] = append(results[w], acked{e, d})
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	seen := make(map[uint64][]byte)
	for w, rs := range results {
		for i, a := range rs {
			if _, dup := seen[a.e.Index]; dup {
				t.Fatalf("index %d handed out twice", a.e.Index)
			}
			if i > 0 && a.e.Index <= rs[i-1].e.Index {
				t.Fatalf("writer %d: indexes not increasing: %d then %d", w, rs[i-1].e.Index, a.e.Index)
			}
			if a.e.Size <= a.e.Index {
				t.Fatalf("entry %d acknowledged with checkpoint size %d", a.e.Index, a.e.Size)
			}
			seen[a.e.Index] = a.data
		}
	}
	if l.Size() != writers*each {
		t.Fatalf("Size = %d, want %d", l.Size(), writers*each)
	}
	for i := range uint64(writers * each) {
		d, ok := seen[i]
		if !ok {
			t.Fatalf("index %d never acknowledged: indexes are not consecutive", i)
		}
		r, err := l.Receipt(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		if err := ledger.VerifyReceipt(r, d, v); err != nil {
			t.Fatalf("receipt %d: %v", i, err)
		}
		got, err := l.Read(ctx, i)
		if err != nil || !bytes.Equal(got, d) {
			t.Fatalf("Read %d = %q, %v; want %q", i, got, err, d)
		}
	}
	l.Close()
	if _, err := ledger.Verify(ctx, path, v, nil); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestCloseDrainsAppends(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "l.db")
	l, err := ledger.Open(ctx, path, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		ok   = map[uint64]string{}
		wg   sync.WaitGroup
		errs int
	)
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				d := fmt.Sprintf("w%d-%d", w, i)
				e, err := l.Append(ctx, []byte(d))
				if err != nil {
					if !errors.Is(err, ledger.ErrClosed) {
						t.Errorf("append: %v", err)
					}
					mu.Lock()
					errs++
					mu.Unlock()
					return
				}
				mu.Lock()
				ok[e.Index] = d
				mu.Unlock()
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, err := l.Append(ctx, []byte("late")); !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if _, err := l.Read(ctx, 0); !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	l2 := openPath(t, path)
	if l2.Size() != uint64(len(ok)) {
		t.Fatalf("after reopen Size = %d, but %d appends were acknowledged", l2.Size(), len(ok))
	}
	for i, d := range ok {
		got, err := l2.Read(ctx, i)
		if err != nil || string(got) != d {
			t.Fatalf("Read %d = %q, %v; want %q", i, got, err, d)
		}
	}
}

func TestMetrics(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	path := filepath.Join(t.TempDir(), "l.db")
	for round := range 2 { // reopening with the same registry works after Close
		opts := testOptions(t)
		opts.Registerer = reg
		l, err := ledger.Open(ctx, path, opts)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if _, err := l.AppendBatch(ctx, [][]byte{[]byte("a"), []byte("b")}); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(ctx, []byte("c")); err != nil {
			t.Fatal(err)
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			m := mf.GetMetric()[0]
			switch {
			case m.Counter != nil:
				got[mf.GetName()] = m.Counter.GetValue()
			case m.Gauge != nil:
				got[mf.GetName()] = m.Gauge.GetValue()
			case m.Histogram != nil:
				got[mf.GetName()] = float64(m.Histogram.GetSampleCount())
			}
		}
		want := map[string]float64{
			"nexus_ledger_appended_entries_total":  3,
			"nexus_ledger_commits_total":           2,
			"nexus_ledger_tree_size":               float64(3 * (round + 1)),
			"nexus_ledger_append_duration_seconds": 2,
			"nexus_ledger_commit_batch_entries":    2,
		}
		for name, w := range want {
			if got[name] != w {
				t.Errorf("round %d: %s = %v, want %v", round, name, got[name], w)
			}
		}
		l.Close()
	}
}

func TestTriggersRefuseMutation(t *testing.T) {
	ctx := context.Background()
	l, path := openTemp(t)
	if _, err := l.Append(ctx, []byte("immutable")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, stmt := range []string{
		`UPDATE entries SET data = x'00' WHERE idx = 0`,
		`DELETE FROM entries WHERE idx = 0`,
		`UPDATE checkpoints SET note = x'00' WHERE size = 1`,
		`DELETE FROM checkpoints WHERE size = 1`,
	} {
		if _, err := db.ExecContext(ctx, stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want append-only refusal", stmt, err)
		}
	}
}
