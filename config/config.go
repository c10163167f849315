// Package config reads and writes nexus.toml: listeners, platform constants and
// the defaults offered to new IMVUs. Every field has a sane default, so an empty
// file is a working single-host configuration. It holds no signing keys and no
// state; the only secrets are TSIG keys shared with DNS secondaries, so the file
// is written 0600.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/revenue"
)

// Config is the content of nexus.toml.
type Config struct {
	API      API       `toml:"api"`
	DNS      DNS       `toml:"dns"`
	Resolver Resolver  `toml:"resolver"`
	Mail     Mail      `toml:"mail"`
	Compute  Compute   `toml:"compute"`
	Net      Net       `toml:"net"`
	Platform Platform  `toml:"platform"`
	Defaults Defaults  `toml:"defaults"`
	Capacity Resources `toml:"capacity"`
}

// Resources is an envelope or capacity in the config file.
type Resources = handshake.Resources

// API says where the control API listens.
type API struct {
	Listen string `toml:"listen"` // TCP address on loopback, "" to serve only the socket
	Socket string `toml:"socket"` // unix socket path, relative to the data dir
}

// DNS configures the authoritative server and the secondaries it notifies.
type DNS struct {
	Listen      string      `toml:"listen"`      // UDP and TCP, e.g. "127.0.0.1:53"; "" turns DNS off
	Nameservers []string    `toml:"nameservers"` // NS names of every zone
	Hostmaster  string      `toml:"hostmaster"`  // SOA RNAME
	DNSSEC      bool        `toml:"dnssec"`      // sign every zone online (ECDSA P-256 keys under each IMVU's folder)
	MeterEvery  Duration    `toml:"meter_every"` // how often answered queries become usage events
	Secondaries []Secondary `toml:"secondary"`
}

// Secondary is a DNS server fed by AXFR after NOTIFY, authenticated by TSIG.
type Secondary struct {
	Addr          string `toml:"addr"`
	TSIGName      string `toml:"tsig_name"`
	TSIGSecret    string `toml:"tsig_secret"`
	TSIGAlgorithm string `toml:"tsig_algorithm"`
}

// Resolver configures the recursive resolver IMVU workloads use.
type Resolver struct {
	Listen       string   `toml:"listen"`        // UDP and TCP; "" turns it off
	RootHints    []string `toml:"root_hints"`    // "ip:port" of root servers; empty: the IANA roots
	Forwarders   []string `toml:"forwarders"`    // forward instead of recursing
	TrustAnchors []string `toml:"trust_anchors"` // DS or DNSKEY text; validation on when set
	// Clients maps source prefixes to the IMVU they belong to. Queries from
	// anywhere else are refused: the resolver is never open. (Per-IMVU
	// networks will attribute their own prefixes.)
	Clients map[string]string `toml:"clients"`
}

// Mail configures the mail listeners and the outbound queue.
type Mail struct {
	Hostname      string   `toml:"hostname"`       // EHLO and greeting, DSN sender domain; "" turns mail off (each zone\'s MX is mail.<zone>)
	Address       string   `toml:"address"`        // IP the MX target resolves to in every IMVU's zone
	MX            string   `toml:"mx"`             // SMTP ingress, e.g. "127.0.0.1:25"
	Submission    string   `toml:"submission"`     // STARTTLS submission, e.g. "127.0.0.1:587"
	SubmissionTLS string   `toml:"submission_tls"` // implicit-TLS submission; "" for none
	IMAP          string   `toml:"imap"`           // STARTTLS IMAP
	RemotePort    int      `toml:"remote_port"`    // SMTP port of other mail exchangers (25)
	Cert          string   `toml:"cert"`           // TLS certificate; "" makes a self-signed node certificate
	Key           string   `toml:"key"`
	MeterEvery    Duration `toml:"meter_every"`
	// Retry are the delays after the 1st, 2nd, ... failed delivery attempt;
	// the last repeats. Empty: 1m, 5m, 15m, 1h, 4h.
	Retry []Duration `toml:"retry"`
}

// Compute configures the workload supervisor.
type Compute struct {
	// Enabled runs workloads (needs root, cgroups and runc); off, compute
	// actions are still ledgered but nothing runs on this node.
	Enabled    bool     `toml:"enabled"`
	MeterEvery Duration `toml:"meter_every"`
}

