package maildir_test

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nexus-core/nexus/maildir"
)

func Example() {
	root, _ := os.MkdirTemp("", "maildir-example")
	defer os.RemoveAll(root)

	store := maildir.NewStore()
	inbox, err := store.Open(root)
	if err != nil {
		panic(err)
	}
	msg, err := inbox.Deliver(strings.NewReader("Subject: hi\r\n\r\nhello\r\n"), 1<<20)
	if err != nil {
		panic(err)
	}
	_ = inbox.SetFlags(msg.Key, []string{maildir.FlagSeen})

	list, _ := inbox.List()
	rc, _ := inbox.Open(list[0].Key)
	body, _ := io.ReadAll(rc)
	rc.Close()
	fmt.Println(list[0].UID, list[0].Flags, len(body))
	// Output: 1 [\Seen] 22
}

func ExampleParseInfo() {
	flags, _ := maildir.ParseInfo("2,FRS")
	fmt.Println(flags)
	// Output: [\Flagged \Answered \Seen]
}
