// Command dnsbench serves one zone file with the Nexus DNS server, for
// benchmarks (bench/dns.sh runs dnsperf against it and against knotd) and for
// trying the server by hand with dig, kdig or delv.
//
//	dnsbench -zone imvu042.world.zone -origin imvu042.world -addr 127.0.0.1:5300 [-signed] [-anchor FILE]
//
// It loads the file with ParseZoneFile and Build, prints "ready ADDR" once
// serving, and stops on SIGINT or SIGTERM, printing the per-IMVU counts.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexus-core/nexus/dns"
)

func main() {
	zoneFile := flag.String("zone", "", "zone file (RFC 1035)")
	origin := flag.String("origin", "", "zone origin")
	addr := flag.String("addr", "127.0.0.1:0", "listen address (UDP and TCP)")
	signed := flag.Bool("signed", false, "sign online with a fresh P-256 key")
	anchor := flag.String("anchor", "", "write the DNSKEY (a trust anchor for delv/kdig) to this file")
	ns := flag.String("ns", "ns1", "nameservers, comma-separated")
	serial := flag.Uint("serial", 1, "SOA serial")
	sockets := flag.Int("sockets", 0, "UDP sockets (0: one per CPU)")
	metrics := flag.Bool("metrics", true, "count Prometheus metrics (as the daemon does)")
	verbose := flag.Bool("v", false, "log to stderr")
	flag.Parse()
	if err := run(*zoneFile, *origin, *addr, *signed, *anchor, strings.Split(*ns, ","), uint32(*serial), *sockets, *metrics, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1)
	}
}

func run(zoneFile, origin, addr string, signed bool, anchor string, ns []string, serial uint32, sockets int, metrics, verbose bool) error {
	if zoneFile == "" || origin == "" {
		return fmt.Errorf("-zone and -origin are required")
	}
	f, err := os.Open(zoneFile)
	if err != nil {
		return err
	}
	recs, err := dns.ParseZoneFile(origin, f)
	f.Close()
	if err != nil {
		return err
	}
	z := dns.Zone{Origin: origin, IMVU: "bench", Serial: serial, Records: recs}
	if signed {
		if z.Key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return err
		}
	}
	c, err := dns.Build(z, ns, "")
	if err != nil {
		return err
	}
	if anchor != "" && c.Signed() {
		if err := os.WriteFile(anchor, []byte(c.DNSKEY().String()+"\n"), 0o644); err != nil {
			return err
		}
	}
	cfg := dns.Config{Addr: addr, UDPSockets: sockets}
	if verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if metrics {
		cfg.Registerer = prometheus.NewRegistry()
	}
	s, err := dns.NewServer(cfg)
	if err != nil {
		return err
	}
	s.SetZone(c)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := s.Start(ctx); err != nil {
		return err
	}
	fmt.Printf("ready %s records=%d signed=%v\n", s.Addr(), c.Len(), c.Signed())
	<-ctx.Done()
	err = s.Close()
	fmt.Printf("answered %v\n", s.Counts())
	return err
}
