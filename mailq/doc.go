// Package mailq is the outbound mail queue of Nexus.
//
// It owns queued messages (one folder per IMVU), delivery attempts, retries,
// bounces and DKIM signing. It never accepts a message it has not made
// durable, never sends as a domain it was not given keys for, and never
// delivers a message twice after the receiving server acknowledged it.
//
// # Durability and duplicates
//
// Enqueue returns only after the signed message and its envelope are
// fsynced and renamed into the IMVU's folder and the folder itself is
// fsynced. When a server accepts a transaction (250 after DATA), the
// accepted recipients are removed from the envelope on disk before any
// further transaction for the message starts, so a restart never resends to
// them.
//
// One window remains, inherent to SMTP: if the process crashes (or the
// connection drops) after the remote server has accepted the message but
// before the envelope update reaches the disk — or the reply to the final
// "." is lost — the recipients are still pending and are delivered again
// after the restart. The same applies to local deliveries and to DSNs
// (a crash between sending a DSN and recording it sends a second DSN).
//
// # Bounces
//
// 5xx replies and messages older than MaxAge produce a delivery status
// notification (RFC 3464) from MAILER-DAEMON@Hostname to the envelope
// sender, one per delivery attempt that had permanent failures, listing
// every recipient that failed in it. It is delivered through Local when the
// sender is hosted here and queued (null sender, signed with the IMVU's keys
// for Hostname) otherwise. Messages with the null sender, and DSNs, are never
// bounced.
package mailq
