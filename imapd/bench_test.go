package imapd

import (
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// BenchmarkFetchHeaders measures UID FETCH 1:* (BODY.PEEK[HEADER]) over
// loopback TLS on a 10,000-message INBOX delivered with maildir.Deliver.
func BenchmarkFetchHeaders(b *testing.B) {
	const n = 10000
	e := newEnv(b, true)
	inbox := e.mailbox(b, "alice")
	for i := 0; i < n; i++ {
		if _, err := inbox.Deliver(strings.NewReader(testMsg(i)), 0); err != nil {
			b.Fatal(err)
		}
	}
	c := e.login(b, "alice", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	opts := &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Peek: true}}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, opts)
		got := 0
		for cmd.Next() != nil {
			got++
		}
		if err := cmd.Close(); err != nil {
			b.Fatal(err)
		}
		if got != n {
			b.Fatalf("fetched %d", got)
		}
	}
}
