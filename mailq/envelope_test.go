package mailq

import (
	"reflect"
	"testing"
	"time"
)

func FuzzEnvelope(f *testing.F) {
	good := &envelope{V: 1, ID: "0123456789abcdef0123456789abcdef", IMVU: "imvu-a", From: "alice@example.com",
		Rcpts: []string{"bob@remote.test"}, Failed: []failure{{Rcpt: "x@y.test", Status: "5.1.1", Diag: "smtp; 550 no", Remote: "dns; mx.y.test"}},
		Created: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), Next: time.Date(2030, 1, 1, 0, 1, 0, 0, time.UTC), Attempts: 2, Size: 100}
	b, err := good.marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"v":1,"id":"0123456789abcdef0123456789abcdef","imvu":"i","from":"","rcpts":["a@b"],"created":"2030-01-01T00:00:00Z","next":"0001-01-01T00:00:00Z","attempts":0,"size":0}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"rcpts":["a\r\n@b"]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := parseEnvelope(data)
		if err != nil {
			return
		}
		// Whatever parses is valid and survives a round trip unchanged.
		out, err := e.marshal()
		if err != nil {
			t.Fatalf("parsed envelope does not marshal: %v", err)
		}
		e2, err := parseEnvelope(out)
		if err != nil {
			t.Fatalf("round trip: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalize(e), normalize(e2)) {
			t.Fatalf("round trip changed envelope:\n%+v\n%+v", e, e2)
		}
	})
}

// normalize makes nil and empty slices and time zones compare equal.
func normalize(e *envelope) *envelope {
	c := e.clone()
	if len(c.Rcpts) == 0 {
		c.Rcpts = nil
	}
	if len(c.Failed) == 0 {
		c.Failed = nil
	}
	c.Created = c.Created.UTC().Round(0)
	c.Next = c.Next.UTC().Round(0)
	return c
}

func TestParseEnvelopeRejects(t *testing.T) {
	for _, s := range []string{
		``, `{}`, `{"v":1}`, `[]`,
		`{"v":1,"id":"0123456789abcdef0123456789abcdef","imvu":"i","from":"","rcpts":["a@b"],"created":"2030-01-01T00:00:00Z","next":"2030-01-01T00:00:00Z","attempts":0,"size":0} x`,
		`{"v":1,"id":"../etc/passwd0123456789abcdef0123","imvu":"i","from":"","rcpts":["a@b"],"created":"2030-01-01T00:00:00Z","next":"2030-01-01T00:00:00Z","attempts":0,"size":0}`,
		`{"v":1,"id":"0123456789abcdef0123456789abcdef","imvu":"i","from":"","rcpts":["a@b\r\nRCPT TO:<c@d>"],"created":"2030-01-01T00:00:00Z","next":"2030-01-01T00:00:00Z","attempts":0,"size":0}`,
		`{"v":1,"id":"0123456789abcdef0123456789abcdef","imvu":"i","from":"","rcpts":["a@b"],"created":"2030-01-01T00:00:00Z","next":"2030-01-01T00:00:00Z","attempts":0,"size":0,"extra":1}`,
	} {
		if _, err := parseEnvelope([]byte(s)); err == nil {
			t.Errorf("accepted %q", s)
		}
	}
}