// Net configures the per-IMVU networks.
type Net struct {
	// Enabled builds the networks (needs root); off, network actions are
	// still ledgered but nothing is built on this node.
	Enabled    bool     `toml:"enabled"`
	MeterEvery Duration `toml:"meter_every"`
	// PacketRate is each IMVU's packets-per-second ceiling; 0: none. (The
	// byte ceiling is the envelope's net_bps.)
	PacketRate uint64 `toml:"packet_rate"`
	// Uplink is where public routes without a named egress point leave.
	Uplink *Egress `toml:"uplink"`
	// Egress are the named egress points an IMVU's policy may allow.
	Egress []Egress `toml:"egress"`
}

// Egress is a way out: a network namespace that exists on the host (its
// far side is the operator's), the link the node makes into it, and the
// addresses on both ends.
type Egress struct {
	Name   string `toml:"name"`
	NetNS  string `toml:"netns"`  // e.g. /run/netns/eu
	Link   string `toml:"link"`   // name of the link end inside NetNS
	Local  string `toml:"local"`  // the node's address on the link, e.g. 192.0.2.1/30
	Remote string `toml:"remote"` // the far end's, the next hop, e.g. 192.0.2.2/30
}

// Platform holds the constants written into the genesis entry.
type Platform struct {
	Origin   string    `toml:"origin"`   // the ledger's checkpoint origin line
	TLDs     []string  `toml:"tlds"`     // platform TLDs IMVU names are bound under
	Skew     Duration  `toml:"skew"`     // G02 window
	Period   string    `toml:"period"`   // "month" or a duration like "10s"
	Powers   []string  `toml:"powers"`   // platform powers an IMVU may pre-consent to
	Envelope Resources `toml:"envelope"` // the platform's own workloads run inside this
}

// Defaults are offered to `imvu create` when the creator names none.
type Defaults struct {
	Envelope Resources        `toml:"envelope"`
	Prices   map[string]int64 `toml:"prices"`
}

// Duration reads "5m" and the like.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

const (
	mib = 1 << 20
	gib = 1 << 30
)

// Default is the embedded default: one host, everything on loopback.
func Default() Config {
	sheet := revenue.DefaultPriceSheet()
	prices := make(map[string]int64, len(sheet.Prices))
	for k, v := range sheet.Prices {
		prices[k] = int64(v)
	}
	return Config{
		API: API{Listen: "127.0.0.1:7080", Socket: "nexus.sock"},
		DNS: DNS{Listen: "127.0.0.1:5353", Nameservers: []string{"ns1.nexus.world."}, Hostmaster: "hostmaster.nexus.world.",
			DNSSEC: true, MeterEvery: Duration{10 * time.Second}},
		Mail: Mail{Hostname: "mail.nexus.world", Address: "127.0.0.1", MX: "127.0.0.1:2525", Submission: "127.0.0.1:5587",
			IMAP: "127.0.0.1:1143", RemotePort: 25, MeterEvery: Duration{10 * time.Second}},
		Compute: Compute{Enabled: true, MeterEvery: Duration{10 * time.Second}},
		Net:     Net{Enabled: true, MeterEvery: Duration{10 * time.Second}},
		Platform: Platform{
			Origin: "nexus.local/ledger", TLDs: []string{"world"}, Skew: Duration{5 * time.Minute}, Period: "month",
			Powers:   []string{"mail.rate-cap-on-abuse", "compute.oom-kill-in-envelope", "net.rate-limit-in-envelope"},
			Envelope: Resources{CPUMilli: 500, MemoryBytes: 512 * mib, Pids: 512, DiskBytes: 4 * gib, IOBps: 50 * mib, IOPS: 1000, NetBps: 100 * mib},
		},
		Defaults: Defaults{
			Envelope: Resources{CPUMilli: 1000, MemoryBytes: 1 * gib, Pids: 256, DiskBytes: 10 * gib, IOBps: 50 * mib,
				IOPS: 1000, NetBps: 100 * mib, DNSRecords: 1000, Mailboxes: 50, MailBytes: 5 * gib, MailRate: 120},
			Prices: prices,
		},
		Capacity: Resources{CPUMilli: 16000, MemoryBytes: 20 * gib, Pids: 65536, DiskBytes: 200 * gib, IOBps: 1 * gib,
			IOPS: 100000, NetBps: 10 * gib, DNSRecords: 1 << 20, Mailboxes: 100000, MailBytes: 1 << 40, MailRate: 1 << 20},
	}
}

// Load reads path over the defaults. Unknown keys are an error naming them.
func Load(path string) (Config, error) {
	c := Default()
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return c, fmt.Errorf("config %s: unknown key %q", path, un[0].String())
	}
	return c, c.Check()
}

