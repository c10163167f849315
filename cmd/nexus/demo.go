package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	mdns "github.com/miekg/dns"
	"github.com/spf13/cobra"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/compute"
	"github.com/nexus-core/nexus/compute/vm"
	"github.com/nexus-core/nexus/daemon"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/mailbox"
	"github.com/nexus-core/nexus/netfab"
	"github.com/nexus-core/nexus/registry"
	"github.com/nexus-core/nexus/revenue"
)

func cmdDemo(e *env) *cobra.Command {
	var keep bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "Start a daemon on a temporary data dir, create an IMVU, show the gates, a 55/45 settlement and ledger verify",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(ctxOf(cmd), e.out, keep)
		},
	}
	c.Flags().BoolVar(&keep, "keep", false, "keep the temporary data dir")
	return c
}

// demo is the state of one demo run.
type demo struct {
	w      io.Writer
	dir    datadir.Dir
	client *api.Client
	admin  ed25519.PrivateKey
	owner  ed25519.PrivateKey
}

func (d *demo) step(format string, args ...any) { fmt.Fprintf(d.w, "\n== "+format+"\n", args...) }
func (d *demo) say(format string, args ...any) {
	s := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	fmt.Fprintf(d.w, "   %s\n", strings.ReplaceAll(s, "\n", "\n   "))
}

