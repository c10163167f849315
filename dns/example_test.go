package dns_test

import (
	"context"
	"fmt"
	"os"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/nexus-core/nexus/dns"
)

func ExampleBuild() {
	c, err := dns.Build(dns.Zone{
		Origin: "imvu042.world",
		IMVU:   "imvu042",
		Serial: 2026112601,
		Records: []dns.Record{
			{Name: "@", Type: "A", TTL: 300, Data: "10.0.0.1"},
			{Name: "@", Type: "MX", Data: "10 mail"},
			{Name: "mail", Type: "A", Data: "10.0.0.2"},
			{Name: "www", Type: "CNAME", Data: "@"},
			{Name: "*.stage", Type: "A", TTL: 60, Data: "10.0.1.1"},
		},
	}, []string{"ns1.nexus.example.", "ns2.nexus.example."}, "hostmaster@imvu042.world")
	if err != nil {
		fmt.Println(err)
		return
	}
	dns.WriteZoneFile(os.Stdout, c)
	// Output:
	// ; zone imvu042.world., IMVU imvu042, serial 2026112601
	// $ORIGIN imvu042.world.
	// $TTL 3600
	// imvu042.world.	3600	IN	SOA	ns1.nexus.example. hostmaster.imvu042.world. 2026112601 3600 600 1209600 300
	// imvu042.world.	300	IN	A	10.0.0.1
	// imvu042.world.	3600	IN	NS	ns1.nexus.example.
	// imvu042.world.	3600	IN	NS	ns2.nexus.example.
	// imvu042.world.	3600	IN	MX	10 mail.imvu042.world.
	// mail.imvu042.world.	3600	IN	A	10.0.0.2
	// *.stage.imvu042.world.	60	IN	A	10.0.1.1
	// www.imvu042.world.	3600	IN	CNAME	imvu042.world.
}

func ExampleBuild_refused() {
	_, err := dns.Build(dns.Zone{Origin: "imvu042.world", Records: []dns.Record{
		{Name: "www", Type: "CNAME", Data: "@"},
		{Name: "www", Type: "A", Data: "10.0.0.5"},
		{Name: "stage.imvu043.world.", Type: "A", Data: "10.0.0.6"},
	}}, []string{"ns1.nexus.example."}, "")
	fmt.Println(err)
	// Output:
	// zone imvu042.world.: records[2]: record stage.imvu043.world. A: name "stage.imvu043.world." is outside the zone imvu042.world.
}

func ExampleServer() {
	c, err := dns.Build(dns.Zone{Origin: "imvu042.world", IMVU: "imvu042", Serial: 1,
		Records: []dns.Record{{Name: "www", Type: "A", Data: "10.0.0.5"}}}, []string{"ns1.nexus.example."}, "")
	if err != nil {
		fmt.Println(err)
		return
	}
	s, err := dns.NewServer(dns.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		fmt.Println(err)
		return
	}
	s.SetZone(c)
	if err := s.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	m := new(mdns.Msg)
	m.SetQuestion("WWW.imvu042.world.", mdns.TypeA)
	r, _, err := (&mdns.Client{Timeout: 2 * time.Second}).Exchange(m, s.Addr())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(mdns.RcodeToString[r.Rcode], r.Authoritative, r.Answer[0])
	m.SetQuestion("www.example.com.", mdns.TypeA)
	r, _, _ = (&mdns.Client{Timeout: 2 * time.Second}).Exchange(m, s.Addr())
	fmt.Println(mdns.RcodeToString[r.Rcode])
	fmt.Println(s.Counts())
	// Output:
	// NOERROR true WWW.imvu042.world.	3600	IN	A	10.0.0.5
	// REFUSED
	// map[imvu042:1]
}