// Check reports the first invalid setting.
func (c Config) Check() error {
	if c.API.Listen != "" {
		host, _, err := net.SplitHostPort(c.API.Listen)
		if err != nil {
			return fmt.Errorf("api.listen %q: %w", c.API.Listen, err)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("api.listen %q: the control API listens on loopback only", c.API.Listen)
		}
	}
	if c.API.Listen == "" && c.API.Socket == "" {
		return errors.New("api: set listen, socket or both")
	}
	if c.DNS.Listen != "" {
		if _, _, err := net.SplitHostPort(c.DNS.Listen); err != nil {
			return fmt.Errorf("dns.listen %q: %w", c.DNS.Listen, err)
		}
		if len(c.DNS.Nameservers) == 0 {
			return errors.New("dns.nameservers: name at least one")
		}
		if c.DNS.MeterEvery.Duration < time.Second {
			return errors.New("dns.meter_every must be at least 1s")
		}
	}
	if c.Resolver.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Resolver.Listen); err != nil {
			return fmt.Errorf("resolver.listen %q: %w", c.Resolver.Listen, err)
		}
		for p := range c.Resolver.Clients {
			if _, err := netip.ParsePrefix(p); err != nil {
				return fmt.Errorf("resolver.clients %q: %w", p, err)
			}
		}
	}
	if c.Mail.Hostname != "" {
		if net.ParseIP(c.Mail.Address) == nil {
			return fmt.Errorf("mail.address %q: want an IP address", c.Mail.Address)
		}
		if c.Mail.MeterEvery.Duration < time.Second {
			return errors.New("mail.meter_every must be at least 1s")
		}
		for i, d := range c.Mail.Retry {
			if d.Duration < 100*time.Millisecond {
				return fmt.Errorf("mail.retry[%d] %s: want at least 100ms", i, d.Duration)
			}
		}
	}
	if c.Compute.Enabled && c.Compute.MeterEvery.Duration < time.Second {
		return errors.New("compute.meter_every must be at least 1s")
	}
	if c.Net.Enabled && c.Net.MeterEvery.Duration < time.Second {
		return errors.New("net.meter_every must be at least 1s")
	}
	for i, e := range append(c.Net.Egress, derefEgress(c.Net.Uplink)...) {
		if _, err := netip.ParsePrefix(e.Local); err != nil {
			return fmt.Errorf("net egress %d (%s): local %q: want an address with its prefix length", i, e.Name, e.Local)
		}
		if _, err := netip.ParsePrefix(e.Remote); err != nil {
			return fmt.Errorf("net egress %d (%s): remote %q: want an address with its prefix length", i, e.Name, e.Remote)
		}
		if e.Name == "" || e.NetNS == "" || e.Link == "" {
			return fmt.Errorf("net egress %d: name, netns and link are required", i)
		}
	}
	if c.Platform.Skew.Duration <= 0 {
		return errors.New("platform.skew must be positive")
	}
	if _, err := c.Calendar(); err != nil {
		return err
	}
	if err := c.Sheet().Validate(); err != nil {
		return fmt.Errorf("defaults.prices: %w", err)
	}
	return nil
}

// Calendar is the settlement calendar the period setting names.
func (c Config) Calendar() (revenue.Calendar, error) {
	if c.Platform.Period == "month" || c.Platform.Period == "" {
		return revenue.Calendar{}, nil
	}
	d, err := time.ParseDuration(c.Platform.Period)
	if err != nil || d < time.Second {
		return revenue.Calendar{}, fmt.Errorf("platform.period %q: want \"month\" or a duration of at least 1s", c.Platform.Period)
	}
	return revenue.Calendar{Length: d}, nil
}

// Sheet is the default price sheet.
func (c Config) Sheet() revenue.PriceSheet {
	s := revenue.PriceSheet{Version: "default", Prices: map[string]revenue.Amount{}}
	for k, v := range c.Defaults.Prices {
		s.Prices[k] = revenue.Amount(v)
	}
	return s
}

// Encode renders c as TOML.
func (c Config) Encode() ([]byte, error) {
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Write stores c at path, refusing to replace an existing file.
func (c Config) Write(path string) error {
	b, err := c.Encode()
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	// 0600: it may hold TSIG secrets for the secondaries.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write config: %w", err)
	}
	return f.Close()
}

func derefEgress(e *Egress) []Egress {
	if e == nil {
		return nil
	}
	return []Egress{*e}
}
