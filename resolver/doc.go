// Package resolver is the recursive DNS resolver that the Nexus daemon offers
// to the workloads of its IMVUs.
//
// What it owns:
//   - recursion: iterative resolution from the root hints (RFC 1034 5.3.3),
//     following referrals, resolving name server names that come without
//     glue, and chasing CNAME and DNAME records across zones, with bounded
//     referral depth, chain length, upstream queries per client query and
//     time; or forwarding to configured forwarders instead;
//   - resistance to spoofing (RFC 5452): a random 16-bit ID, a fresh UDP
//     socket on a random source port for every upstream query, QNAME case
//     randomisation (0x20) with the case checked on the way back, strict
//     matching of ID, source and question, one outstanding query per
//     (server, name, type), bailiwick checks on every record, TCP when a
//     reply is truncated;
//   - the cache: positive data by TTL, negative answers per RFC 2308 (SOA
//     minimum), both capped, bounded in size with LRU eviction; referral data
//     (NS and glue) is kept apart and only ever used to route queries, never
//     handed to clients;
//   - DNSSEC validation when trust anchors are configured (RFC 4033-4035,
//     5155): the chain of DS and DNSKEY records from the anchor down to the
//     signer, RRSIGs verified with miekg/dns, authenticated denial with NSEC
//     and NSEC3, AD on validated answers and SERVFAIL (with an Extended DNS
//     Error, RFC 8914) on bogus ones;
//   - counting the queries answered for each IMVU (Counts), which the DNS
//     meter reads, and Prometheus metrics.
//
// What it must never do:
//   - answer for the platform's own zones from the network: names in those
//     zones are answered by Config.Local (the local authority) and no query
//     about them ever leaves the process, not even when a CNAME or an NS name
//     leads there;
//   - act as an open resolver: a query from a source that Config.Attribute
//     does not attribute to an IMVU is answered REFUSED, and New refuses a
//     configuration without Attribute;
//   - trust data it could not validate when validation is on: bogus data is
//     not cached and not returned (SERVFAIL; only a client that sets CD gets
//     it, without AD, as RFC 4035 3.2.2 asks), and data learnt only to route
//     queries (referrals, glue, name server addresses) is never returned as
//     an answer.
package resolver
