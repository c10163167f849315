package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoad(t *testing.T) {
	cases := []struct {
		name, toml, err string
	}{
		{"empty file is the default", "", ""},
		{"short period", "[platform]\nperiod = \"10s\"\n", ""},
		{"unknown key", "[api]\nlisten = \"127.0.0.1:1\"\nforce = true\n", `unknown key "api.force"`},
		{"public listener", "[api]\nlisten = \"0.0.0.0:7080\"\n", "loopback only"},
		{"no listener", "[api]\nlisten = \"\"\nsocket = \"\"\n", "set listen, socket or both"},
		{"bad period", "[platform]\nperiod = \"fortnight\"\n", `platform.period "fortnight"`},
		{"bad skew", "[platform]\nskew = \"-1s\"\n", "skew must be positive"},
		{"bad price", "[defaults.prices]\ncpu_ms = -1\n", "defaults.prices"},
		{"not toml", "[api\n", "config"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "nexus.toml")
			if err := os.WriteFile(path, []byte(c.toml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("Load: %v, want an error containing %q", err, c.err)
			}
		})
	}
}

func TestWriteLoadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nexus.toml")
	c := Default()
	c.Platform.Period = "1m"
	c.API.Listen = "127.0.0.1:9999"
	if err := c.Write(path); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(path); err == nil {
		t.Fatal("Write replaced an existing config")
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cal, err := got.Calendar()
	if err != nil || cal.Length != time.Minute {
		t.Fatalf("calendar %+v, %v", cal, err)
	}
	if got.API.Listen != c.API.Listen || got.Capacity != c.Capacity || got.Defaults.Envelope != c.Defaults.Envelope {
		t.Fatalf("round trip changed the config:\n%+v\n%+v", got, c)
	}
	if got.Sheet().Hash() != c.Sheet().Hash() {
		t.Fatal("round trip changed the default price sheet")
	}
}

func ExampleDefault() {
	c := Default()
	cal, _ := c.Calendar()
	fmt.Println(c.API.Listen, c.Platform.TLDs[0], cal.Of(time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)))
	// Output: 127.0.0.1:7080 world 2026-11
}
