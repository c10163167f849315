package maildir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func msgText(i int) string {
	return fmt.Sprintf("From: a@example.org\r\nSubject: test %d\r\n\r\nbody %d\r\n", i, i)
}

func TestDeliverListOpen(t *testing.T) {
	root := t.TempDir()
	m, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"tmp", "new", "cur"} {
		fi, err := os.Stat(filepath.Join(root, d))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v %v", d, fi, err)
		}
	}
	var got []Message
	for i := 0; i < 5; i++ {
		msg, err := m.Deliver(strings.NewReader(msgText(i)), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if msg.UID != uint32(i+1) || msg.Size != int64(len(msgText(i))) {
			t.Fatalf("msg %d = %+v", i, msg)
		}
		got = append(got, msg)
	}
	list, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 5 {
		t.Fatalf("list = %d", len(list))
	}
	for i, msg := range list {
		if msg.Key != got[i].Key || msg.UID != got[i].UID || msg.Size != got[i].Size || !msg.Internal.Equal(got[i].Internal) {
			t.Fatalf("list[%d] = %+v want %+v", i, msg, got[i])
		}
		rc, err := m.Open(msg.Key)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != msgText(i) {
			t.Fatalf("content %q", b)
		}
	}
	if _, err := m.Deliver(strings.NewReader(strings.Repeat("x", 100)), 99); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "tmp")); len(ents) != 0 {
		t.Fatalf("tmp not cleaned: %v", ents)
	}
	if _, err := m.Open("../../etc/passwd"); !errors.Is(err, ErrBadKey) {
		t.Fatalf("bad key: %v", err)
	}
}

func TestUIDsStableAcrossStoresAndForeignFiles(t *testing.T) {
	root := t.TempDir()
	m1, _ := NewStore().Open(root)
	a, _ := m1.Deliver(strings.NewReader(msgText(1)), 0)
	b, _ := m1.Deliver(strings.NewReader(msgText(2)), 0)
	// A foreign MDA drops a file straight into new/.
	if err := os.WriteFile(filepath.Join(root, "new", "1700000000.foreign.host"), []byte(msgText(3)), 0o600); err != nil {
		t.Fatal(err)
	}
	s1, err := m1.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	m2, _ := NewStore().Open(root) // "another process"
	s2, err := m2.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s1, s2) {
		t.Fatalf("snapshots differ:\n%+v\n%+v", s1, s2)
	}
	if s2.Messages[0].UID != a.UID || s2.Messages[1].UID != b.UID || s2.Messages[2].UID != 3 || s2.UIDNext != 4 {
		t.Fatalf("uids %+v", s2)
	}
	if s2.Messages[2].Size != int64(len(msgText(3))) {
		t.Fatalf("foreign size %d", s2.Messages[2].Size)
	}
	// Removing the highest UID never lets it be reused.
	if err := m2.Remove(s2.Messages[2].Key); err != nil {
		t.Fatal(err)
	}
	c, _ := m1.Deliver(strings.NewReader(msgText(4)), 0)
	if c.UID != 4 {
		t.Fatalf("uid reuse: %d", c.UID)
	}
}

