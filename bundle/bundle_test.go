package bundle_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/bundle"
	"github.com/nexus-core/nexus/daemon"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/revenue"
)

// exported runs a daemon, creates imvu042 with some usage, starts its exit and
// returns the bundle bytes and the platform key.
func exported(t *testing.T) ([]byte, ed25519.PrivateKey, *daemon.Node) {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	if err := daemon.Init(ctx, root, daemon.InitOptions{Dev: true}); err != nil {
		t.Fatal(err)
	}
	n, err := daemon.Start(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	c, err := api.Dial("unix:" + n.Dir.Socket())
	if err != nil {
		t.Fatal(err)
	}
	owner, _ := identity.Generate()
	offer, err := c.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	submit := func(key ed25519.PrivateKey, kind string, params any, cosign ...ed25519.PrivateKey) {
		t.Helper()
		a, err := action.New(kind, "imvu042", identity.PublicOf(key), params)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range cosign {
			a.Cosigners = append(a.Cosigners, identity.PublicOf(k))
		}
		s, err := action.Seal(a, key)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range cosign {
			s.Sign(k)
		}
		if _, err := c.Submit(ctx, s); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
	}
	submit(owner, handshake.KindCreate, offer.Handshake("imvu042", identity.PublicOf(owner)))
	meter, err := identity.ReadKeyFile(n.Dir.MeterKey("dns"))
	if err != nil {
		t.Fatal(err)
	}
	submit(meter, handshake.KindUsage, handshake.UsageParams{Events: []revenue.Usage{{IMVU: "imvu042", Resource: "dns_queries", Meter: "dns", Counter: 42, At: time.Now().UTC()}}})
	var buf bytes.Buffer
	if err := c.Export(ctx, owner, "imvu042", &buf, nil); err == nil {
		t.Fatal("exported an IMVU that has not started its exit")
	}
	submit(owner, handshake.KindExit, handshake.ExitParams{})
	if err := c.Export(ctx, meter, "imvu042", &buf, nil); err == nil {
		t.Fatal("a meter exported the IMVU")
	}
	buf.Reset()
	if err := c.Export(ctx, owner, "imvu042", &buf, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mustKey(t, n.Dir.LedgerKey()), n
}

func mustKey(t *testing.T, p string) ed25519.PrivateKey {
	k, err := identity.ReadKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestBundleVerifiesOffline(t *testing.T) {
	raw, _, n := exported(t)
	n.Close() // nothing of the platform is running: the bundle stands alone
	b, err := bundle.Open(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := bundle.Verify(context.Background(), b, bundle.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.IMVU != "imvu042" || len(rep.Domains) != 1 || rep.Domains[0] != "imvu042.world" || rep.Entries < 4 {
		t.Fatalf("report %+v", rep)
	}
	if b.State.Status != handshake.StatusExiting || b.State.Counters["dns_queries/dns"].Value != 42 {
		t.Fatalf("derived state %+v", b.State)
	}
}

// rewrite changes one member of a bundle; with resign, the manifest is
// updated and signed again with the platform key, as a malicious platform
// could.
func rewrite(t *testing.T, raw []byte, name string, edit func([]byte) []byte, resign ed25519.PrivateKey) []byte {
	t.Helper()
	b, err := bundle.Open(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Files[name]; !ok {
		t.Fatalf("no member %s", name)
	}
	b.Files[name] = edit(b.Files[name])
	if resign != nil {
		sum := sha256.Sum256(b.Files[name])
		b.Manifest.Files[name] = hex.EncodeToString(sum[:])
		mb, _ := json.MarshalIndent(b.Manifest, "", "  ")
		sig, _ := identity.Sign(resign, identity.ContextBundle, mb)
		b.Files[bundle.ManifestFile] = mb
		b.Files[bundle.SignatureFile] = []byte(hex.EncodeToString(sig) + "\n")
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, n := range []string{bundle.ManifestFile, bundle.SignatureFile} {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b.Files[n])), Typeflag: tar.TypeReg})
		tw.Write(b.Files[n])
	}
	for n, data := range b.Files {
		if n == bundle.ManifestFile || n == bundle.SignatureFile {
			continue
		}
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	tw.Close()
	return out.Bytes()
}

func TestAlteredBundlesFail(t *testing.T) {
	raw, platform, _ := exported(t)
	flip := func(b []byte) []byte { c := append([]byte(nil), b...); c[len(c)/2] ^= 1; return c }
	grow := func(b []byte) []byte {
		return []byte(strings.Replace(string(b), `"cpu_millicores": 1000`, `"cpu_millicores": 9000`, 1))
	}
	cases := []struct {
		name   string
		member string
		edit   func([]byte) []byte
		resign ed25519.PrivateKey
		want   string
	}{
		{"state byte flipped", bundle.StateFile, flip, nil, "does not match its hash"},
		{"entries byte flipped", bundle.EntriesFile, flip, nil, "does not match its hash"},
		{"manifest byte flipped", bundle.ManifestFile, flip, nil, ""},
		{"transfer byte flipped", bundle.TransferFile, flip, nil, "does not match its hash"},
		{"platform re-signs a grown envelope", bundle.StateFile, grow, platform, "not what the ledger entries derive"},
		{"platform re-signs an edited entry", bundle.EntriesFile, editEntry(`"kind":"usage.record"`, `"kind":"usage.recorded"`), platform, "not in the checkpointed log"},
		{"platform re-signs a dropped entry", bundle.EntriesFile, dropEntry(`"kind":"usage.record"`), platform, "not what the ledger entries derive"},
		{"platform re-signs another owner in the hand-over", bundle.TransferFile, func(b []byte) []byte {
			return []byte(strings.Replace(string(b), `"imvu": "imvu042"`, `"imvu": "imvu043"`, 1))
		}, platform, "hand-over"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := rewrite(t, raw, c.member, c.edit, c.resign)
			b, err := bundle.Open(bytes.NewReader(bad))
			if err == nil {
				_, err = bundle.Verify(context.Background(), b, bundle.Options{})
			}
			if err == nil {
				t.Fatal("an altered bundle verified")
			}
			if c.want != "" && !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want it to say %q", err, c.want)
			}
		})
	}
	// Every single byte of the tar matters.
	for i := 0; i < len(raw); i += len(raw) / 200 {
		bad := append([]byte(nil), raw...)
		bad[i] ^= 0x20
		b, err := bundle.Open(bytes.NewReader(bad))
		if err == nil {
			_, err = bundle.Verify(context.Background(), b, bundle.Options{})
		}
		if err == nil && !bytes.Equal(bad, raw) && !padding(raw, i) {
			t.Fatalf("flipping byte %d of %d went unnoticed", i, len(raw))
		}
	}
}

// padding reports whether byte i of a tar lies in header or block padding the
// format ignores (zero fill after a member's data, the end-of-archive blocks,
// and header fields tar readers do not use).
func padding(raw []byte, i int) bool {
	tr := tar.NewReader(bytes.NewReader(raw))
	off := int64(0)
	for {
		h, err := tr.Next()
		if err == io.EOF || err != nil {
			return true
		}
		_ = h
		start := off + 512
		end := start + h.Size
		if int64(i) >= start && int64(i) < end {
			return false // inside a member's data
		}
		off = start + (h.Size+511)/512*512
		if int64(i) < off && int64(i) >= end {
			return true
		}
		if int64(i) < start {
			return true // a header: mode, time, names of owners are not trusted anyway
		}
	}
}

// editEntry replaces old with new inside the first entry whose data holds old.
func editEntry(old, new string) func([]byte) []byte {
	return mapEntries(func(e *bundle.Entry) bool {
		if strings.Contains(string(e.Data), old) {
			e.Data = []byte(strings.Replace(string(e.Data), old, new, 1))
			old = "\x00never"
		}
		return true
	})
}

// dropEntry removes the entries whose data holds s.
func dropEntry(s string) func([]byte) []byte {
	return mapEntries(func(e *bundle.Entry) bool { return !strings.Contains(string(e.Data), s) })
}

func mapEntries(keep func(*bundle.Entry) bool) func([]byte) []byte {
	return func(b []byte) []byte {
		var out bytes.Buffer
		dec := json.NewDecoder(bytes.NewReader(b))
		enc := json.NewEncoder(&out)
		for dec.More() {
			var e bundle.Entry
			if err := dec.Decode(&e); err != nil {
				panic(err)
			}
			if keep(&e) {
				enc.Encode(e)
			}
		}
		return out.Bytes()
	}
}
