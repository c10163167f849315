// Package revenue owns the money arithmetic of Nexus: pricing metered usage
// against a co-signed price sheet, the billing periods usage is counted in,
// and the settlement of each IMVU's gross for a period into the creator's 55%
// and the platform's 45%.
//
// Money is an [Amount]: an integer count of nanocredits. Every sum and
// product on the money path is checked and fails with [ErrOverflow] instead
// of wrapping; amounts are never negative. The split is exact: the creator
// gets ceil(gross*55/100), the platform gets the rest, so the two always add
// up to the gross.
//
// This package must never use floating point, never wrap on overflow, and
// never do I/O: it is pure arithmetic over values its callers hand it
// (usage events read from the ledger, price sheets the IMVU signed), so that
// anyone holding the same inputs computes the same statement, byte for byte.
// It keeps no mutable package state.
package revenue
