// Package dns is the authoritative DNS server of Nexus.
//
// What it owns:
//   - answering, over UDP and TCP, for the zones it is given (SetZone), with
//     the behaviour of a plain authoritative server: exact, wildcard (RFC 4592)
//     and CNAME answers inside a zone, NXDOMAIN and NODATA with the SOA,
//     referrals at delegations, EDNS(0) and truncation with TCP fallback;
//   - zone files: reading (ParseZoneFile) and writing (WriteZoneFile) RFC 1035
//     master files, and checking single records (CheckRecord);
//   - online DNSSEC signing when a zone carries a key: DNSKEY at the apex,
//     RRSIGs made on the fly and cached, and authenticated denial with compact
//     "black lies" NSEC records (RFC 9824); DS gives the owner the record to
//     hand to the parent;
//   - feeding standard secondaries (Knot, NSD, BIND): NOTIFY when a zone's
//     serial changes and AXFR to secondaries that sign with their TSIG key;
//   - counting answered queries per IMVU (Counts) for the DNS meter.
//
// What it must never do:
//   - change zone data itself. A zone changes only when the caller (the
//     engine's applier, after the 17 gates) builds a new Compiled and hands it
//     over with SetZone or RemoveZone; this package serves what it is given and
//     has no other way in. Inbound NOTIFY and UPDATE messages change nothing
//     (UPDATE is answered NOTIMP).
//   - answer for names it is not given: a query outside every zone it serves
//     gets REFUSED;
//   - recurse: it is authoritative only; RA is never set and nothing is looked
//     up elsewhere.
//
// The hot path parses the query header and question by hand, looks the
// lowercased name up in a precomputed index and copies a response that was
// packed when the zone was built (or, for signed and unusual answers, when it
// was first asked for), so a query costs no allocation. On Linux each CPU gets
// its own UDP socket (SO_REUSEPORT) read and written in batches
// (recvmmsg/sendmmsg); a port the kernel picks (":0") gets one plain socket,
// since SO_REUSEPORT would let another server of the same user share it.
package dns
