package imapd_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/nexus-core/nexus/imapd"
)

type staticAuth map[string]imapd.Account

func (a staticAuth) Login(_ context.Context, user, pass string) (imapd.Account, error) {
	acct, ok := a[user]
	if !ok || pass != "correct horse" {
		return imapd.Account{}, errors.New("denied")
	}
	return acct, nil
}

func Example() {
	var cert tls.Certificate // load the real certificate here
	srv, err := imapd.New(imapd.Config{
		Addr: "127.0.0.1:0",
		TLS:  &tls.Config{Certificates: []tls.Certificate{cert}},
		Auth: staticAuth{"alice": {Address: "alice@example.org", Path: "/var/mail/alice", Quota: 1 << 30}},
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		panic(err)
	}
	defer srv.Close()
	fmt.Println(srv.Addr() != "")
	// Output: true
}
