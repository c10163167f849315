// Package netfab is the network data plane of Nexus: it turns the approved
// network state of the IMVUs (Desired, from the ledger) into kernel objects —
// network namespaces, veth pairs, bridges, addresses, routes, policy rules
// and nftables tables — and keeps the kernel that way.
//
// What it owns, per Plane (every name starts with Options.Prefix):
//   - a router namespace (<prefix>-r) through which all traffic between
//     IMVUs and to egress points passes, with one veth port per IMVU whose
//     address is the first host of the IMVU's prefix (the workloads'
//     gateway), one veth per egress point, policy routing that sends each
//     public workload out of its own egress point, masquerading there, and an
//     inet table that admits only what the classes and grants allow, with the
//     per-IMVU byte and packet ceilings in front;
//   - per IMVU a namespace (<prefix>-i-<imvu>) holding a bridge that joins
//     its workloads and its router port — no L2 is shared between IMVUs —
//     and a bridge-family table that drops any frame a workload sends from a
//     MAC or IPv4 address (or ARP sender) other than its own, and meters
//     bytes in and out per workload class in named counters;
//   - per workload a namespace (<prefix>-w-<imvu>.<workload>,
//     WorkloadNS) with one interface, eth0, on the IMVU's bridge: what a
//     container joins or a VM's qemu runs in;
//   - the veth ends it creates in the egress namespaces, and nothing else
//     there.
//
// Every object carries its approved identity: rules a comment with a hash of
// what they are for, links an alias with a hash of their spec, links and
// routes are compared attribute by attribute. Reconcile reads all of it back
// (and every other nftables table in the namespaces it owns, which is
// deleted: an admin's table can dup, redirect or mirror traffic as well as
// the plane's own), and reverts what was added, changed or removed by hand,
// reporting each as a Drift. Run does the same within milliseconds of the
// netlink or nftables event an edit causes, plus a full read-back every
// Options.Interval.
//
// Counters: the kernel's named counters are read and zeroed in one step and
// added to totals kept in the Plane, so reads neither lose nor double bytes,
// and reverts, which rewrite rules but never the counter objects, leave them
// alone. Totals live in memory: the caller persists what it bills.
//
// What it must never do:
//   - decide policy. It applies exactly the Desired it is given (grants
//     already signed by both owners, classes and ceilings already approved)
//     and refuses an inconsistent one whole; it has no other way in;
//   - let traffic take a path the approved state does not name: no route,
//     rule or table it did not write survives a read-back in a namespace it
//     owns, and removing a grant or an egress flushes the conntrack entries
//     that admitted live flows;
//   - touch anything outside what it owns: other namespaces (the host's
//     included), other prefixes' namespaces, and in egress namespaces
//     anything but its own veth end;
//   - shell out: everything goes through netlink and nftables directly.
//
// The plane is IPv4 only; IPv6 is disabled in every namespace it owns.
package netfab
