package mailq_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/nexus-core/nexus/mailq"
)

// Example queues a signed message for one IMVU. Run (not started here)
// would then deliver it through the MX hosts its Resolver returns.
func Example() {
	root, _ := os.MkdirTemp("", "mailq-example")
	defer os.RemoveAll(root)
	_, key, _ := ed25519.GenerateKey(rand.Reader)

	q, err := mailq.New(mailq.Config{
		Dir:      func(imvu string) (string, error) { return filepath.Join(root, "imvu", imvu, "mail", "queue"), nil },
		IMVUs:    func() []string { return []string{"42"} },
		Resolver: &net.Resolver{}, // the daemon passes its own resolver
		Keys: func(imvu, domain string) []mailq.Key {
			if domain == "example.com" {
				return []mailq.Key{{Selector: "ed", Signer: key}}
			}
			return nil
		},
		Hostname: "mx.example.com",
	})
	if err != nil {
		panic(err)
	}
	msg := []byte("From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: hi\r\n\r\nHello.\r\n")
	if _, err := q.Enqueue(context.Background(), "42", "alice@example.com", []string{"bob@example.org"}, msg); err != nil {
		panic(err)
	}
	n, _ := q.Pending("42")
	fmt.Println("queued:", n)

	_, err = q.Enqueue(context.Background(), "42", "eve@example.net", []string{"bob@example.org"},
		[]byte("From: <eve@example.net>\r\n\r\nx\r\n"))
	fmt.Println("without keys:", err != nil)
	// Output:
	// queued: 1
	// without keys: true
}