func runDemo(ctx context.Context, w io.Writer, keep bool) error {
	root, err := os.MkdirTemp("", "nexus-demo-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(root)
	}
	d := &demo{w: w}
	d.step("nexus init --data %s --dev --period 3s", root)
	if err := daemon.Init(ctx, root, daemon.InitOptions{Dev: true, Period: "3s"}); err != nil {
		return err
	}
	if d.dir, err = datadir.Open(root); err != nil {
		return err
	}
	d.say("platform keys, the first admin, four meters and the genesis entry are in place")

	d.step("nexus serve --data %s (its own process)", root)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	srv := exec.CommandContext(ctx, self, "serve", "--data", root, "--log-level", "warn")
	srv.Stderr = os.Stderr
	stdout, err := srv.StdoutPipe()
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	defer func() {
		srv.Process.Signal(os.Interrupt)
		srv.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && lines.Text() != "ready" {
		d.say("%s", lines.Text())
	}
	go io.Copy(io.Discard, stdout)
	if d.client, err = api.Dial("unix:" + d.dir.Socket()); err != nil {
		return err
	}
	if d.admin, err = identity.ReadKeyFile(d.dir.AdminKey()); err != nil {
		return err
	}
	st, err := d.client.Status(ctx)
	if err != nil {
		return err
	}
	d.say("ledger: %d entries, root %s...", st.Ledger.Size, st.Ledger.Root[:16])

	if err := d.create(ctx, root); err != nil {
		return err
	}
	if err := d.dns(ctx, st); err != nil {
		return err
	}
	if err := d.mail(ctx, st); err != nil {
		return err
	}
	if err := d.compute(ctx); err != nil {
		return err
	}
	if err := d.hostile(ctx); err != nil {
		return err
	}
	if err := d.revenue(ctx); err != nil {
		return err
	}

	d.step("nexus ledger verify --data %s (offline, no daemon trust)", root)
	out, err := exec.CommandContext(ctx, self, "ledger", "verify", "--data", root).CombinedOutput()
	d.say("%s", strings.TrimSpace(string(out)))
	if err != nil {
		return fmt.Errorf("ledger verify: %w", err)
	}
	if err := d.exit(ctx, self, root); err != nil {
		return err
	}
	d.step("done")
	if keep {
		d.say("data dir kept at %s", root)
	}
	return nil
}

func (d *demo) submit(ctx context.Context, actor ed25519.PrivateKey, kind, scope string, params any, cosign ...ed25519.PrivateKey) (*handshake.Result, error) {
	a, err := action.New(kind, scope, identity.PublicOf(actor), params)
	if err != nil {
		return nil, err
	}
	for _, k := range cosign {
		a.Cosigners = append(a.Cosigners, identity.PublicOf(k))
	}
	sa, err := action.Seal(a, actor)
	if err != nil {
		return nil, err
	}
	for _, k := range cosign {
		if err := sa.Sign(k); err != nil {
			return nil, err
		}
	}
	return d.client.Submit(ctx, sa)
}

func (d *demo) create(ctx context.Context, root string) error {
	keyFile := filepath.Join(root, "creator.key")
	d.step("nexus key new --out creator.key (on the creator's side; the daemon never sees it)")
	k, err := identity.Generate()
	if err != nil {
		return err
	}
	if err := identity.WriteKeyFile(keyFile, k); err != nil {
		return err
	}
	d.owner = k
	d.say("creator key %s", identity.PublicOf(k))

	d.step("nexus imvu create imvu042 --owner-key creator.key")
	offer, err := d.client.Offer(ctx)
	if err != nil {
		return err
	}
	h := offer.Handshake("imvu042", identity.PublicOf(k))
	res, err := d.submit(ctx, k, handshake.KindCreate, "imvu042", h)
	if err != nil {
		return err
	}
	d.say("handshake signed by the creator, countersigned by the platform: ledger index %d", res.Index)
	if _, err := d.submit(ctx, k, netfab.KindCreate, "imvu042", netfab.CreateParams{}); err != nil {
		return err
	}
	if offer.MailAddress != "" {
		if _, err := d.submit(ctx, k, mailbox.KindMX, "imvu042", mailbox.MXParams{Address: offer.MailAddress}); err != nil {
			return err
		}
	}
	d.say("envelope: %d millicores, %d MiB, %d pids; split %d/%d; gate set %d", h.Envelope.CPUMilli, h.Envelope.MemoryBytes>>20, h.Envelope.Pids, h.Split[0], h.Split[1], h.GateSet)
	d.say("receipt (inclusion proof + signed checkpoint) for tree size %d", res.Receipt.Checkpoint.Size)
	return nil
}

// expectDenied prints a denial, and fails the demo if the action went through.
func (d *demo) expectDenied(what string, res *handshake.Result, err error) error {
	if den, ok := api.IsDenied(err); ok {
		d.say("%-46s -> denied by %s: %s (%s)", what, den.Gate, den.Reason, where(den))
		return nil
	}
	if err != nil {
		d.say("%-46s -> rejected: %v", what, err)
		return nil
	}
	return fmt.Errorf("%s was accepted at index %d: the gates failed", what, res.Index)
}

func (d *demo) hostile(ctx context.Context) error {
	d.step("hostile actions: every one is denied and the denial is ledgered")
	var sum api.Summary
	if err := d.client.Query(ctx, d.admin, api.QueryIMVU, "imvu042", nil, &sum); err != nil {
		return err
	}
	shrunk := sum.Envelope
	shrunk.MemoryBytes /= 2
	res, err := d.submit(ctx, d.admin, handshake.KindResize, "imvu042", handshake.EnvelopeParams{Envelope: shrunk})
	if err := d.expectDenied("admin shrinks imvu042's envelope alone", res, err); err != nil {
		return err
	}
	// The creator, already holding an identity, tries to bend its next
	// handshake: each denial is ledgered on its own.
	other := d.owner
	offer, err := d.client.Offer(ctx)
	if err != nil {
		return err
	}
	h := offer.Handshake("imvu043", identity.PublicOf(other))
	h.Split = [2]int{60, 40}
	res, err = d.submit(ctx, other, handshake.KindCreate, "imvu043", h)
	if err := d.expectDenied("creator claims a 60/40 split for imvu043", res, err); err != nil {
		return err
	}
	var big handshake.Resources
	big.CPUMilli = 1 << 40
	h = offer.Handshake("imvu044", identity.PublicOf(other))
	h.Envelope.CPUMilli = big.CPUMilli
	res, err = d.submit(ctx, other, handshake.KindCreate, "imvu044", h)
	if err := d.expectDenied("imvu044 with an envelope past capacity", res, err); err != nil {
		return err
	}
	meter, err := identity.ReadKeyFile(d.dir.MeterKey("compute"))
	if err != nil {
		return err
	}
	ev := revenue.Usage{IMVU: "imvu042", Resource: "cpu_ms", Meter: "dns", Counter: 10, At: time.Now().UTC()}
	res, err = d.submit(ctx, meter, handshake.KindUsage, "imvu042", handshake.UsageParams{Events: []revenue.Usage{ev}})
	return d.expectDenied("compute meter reports as the dns meter", res, err)
}

func (d *demo) revenue(ctx context.Context) error {
	d.step("metered usage from the platform's meters, priced by the co-signed sheet")
	cal := revenue.Calendar{Length: 3 * time.Second}
	// Start at the beginning of a fresh period so the whole run lands in one.
	time.Sleep(time.Until(cal.Next(cal.Of(time.Now())).Start) + 100*time.Millisecond)
	period := cal.Of(time.Now())
	usage := []struct {
		meter, resource string
		counter         uint64
	}{
		{"compute", "cpu_ms", 12_345}, {"compute", "mem_mib_s", 51_200}, {"dns", "dns_queries", 8_017},
		{"mail", "mail_messages", 42}, {"mail", "mail_bytes", 1_337_000}, {"net", "net_bytes", 987_654_321},
	}
	for _, u := range usage {
		k, err := identity.ReadKeyFile(d.dir.MeterKey(u.meter))
		if err != nil {
			return err
		}
		ev := revenue.Usage{IMVU: "imvu042", Resource: u.resource, Meter: u.meter, Counter: u.counter, At: time.Now().UTC()}
		res, err := d.submit(ctx, k, handshake.KindUsage, "imvu042", handshake.UsageParams{Events: []revenue.Usage{ev}})
		if err != nil {
			return fmt.Errorf("usage %s: %w", u.resource, err)
		}
		d.say("%-8s meter: %-14s counter %-11d ledger index %d", u.meter, u.resource, u.counter, res.Index)
	}
	k, _ := identity.ReadKeyFile(d.dir.MeterKey("compute"))
	ev := revenue.Usage{IMVU: "imvu042", Resource: "cpu_ms", Meter: "compute", Counter: 100, At: time.Now().UTC()}
	res, err := d.submit(ctx, k, handshake.KindUsage, "imvu042", handshake.UsageParams{Events: []revenue.Usage{ev}})
	if err := d.expectDenied("compute meter lowers its cpu_ms counter", res, err); err != nil {
		return err
	}

	time.Sleep(time.Until(period.End) + 100*time.Millisecond)
	d.step("nexus revenue statement imvu042 --period %s", period)
	var ans api.StatementAnswer
	if err := d.client.Query(ctx, d.owner, api.QueryStatement, "imvu042", api.StatementParams{Period: period.String()}, &ans); err != nil {
		return err
	}
	var buf strings.Builder
	printStatement(&buf, ans)
	d.say("%s", strings.ReplaceAll(strings.TrimRight(buf.String(), "\n"), "\n", "\n   "))

	cheat := handshake.SettleParams{Period: ans.Period, First: ans.First, Last: ans.Last, Sheet: ans.SheetHashHex,
		Gross: ans.Gross, Creator: ans.Gross / 2, Platform: ans.Gross - ans.Gross/2}
	res, err = d.submit(ctx, d.admin, handshake.KindSettle, "imvu042", cheat)
	if err := d.expectDenied("admin settles at 50/50", res, err); err != nil {
		return err
	}
	d.step("nexus revenue settle imvu042 --period %s", period)
	fair := cheat
	fair.Creator, fair.Platform = ans.Creator, ans.Platform
	res, err = d.submit(ctx, d.admin, handshake.KindSettle, "imvu042", fair)
	if err != nil {
		return err
	}
	d.say("settled at ledger index %d: creator %d + platform %d = gross %d", res.Index, fair.Creator, fair.Platform, fair.Gross)
	if fair.Creator+fair.Platform != fair.Gross {
		return errors.New("settlement does not add up")
	}
	res, err = d.submit(ctx, d.admin, handshake.KindSettle, "imvu042", fair)
	return d.expectDenied("admin settles the same period twice", res, err)
}

// dns shows the IMVU's domain served from the ledger: a record set through the
// engine answered by the daemon's authoritative server, signed.
func (d *demo) dns(ctx context.Context, st api.Status) error {
	var addr string
	for _, l := range st.Listeners {
		if l.Name == "dns" && l.Network == "udp" {
			addr = l.Address
		}
	}
	if addr == "" {
		return errors.New("the daemon serves no DNS")
	}
	d.step("nexus dns set imvu042.world stage A 10.0.0.5 --key creator.key")
	res, err := d.submit(ctx, d.owner, registry.KindSet, "imvu042", registry.SetParams{Zone: "imvu042.world", Name: "stage", Type: "A", Data: []string{"10.0.0.5"}})
	if err != nil {
		return err
	}
	d.say("ledger index %d; the zone is re-served from the derived state", res.Index)
	d.step("dig @%s +dnssec stage.imvu042.world A", addr)
	m := new(mdns.Msg)
	m.SetQuestion("stage.imvu042.world.", mdns.TypeA)
	m.SetEdns0(1232, true)
	r, err := mdns.ExchangeContext(ctx, m, addr)
	if err != nil {
		return fmt.Errorf("query the authoritative server: %w", err)
	}
	for _, rr := range r.Answer {
		d.say("%s", rr.String())
	}
	if len(r.Answer) == 0 {
		return fmt.Errorf("stage.imvu042.world: %s, no answer", mdns.RcodeToString[r.Rcode])
	}
	res, err = d.submit(ctx, d.admin, registry.KindSet, "imvu042", registry.SetParams{Zone: "imvu042.world", Name: "stage", Type: "A", Data: []string{"6.6.6.6"}})
	return d.expectDenied("admin repoints stage.imvu042.world", res, err)
}

// exit shows the one-command exit: the bundle, its offline check, the
// acknowledgement.
func (d *demo) exit(ctx context.Context, self, root string) error {
	keyFile := filepath.Join(root, "creator.key")
	bundleFile := filepath.Join(root, "imvu042.tar")
	d.step("nexus imvu exit imvu042 --out imvu042.tar --key creator.key")
	out, err := exec.CommandContext(ctx, self, "imvu", "exit", "imvu042", "--out", bundleFile, "--key", keyFile, "--data", root).CombinedOutput()
	d.say("%s", strings.TrimSpace(string(out)))
	if err != nil {
		return fmt.Errorf("exit: %w", err)
	}
	var sum api.Summary
	if err := d.client.Query(ctx, d.owner, api.QueryIMVU, "imvu042", nil, &sum); err != nil {
		return err
	}
	env := sum.Envelope
	env.CPUMilli += 100
	res, err := d.submit(ctx, d.admin, handshake.KindResize, "imvu042", handshake.EnvelopeParams{Envelope: env}, d.owner)
	if err := d.expectDenied("admin grows the exiting IMVU, even cosigned", res, err); err != nil {
		return err
	}
	d.step("nexus bundle verify imvu042.tar (offline: proofs, signatures, replay)")
	out, err = exec.CommandContext(ctx, self, "bundle", "verify", bundleFile).CombinedOutput()
	d.say("%s", strings.TrimSpace(string(out)))
	if err != nil {
		return fmt.Errorf("bundle verify: %w", err)
	}
	d.step("nexus imvu ack-exit imvu042 --bundle imvu042.tar --key creator.key")
	out, err = exec.CommandContext(ctx, self, "imvu", "ack-exit", "imvu042", "--bundle", bundleFile, "--key", keyFile, "--data", root).CombinedOutput()
	d.say("%s", strings.TrimSpace(string(out)))
	if err != nil {
		return fmt.Errorf("ack-exit: %w", err)
	}
	// The workloads stop, and their files, cgroups and network go.
	gone := filepath.Join(root, "imvu", "imvu042", "compute")
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(gone); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("imvu042's workloads are still there a minute after the acknowledgement")
		}
	}
	d.say("imvu042's workloads stopped and their files, cgroups and network removed; its data left with its owner")
	return nil
}

