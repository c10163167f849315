package imapd

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/nexus-core/nexus/maildir"
)

func TestLoginRefusedBeforeTLS(t *testing.T) {
	e := newEnv(t, false)
	out := rawCommand(t, e.srv.Addr(), "CAPABILITY", "LOGIN alice secret", "AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==")
	joined := strings.Join(out, "\n")
	if !strings.Contains(joined, "LOGINDISABLED") || !strings.Contains(joined, "STARTTLS") {
		t.Fatalf("capability before TLS: %s", joined)
	}
	for _, tag := range []string{"t1 NO [PRIVACYREQUIRED]", "t2 NO [PRIVACYREQUIRED]"} {
		if !strings.Contains(joined, tag) {
			t.Fatalf("want %q in:\n%s", tag, joined)
		}
	}
	if strings.Contains(joined, "t1 OK") || strings.Contains(joined, "t2 OK") {
		t.Fatalf("login accepted in plaintext:\n%s", joined)
	}
}

func TestClientSession(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		name := "starttls"
		if implicit {
			name = "implicit"
		}
		t.Run(name, func(t *testing.T) { testClientSession(t, implicit) })
	}
}

func testClientSession(t *testing.T, implicit bool) {
	e := newEnv(t, implicit)
	inbox := e.mailbox(t, "alice")
	deliver(t, inbox, 3)

	c := e.dial(t, nil)
	if err := c.Login("alice", "wrong").Wait(); err == nil {
		t.Fatal("bad password accepted")
	}
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
	}
	if !reflect.DeepEqual(names, []string{"INBOX", "Archive"}) {
		t.Fatalf("LIST = %v", names)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 3 || sel.UIDNext != 4 || sel.UIDValidity == 0 {
		t.Fatalf("SELECT = %+v", sel)
	}

	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{
		UID: true, Flags: true, Envelope: true, RFC822Size: true, InternalDate: true,
		BodySection: []*imap.FetchItemBodySection{hdr},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 {
		t.Fatalf("fetched %d", len(msgs))
	}
	for i, m := range msgs {
		want := testMsg(i + 1)
		if m.UID != imap.UID(i+1) || m.RFC822Size != int64(len(want)) || m.Envelope.Subject != "hello "+string(rune('1'+i)) {
			t.Fatalf("msg %d: %+v env %+v", i, m, m.Envelope)
		}
		if got := string(m.BodySection[0].Bytes); got != want[:strings.Index(want, "\r\n\r\n")+4] {
			t.Fatalf("header %q", got)
		}
		if len(m.Flags) != 0 {
			t.Fatalf("peek set flags: %v", m.Flags)
		}
	}

	// BODY[] (non-peek) sets \Seen.
	full, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil || string(full[0].BodySection[0].Bytes) != testMsg(1) {
		t.Fatalf("BODY[]: %v %v", full, err)
	}

	// SEARCH
	sd, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "HELLO 2"}}}, nil).Wait()
	if err != nil || !reflect.DeepEqual(sd.AllUIDs(), []imap.UID{2}) {
		t.Fatalf("SEARCH SUBJECT: %v %v", sd, err)
	}
	sd, err = c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "sender3@"}}}, nil).Wait()
	if err != nil || !reflect.DeepEqual(sd.AllUIDs(), []imap.UID{3}) {
		t.Fatalf("SEARCH FROM: %v %v", sd, err)
	}
	sd, err = c.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil || !reflect.DeepEqual(sd.AllUIDs(), []imap.UID{1}) {
		t.Fatalf("SEARCH SEEN: %v %v", sd, err)
	}
	sd, err = c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 2, Stop: 0}}}, Text: []string{"body number"}}, nil).Wait()
	if err != nil || !reflect.DeepEqual(sd.AllUIDs(), []imap.UID{2, 3}) {
		t.Fatalf("SEARCH UID 2:*: %v %v", sd, err)
	}
	sd, err = c.Search(&imap.SearchCriteria{}, nil).Wait()
	if err != nil || !reflect.DeepEqual(sd.AllSeqNums(), []uint32{1, 2, 3}) {
		t.Fatalf("SEARCH ALL: %v %v", sd, err)
	}

	// STORE \Seen
	st, err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen, "$custom"}}, nil).Collect()
	if err != nil || len(st) != 1 || !reflect.DeepEqual(st[0].Flags, []imap.Flag{imap.FlagSeen}) {
		t.Fatalf("STORE: %+v %v", st, err)
	}
	list2, _ := inbox.List()
	if !reflect.DeepEqual(list2[1].Flags, []string{maildir.FlagSeen}) {
		t.Fatalf("on disk flags %v", list2[1].Flags)
	}

	// COPY and MOVE
	cd, err := c.Copy(imap.SeqSetNum(1), "Archive").Wait()
	if err != nil || !reflect.DeepEqual(cd.DestUIDs, imap.UIDSetNum(1)) {
		t.Fatalf("COPY: %+v %v", cd, err)
	}
	md, err := c.Move(imap.SeqSetNum(3), "Archive").Wait()
	if err != nil || !reflect.DeepEqual(md.DestUIDs, imap.UIDSetNum(2)) {
		t.Fatalf("MOVE: %+v %v", md, err)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Nope").Wait(); err == nil {
		t.Fatal("COPY to missing mailbox succeeded")
	}
	stat, err := c.Status("Archive", &imap.StatusOptions{NumMessages: true, UIDNext: true}).Wait()
	if err != nil || *stat.NumMessages != 2 || stat.UIDNext != 3 {
		t.Fatalf("STATUS: %+v %v", stat, err)
	}

	// EXPUNGE
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	exp, err := c.Expunge().Collect()
	if err != nil || !reflect.DeepEqual(exp, []uint32{1}) {
		t.Fatalf("EXPUNGE: %v %v", exp, err)
	}
	if l, _ := inbox.List(); len(l) != 1 || l[0].UID != 2 {
		t.Fatalf("after expunge: %+v", l)
	}

	// APPEND
	body := testMsg(9)
	ac := c.Append("Archive", int64(len(body)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
	ac.Write([]byte(body))
	ac.Close()
	ad, err := ac.Wait()
	if err != nil || ad.UID != 3 {
		t.Fatalf("APPEND: %+v %v", ad, err)
	}

	// RENAME / DELETE
	if err := c.Rename("Archive", "Old", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Old").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("INBOX").Wait(); err == nil {
		t.Fatal("DELETE INBOX succeeded")
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestQuota(t *testing.T) {
	e := newEnv(t, false)
	c := e.login(t, "tiny", nil) // quota 300 bytes
	body := testMsg(1)           // ~170 bytes
	appendMsg := func() error {
		ac := c.Append("INBOX", int64(len(body)), nil)
		ac.Write([]byte(body))
		ac.Close()
		_, err := ac.Wait()
		return err
	}
	if err := appendMsg(); err != nil {
		t.Fatal(err)
	}
	err := appendMsg()
	if err == nil || !strings.Contains(err.Error(), "OVERQUOTA") {
		t.Fatalf("second append: %v", err)
	}
	if l, _ := e.mailbox(t, "tiny").List(); len(l) != 1 {
		t.Fatalf("stored %d", len(l))
	}
}

func TestAccountIsolation(t *testing.T) {
	e := newEnv(t, false)
	bob := e.mailbox(t, "bob")
	deliver(t, bob, 1)
	if err := bob.CreateFolder("Secret"); err != nil {
		t.Fatal(err)
	}
	e.mailbox(t, "alice")
	c := e.login(t, "alice", nil)
	evil := []string{"../bob", "../bob/", "../../bob", "..", ".", "/etc", "INBOX/../../bob", "../bob/.Secret", ".Secret", "..bob", "../bob/cur", "%", "*"}
	for _, name := range evil {
		if _, err := c.Select(name, nil).Wait(); err == nil {
			t.Errorf("SELECT %q succeeded", name)
		}
		if _, err := c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait(); err == nil {
			t.Errorf("STATUS %q succeeded", name)
		}
		body := testMsg(1)
		ac := c.Append(name, int64(len(body)), nil)
		ac.Write([]byte(body))
		ac.Close()
		if _, err := ac.Wait(); err == nil {
			t.Errorf("APPEND %q succeeded", name)
		}
		if err := c.Create(name, nil).Wait(); err == nil {
			t.Errorf("CREATE %q succeeded", name)
		}
		if err := c.Delete(name).Wait(); err == nil {
			t.Errorf("DELETE %q succeeded", name)
		}
		if err := c.Rename("INBOX", name, nil).Wait(); err == nil {
			t.Errorf("RENAME to %q succeeded", name)
		}
	}
	if l, _ := bob.List(); len(l) != 1 {
		t.Fatalf("bob's INBOX changed: %d", len(l))
	}
	if names, _ := bob.Folders(); !reflect.DeepEqual(names, []string{"Secret"}) {
		t.Fatalf("bob's folders changed: %v", names)
	}
	ents, _ := os.ReadDir(e.dir)
	for _, ent := range ents {
		if n := ent.Name(); n != "alice" && n != "bob" {
			t.Fatalf("unexpected entry %q next to accounts", n)
		}
	}
	// Alice's own LIST never shows bob's folders.
	list, _ := c.List("", "*", nil).Collect()
	if len(list) != 1 || list[0].Mailbox != "INBOX" {
		t.Fatalf("alice LIST %+v", list)
	}
}

func TestIdleSeesDeliveryAndExpunge(t *testing.T) {
	e := newEnv(t, false)
	alicePath := e.auth.users["alice"].Path
	deliver(t, e.mailbox(t, "alice"), 1)
	exists := make(chan uint32, 16)
	expunged := make(chan uint32, 16)
	c := e.login(t, "alice", &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
		Expunge: func(seq uint32) { expunged <- seq },
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	// Another goroutine with its own Store, as a separate delivery process would.
	go func() {
		time.Sleep(100 * time.Millisecond)
		m, err := maildir.NewStore().Open(alicePath)
		if err == nil {
			_, err = m.Deliver(strings.NewReader(testMsg(2)), 0)
		}
		if err != nil {
			t.Error(err)
		}
	}()
	select {
	case n := <-exists:
		if n != 2 {
			t.Fatalf("EXISTS %d", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("IDLE did not report the delivery")
	}
	// A second connection expunges message 1.
	c2 := e.login(t, "alice", nil)
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	c2.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	if _, err := c2.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	select {
	case seq := <-expunged:
		if seq != 1 {
			t.Fatalf("EXPUNGE %d", seq)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("IDLE did not report the expunge")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestUIDsStableAcrossRestart(t *testing.T) {
	e := newEnv(t, false)
	inbox := e.mailbox(t, "alice")
	deliver(t, inbox, 5)
	fetchUIDs := func() map[imap.UID]string {
		c := e.login(t, "alice", nil)
		defer c.Close()
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		out := map[imap.UID]string{}
		for _, m := range msgs {
			out[m.UID] = m.Envelope.MessageID
		}
		return out
	}
	before := fetchUIDs()
	// Remove one message so UIDs are not simply 1..n.
	l, _ := inbox.List()
	inbox.Remove(l[1].Key)
	delete(before, imap.UID(l[1].UID))
	e.srv.Close()
	e.start(t)
	after := fetchUIDs()
	if len(before) != 4 || !reflect.DeepEqual(before, after) {
		t.Fatalf("before %v after %v", before, after)
	}
	if _, err := os.Stat(filepath.Join(e.auth.users["alice"].Path, "nexus-uidlist")); err != nil {
		t.Fatal(err)
	}
}

func TestAuthenticatePlainOverTLS(t *testing.T) {
	e := newEnv(t, false)
	e.mailbox(t, "alice")
	c := e.dial(t, nil)
	if err := c.Authenticate(sasl.NewPlainClient("", "alice", "secret")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err == nil {
		t.Fatal("STORE in EXAMINE succeeded")
	}
}
