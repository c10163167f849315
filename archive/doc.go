// Package archive packs a folder tree into a gzip'd tar and unpacks one into a
// folder: the form in which an IMVU's files (a mailbox's Maildir, a
// workload's folder and the upper directory of its overlay) travel in exit
// bundles and snapshots.
//
// [Write] keeps what an overlay upper directory holds: directories, regular
// files, hard links, symlinks, FIFOs, overlayfs whiteouts (0:0 character
// devices), numeric owners, modes, modification times, the opaque-directory
// marker trusted.overlay.opaque and user.* extended attributes. [Extract]
// accepts exactly that and nothing more.
//
// # What it must never do
//
// Extract treats its input as hostile. It never creates, changes or links
// anything outside the target folder: every entry is resolved beneath the
// target with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_XDEV)
// (Linux 5.6), so neither "..", an absolute name, a symlink (from the
// archive or already in the target) nor a mount point leads out. It never
// writes through an existing file: an entry replaces a file or symlink of
// the same name instead. It never makes a device other than a whiteout,
// never sets security.* or other trusted.* attributes, never restores owners
// or set-id bits unless asked to ([Options.Owners]), and never writes more
// file content than [Options.Limit].
//
// Write never follows a symlink. Neither keeps state between calls.
package archive