// mail shows the IMVU's business mail: a message submitted over STARTTLS with
// AUTH, DKIM-signed, read back over IMAP; and a forged sender refused.
func (d *demo) mail(ctx context.Context, st api.Status) error {
	addrOf := func(name string) string {
		for _, l := range st.Listeners {
			if l.Name == name {
				return l.Address
			}
		}
		return ""
	}
	sub, imapAddr := addrOf("submission"), addrOf("imap")
	if sub == "" || imapAddr == "" {
		return errors.New("the daemon serves no mail")
	}
	salt := func() []byte { b := make([]byte, 16); rand.Read(b); return b }
	d.step("nexus mail add creator@imvu042.world; nexus mail add team@imvu042.world")
	if _, err := d.submit(ctx, d.owner, mailbox.KindAdd, "imvu042", mailbox.AddParams{Address: "creator@imvu042.world", Identity: identity.PublicOf(d.owner), Password: mailbox.Hash("demo-creator", salt())}); err != nil {
		return err
	}
	if _, err := d.submit(ctx, d.owner, mailbox.KindAdd, "imvu042", mailbox.AddParams{Address: "team@imvu042.world", Identity: identity.PublicOf(d.owner), Password: mailbox.Hash("demo-team", salt())}); err != nil {
		return err
	}
	d.say("argon2id hashes made on the creator's side; MX, SPF, DKIM and DMARC are in the zone")
	d.step("swaks --server %s --tls --auth PLAIN (as creator@imvu042.world) --to team@imvu042.world", sub)
	tlsc := &tls.Config{InsecureSkipVerify: true} // the node's self-signed certificate
	c, err := smtp.DialStartTLS(sub, tlsc)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "creator@imvu042.world", "demo-creator")); err != nil {
		return err
	}
	msg := "From: creator@imvu042.world\r\nTo: team@imvu042.world\r\nSubject: first light\r\n\r\nhello from the demo\r\n"
	if err := c.SendMail("creator@imvu042.world", []string{"team@imvu042.world"}, strings.NewReader(msg)); err != nil {
		return err
	}
	d.say("250: queued durably, DKIM-signed (Ed25519 and RSA-2048)")
	forged := "From: ceo@imvu043.world\r\nTo: team@imvu042.world\r\nSubject: wire money\r\n\r\n!\r\n"
	if err := c.SendMail("ceo@imvu043.world", []string{"team@imvu042.world"}, strings.NewReader(forged)); err != nil {
		d.say("%-46s -> refused: %v", "creator sends as ceo@imvu043.world", err)
	} else {
		return errors.New("a forged sender was accepted")
	}
	d.step("an IMAP client reads team@imvu042.world over STARTTLS")
	var subject string
	var dkimCount int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if subject, dkimCount, err = readFirst(imapAddr, tlsc, "team@imvu042.world", "demo-team"); err == nil && subject != "" {
			break
		}
	}
	if subject == "" {
		return fmt.Errorf("the message did not arrive: %v", err)
	}
	d.say("INBOX: %q, %d DKIM signatures", subject, dkimCount)
	return nil
}

