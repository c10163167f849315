//go:build !unix

package maildir

// lockFile is a no-op where flock is unavailable: only the in-process
// Store lock protects the uidlist there.
func lockFile(path string) (func(), error) { return func() {}, nil }