func TestConcurrentDeliver(t *testing.T) {
	root := t.TempDir()
	stores := []*Store{NewStore(), NewStore(), NewStore()}
	var wg sync.WaitGroup
	const per = 30
	uids := make(chan uint32, per*6)
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			m, err := stores[g%3].Open(root)
			if err != nil {
				t.Error(err)
				return
			}
			for i := 0; i < per; i++ {
				msg, err := m.Deliver(strings.NewReader(msgText(i)), 0)
				if err != nil {
					t.Error(err)
					return
				}
				uids <- msg.UID
				if i%7 == 0 {
					if _, err := m.List(); err != nil {
						t.Error(err)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(uids)
	seen := map[uint32]bool{}
	for u := range uids {
		if seen[u] {
			t.Fatalf("duplicate uid %d", u)
		}
		seen[u] = true
	}
	m, _ := NewStore().Open(root)
	list, _ := m.List()
	if len(list) != per*6 {
		t.Fatalf("list %d", len(list))
	}
	for _, msg := range list {
		if !seen[msg.UID] {
			t.Fatalf("uid %d not handed out", msg.UID)
		}
	}
}

func TestFlagsCopyMove(t *testing.T) {
	root := t.TempDir()
	m, _ := Open(root)
	msg, _ := m.Deliver(strings.NewReader(msgText(1)), 0)
	if err := m.SetFlags(msg.Key, []string{FlagSeen, FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cur", msg.Key+":2,FS")); err != nil {
		t.Fatal(err)
	}
	if err := m.SetFlags(msg.Key, []string{"$Junk"}); !errors.Is(err, ErrUnknownFlag) {
		t.Fatal(err)
	}
	if err := m.CreateFolder("Archive"); err != nil {
		t.Fatal(err)
	}
	if err := m.CreateFolder("Archive"); !errors.Is(err, ErrFolderExists) {
		t.Fatal(err)
	}
	arch, err := m.Folder("Archive")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := m.Copy(msg.Key, arch)
	if err != nil {
		t.Fatal(err)
	}
	if cp.UID != 1 || !reflect.DeepEqual(cp.Flags, []string{FlagFlagged, FlagSeen}) {
		t.Fatalf("copy %+v", cp)
	}
	mv, err := m.Move(msg.Key, arch)
	if err != nil {
		t.Fatal(err)
	}
	if mv.UID != 2 {
		t.Fatalf("move %+v", mv)
	}
	if l, _ := m.List(); len(l) != 0 {
		t.Fatalf("inbox not empty: %v", l)
	}
	back, err := arch.Move(mv.Key, m)
	if err != nil {
		t.Fatal(err)
	}
	if back.UID != 2 { // inbox had UID 1; never reused
		t.Fatalf("back %+v", back)
	}
	size, err := m.Size()
	if err != nil || size != 2*int64(len(msgText(1))) {
		t.Fatalf("size %d %v", size, err)
	}
	if err := m.CreateFolder("Archive.2024"); err != nil {
		t.Fatal(err)
	}
	if err := m.RenameFolder("Archive", "Old"); err != nil {
		t.Fatal(err)
	}
	names, _ := m.Folders()
	if !reflect.DeepEqual(names, []string{"Old", "Old.2024"}) {
		t.Fatalf("folders %v", names)
	}
	if err := m.DeleteFolder("Old"); err != nil {
		t.Fatal(err)
	}
	names, _ = m.Folders()
	if !reflect.DeepEqual(names, []string{"Old.2024"}) {
		t.Fatalf("folders %v", names)
	}
}

func TestFolderNamesCannotEscape(t *testing.T) {
	root := filepath.Join(t.TempDir(), "alice")
	m, _ := Open(root)
	for _, n := range []string{"../bob", "..", ".", "a/b", "a..b", ".hidden", "x.", "", "a\x00b", `a\b`, "*", "inbox"} {
		if err := m.CreateFolder(n); err == nil {
			t.Errorf("CreateFolder(%q) succeeded", n)
		}
		if n != "inbox" {
			if _, err := m.Folder(n); err == nil {
				t.Errorf("Folder(%q) succeeded", n)
			}
		}
	}
	if ents, _ := os.ReadDir(filepath.Dir(root)); len(ents) != 1 {
		t.Fatalf("something escaped: %v", ents)
	}
}

func TestParseInfo(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{"", nil, false},
		{"2,", nil, false},
		{"2,SRF", []string{FlagFlagged, FlagAnswered, FlagSeen}, false},
		{"2,Sab", []string{FlagSeen}, false},
		{"1,xyz", nil, false},
		{"3,S", nil, true},
		{"2,S/", nil, true},
	} {
		got, err := ParseInfo(tc.in)
		if (err != nil) != tc.bad || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseInfo(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func FuzzParseInfo(f *testing.F) {
	for _, s := range []string{"", "2,", "2,FRS", "2,abcT", "1,", "2,SS", "2,\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, info string) {
		flags, err := ParseInfo(info)
		if err != nil {
			return
		}
		out, err := FormatInfo(flags)
		if err != nil {
			t.Fatalf("FormatInfo(%v): %v", flags, err)
		}
		again, err := ParseInfo(out)
		if err != nil || !reflect.DeepEqual(again, flags) {
			t.Fatalf("round trip %q -> %v -> %q -> %v, %v", info, flags, out, again, err)
		}
		if _, extra, _ := parseInfo(info); extra != "" {
			full, err := formatInfo(flags, extra)
			if err != nil {
				t.Fatal(err)
			}
			if f2, e2, err := parseInfo(full); err != nil || !reflect.DeepEqual(f2, flags) || len(e2) != len(extra) {
				t.Fatalf("extra round trip %q: %v %q %v", full, f2, e2, err)
			}
		}
	})
}

// TestDeliverNoUID: a delivery that leaves the UID to the next listing is
// durable at once and gets the next UID when the mailbox is listed.
func TestDeliverNoUID(t *testing.T) {
	root := t.TempDir()
	m, _ := NewStore().Open(root)
	a, _ := m.Deliver(strings.NewReader(msgText(1)), 0)
	b, err := m.DeliverWith(strings.NewReader(msgText(2)), DeliverOptions{NoUID: true})
	if err != nil || b.UID != 0 {
		t.Fatalf("NoUID delivery: %+v %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(root, "new", b.Key)); err != nil {
		t.Fatalf("not in new/: %v", err)
	}
	list, err := NewStore().Open(root)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := list.List()
	if err != nil || len(msgs) != 2 || msgs[0].UID != a.UID || msgs[1].UID != a.UID+1 || msgs[1].Key != b.Key {
		t.Fatalf("listing after a NoUID delivery: %+v %v", msgs, err)
	}
}