func readFirst(addr string, tlsc *tls.Config, user, pass string) (string, int, error) {
	c, err := imapclient.DialStartTLS(addr, &imapclient.Options{TLSConfig: tlsc})
	if err != nil {
		return "", 0, err
	}
	defer c.Close()
	if err := c.Login(user, pass).Wait(); err != nil {
		return "", 0, err
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages == 0 {
		return "", 0, err
	}
	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, BodySection: []*imap.FetchItemBodySection{hdr}}).Collect()
	if err != nil || len(msgs) == 0 {
		return "", 0, err
	}
	n := 0
	for _, b := range msgs[0].BodySection {
		n += strings.Count(string(b.Bytes), "DKIM-Signature:")
	}
	return msgs[0].Envelope.Subject, n, nil
}

// compute runs a container and a VM inside imvu042's envelope, on its own
// network, and shows an over-envelope run denied.
func (d *demo) compute(ctx context.Context) error {
	d.step("nexus compute run imvu042 web --cpu 250m --memory 64Mi -- httpd -f -p 8080")
	if _, err := d.submit(ctx, d.owner, compute.KindRun, "imvu042", compute.RunParams{Name: "web", CPUMilli: 250, MemoryBytes: 64 << 20,
		Args: []string{"httpd", "-f", "-p", "8080", "-h", "/etc"}}); err != nil {
		return err
	}
	web, err := d.waitWorkload(ctx, "web", func(s compute.Status) bool { return s.State == "running" })
	if err != nil {
		return err
	}
	d.say("runc container, pid %d on the host, in imvu042's envelope cgroup (cpu %dm, memory %d MiB, pids %d)", web.Pid, web.CPUMilli, web.Memory>>20, web.Pids)
	d.step("nexus compute exec imvu042 web -- sh -c 'hostname; ps; ip -4 -o addr' (ledgered, then run)")
	a, err := action.New(compute.KindExec, "imvu042", identity.PublicOf(d.owner), compute.ExecParams{Name: "web", Args: []string{"sh", "-c", "hostname; ps -o pid,comm; ip -4 -o addr | cut -d' ' -f2,7"}})
	if err != nil {
		return err
	}
	sa, err := action.Seal(a, d.owner)
	if err != nil {
		return err
	}
	ex, err := d.client.Exec(ctx, sa)
	if err != nil {
		return err
	}
	d.say("ledger index %d, exit %d:\n   %s", ex.Index, ex.Exit, strings.ReplaceAll(strings.TrimSpace(string(ex.Output)), "\n", "\n   "))

	d.step("nexus net show imvu042")
	var ns daemon.NetShow
	if err := d.client.Query(ctx, d.owner, daemon.QueryNetShow, "imvu042", struct{}{}, &ns); err != nil {
		return err
	}
	d.say("network %s (gateway %s), ceiling %d MiB/s; no path to any other IMVU without a grant both owners sign", ns.Prefix, ns.Gateway, ns.RateBps>>20)
	for _, w := range ns.Workloads {
		d.say("%-6s %-12s %s", w.Name, w.Addr, w.Class)
	}

	d.step("nexus compute run imvu042 vm1 --kind vm --cpu 750m --memory 128Mi -- uname -sr")
	if _, err := d.submit(ctx, d.owner, compute.KindRun, "imvu042", compute.RunParams{Name: "vm1", Kind: compute.VM, CPUMilli: 750, MemoryBytes: 128 << 20,
		Args: []string{"uname", "-sr"}}); err != nil {
		return err
	}
	start := time.Now()
	if _, err := d.waitWorkload(ctx, "vm1", func(s compute.Status) bool { return s.State == "exited" }); err != nil {
		return err
	}
	var logs compute.Logs
	if err := d.client.Query(ctx, d.owner, compute.QueryLogs, "imvu042", compute.LogsParams{Name: "vm1"}, &logs); err != nil {
		return err
	}
	var console []string
	for _, l := range strings.Split(logs.Log, "\n") {
		if strings.HasPrefix(l, "NEXUS-VM") || strings.HasPrefix(l, "Linux") {
			console = append(console, strings.TrimSpace(l))
		}
	}
	d.say("qemu (%s) booted, ran and powered off in %s; its serial console:\n   %s", vmAccel(), time.Since(start).Round(100*time.Millisecond), strings.Join(console, "\n   "))
	res, err := d.submit(ctx, d.owner, compute.KindRun, "imvu042", compute.RunParams{Name: "greedy", CPUMilli: 500, Args: []string{"true"}})
	return d.expectDenied("imvu042 runs past its CPU envelope", res, err)
}

func (d *demo) waitWorkload(ctx context.Context, name string, ok func(compute.Status) bool) (compute.Status, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var ps []compute.Status
		if err := d.client.Query(ctx, d.owner, compute.QueryPs, "imvu042", struct{}{}, &ps); err != nil {
			return compute.Status{}, err
		}
		for _, s := range ps {
			if s.Name == name && ok(s) {
				return s, nil
			}
			if s.Name == name && s.Error != "" {
				return s, fmt.Errorf("workload %s: %s", name, s.Error)
			}
		}
		if time.Now().After(deadline) {
			return compute.Status{}, fmt.Errorf("workload %s did not get there: %+v", name, ps)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func vmAccel() string {
	if a, err := vm.Accel(); err == nil {
		return a.Name + ": " + a.Reason
	}
	return "unknown accelerator"
}
