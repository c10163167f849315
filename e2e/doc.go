// Package e2e holds the hostile-actor suites of Nexus Core, run against a real
// `nexus serve` process.
//
// TestMain builds the nexus binary once; every suite then makes its own data
// directory with `nexus init`, starts `nexus serve` on it as a child process and
// attacks it through the same doors a user or an operator has: signed actions and
// queries over the daemon's unix socket (api.Client), the nexus CLI, and, for the
// crash and tamper suites, SIGKILL and the files on disk. Every hostile case
// asserts three things: the attempt failed (with the expected gate), nothing
// changed (the IMVU's and the platform's state), and the ledger holds the denial
// naming the gate (or, for unauthenticated junk, a G01 summary entry).
//
// The package has no non-test code; run it with `go test ./e2e/`.
package e2e
