package mailq

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/textproto"
	"strings"
	"time"
)

// buildDSN makes the RFC 3464 delivery status notification for the failed
// recipients of e: a multipart/report with a human-readable part, a
// message/delivery-status part and the original header (text/rfc822-headers).
func buildDSN(hostname string, e *envelope, original []byte, now time.Time) []byte {
	boundary := "nexus-dsn-" + newID()
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", "Mail Delivery System <MAILER-DAEMON@"+hostname+">")
	h("To", "<"+e.From+">")
	h("Subject", "Undelivered Mail Returned to Sender")
	h("Date", now.Format(time.RFC1123Z))
	h("Message-ID", "<"+newID()+"@"+hostname+">")
	h("Auto-Submitted", "auto-replied")
	h("MIME-Version", "1.0")
	h("Content-Type", `multipart/report; report-type=delivery-status; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	b.WriteString("This is a MIME-encapsulated message.\r\n\r\n")

	fmt.Fprintf(&b, "--%s\r\n", boundary)
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Description: Notification\r\n\r\n")
	fmt.Fprintf(&b, "This is the mail system at %s.\r\n\r\n", hostname)
	b.WriteString("Your message could not be delivered to the following recipients:\r\n\r\n")
	for _, f := range e.Failed {
		fmt.Fprintf(&b, "<%s>: %s\r\n", f.Rcpt, f.Diag)
	}
	b.WriteString("\r\n")

	fmt.Fprintf(&b, "--%s\r\n", boundary)
	b.WriteString("Content-Type: message/delivery-status\r\n")
	b.WriteString("Content-Description: Delivery report\r\n\r\n")
	h("Reporting-MTA", "dns; "+hostname)
	h("X-Nexus-Queue-ID", e.ID)
	h("Arrival-Date", e.Created.Format(time.RFC1123Z))
	for _, f := range e.Failed {
		b.WriteString("\r\n")
		h("Final-Recipient", "rfc822; "+f.Rcpt)
		h("Action", "failed")
		h("Status", f.Status)
		if f.Remote != "" && f.Remote != "local" {
			h("Remote-MTA", f.Remote)
		}
		diag := f.Diag
		if !strings.Contains(diag, ";") {
			diag = "x-nexus; " + diag
		}
		h("Diagnostic-Code", diag)
	}
	b.WriteString("\r\n")

	fmt.Fprintf(&b, "--%s\r\n", boundary)
	b.WriteString("Content-Type: text/rfc822-headers\r\n")
	b.WriteString("Content-Description: Undelivered message header\r\n\r\n")
	b.Write(headerOf(original))
	fmt.Fprintf(&b, "\r\n--%s--\r\n", boundary)
	return b.Bytes()
}

// headerOf returns the header section of msg (without the blank line).
func headerOf(msg []byte) []byte {
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+2]
	}
	return msg
}

// sendDSN reports e.Failed to the envelope sender: directly if the sender is
// hosted here, otherwise as a new queued message from the null sender,
// signed with the IMVU's keys for Hostname.
func (q *Queue) sendDSN(ctx context.Context, e *envelope, original []byte) error {
	dsn := buildDSN(q.cfg.Hostname, e, original, q.cfg.Now())
	if q.cfg.Local != nil {
		if deliver, ok := q.cfg.Local(ctx, e.From); ok {
			return deliver(dsn)
		}
	}
	_, err := q.enqueue(ctx, e.IMVU, "", []string{e.From}, dsn, true)
	return err
}

// dsnRecipients parses the Final-Recipient fields of a DSN; used by tests
// and kept small.
func dsnRecipients(dsn []byte) []string {
	var out []string
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(dsn)))
	for {
		line, err := r.ReadLine()
		if err != nil {
			return out
		}
		if v, ok := strings.CutPrefix(line, "Final-Recipient: rfc822; "); ok {
			out = append(out, v)
		}
	}
}
