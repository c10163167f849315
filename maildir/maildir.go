// Package maildir owns the files of one mailbox stored in the Maildir++
// layout: INBOX lives at the root (tmp/, new/, cur/) and every other folder
// is a ".Name" subdirectory of the root with the same three directories.
//
// The package never decides who may read a mailbox: callers hand it a root
// path they have already bound to an identity. Folder names are validated so
// that no name can address a path outside the root.
//
// Messages are identified by a Key (the Maildir unique name without the
// ":2,FLAGS" info suffix) and by a UID. UIDs are persisted in a uidlist file
// ("nexus-uidlist") in each mailbox directory: a header line with the
// UIDVALIDITY and next UID, followed by "UID KEY" lines. New assignments are
// appended as whole lines and fsynced under an flock; the file is compacted by
// writing a temporary file, fsyncing it and renaming it over the old one. UIDs
// are therefore stable across restarts and are shared between processes.
//
// A Store holds the per-mailbox locks and caches; everything that shares a
// Store shares them. The package holds no mutable package-level state.
package maildir

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

const (
	uidlistName = "nexus-uidlist"
	lockName    = "nexus-uidlist.lock"
	uidlistHead = "nexus-uidlist v1"
	dirPerm     = 0o700
	filePerm    = 0o600
	inboxName   = "INBOX"
)

// Errors returned by this package.
var (
	ErrTooLarge     = errors.New("maildir: message too large")
	ErrNoMessage    = errors.New("maildir: no such message")
	ErrNoFolder     = errors.New("maildir: no such folder")
	ErrFolderExists = errors.New("maildir: folder already exists")
	ErrBadName      = errors.New("maildir: invalid folder name")
	ErrBadKey       = errors.New("maildir: invalid message key")
	ErrInbox        = errors.New("maildir: operation not permitted on INBOX")
)

// Message describes one stored message.
type Message struct {
	Key      string    // unique name, without the info suffix
	UID      uint32    // stable, strictly increasing per mailbox
	Size     int64     // bytes on disk
	Flags    []string  // system flags, see FlagSeen and friends
	Internal time.Time // delivery (IMAP internal) date, second precision
}

// Snapshot is a consistent view of a mailbox.
type Snapshot struct {
	UIDValidity uint32
	UIDNext     uint32
	Messages    []Message // sorted by UID
}

// Store hands out Mailboxes and holds one lock and cache per mailbox
// directory. It is safe for concurrent use. Use one Store per process for the
// best caching; separate Stores (and separate processes) remain correct
// because uidlist updates are also serialised with flock.
type Store struct {
	mu    sync.Mutex
	boxes map[string]*box
	seq   atomic.Uint64
	host  string
	pid   int
}

// NewStore returns an empty Store.
func NewStore() *Store {
	h, _ := os.Hostname()
	if h == "" {
		h = "localhost"
	}
	clean := []byte(h)
	for i, c := range clean {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			clean[i] = '_'
		}
	}
	return &Store{boxes: make(map[string]*box), host: string(clean), pid: os.Getpid()}
}

// Open opens (creating if needed) the mailbox rooted at root using a private
// Store. Prefer Store.Open in long-running programs.
func Open(root string) (*Mailbox, error) { return NewStore().Open(root) }

// Open opens (creating if needed) the Maildir++ mailbox rooted at root.
func (s *Store) Open(root string) (*Mailbox, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if err := makeMaildir(abs); err != nil {
		return nil, err
	}
	return &Mailbox{s: s, top: abs, dir: abs, name: inboxName, b: s.box(abs)}, nil
}

func makeMaildir(dir string) error {
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return err
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.Mkdir(filepath.Join(dir, sub), dirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

func (s *Store) box(dir string) *box {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.boxes[dir]
	if b == nil {
		b = &box{dir: dir}
		s.boxes[dir] = b
	}
	return b
}

func (s *Store) forget(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.boxes, dir)
}

// unique returns a fresh Maildir unique name for a message dated t.
func (s *Store) unique(t time.Time) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s", t.Unix(), t.Nanosecond()/1000, s.pid, s.seq.Add(1), hex.EncodeToString(r[:]), s.host)
}

// Mailbox is one Maildir folder (INBOX or a ".Name" subfolder). It is safe
// for concurrent use.
type Mailbox struct {
	s    *Store
	top  string // account root (INBOX directory)
	dir  string // this folder's directory
	name string
	b    *box
}

// Name returns "INBOX" or the folder name.
func (m *Mailbox) Name() string { return m.name }

// Path returns the directory of this folder.
func (m *Mailbox) Path() string { return m.dir }

// box is the shared per-directory state: uidlist cache and key->file map.
type box struct {
	mu  sync.Mutex
	dir string

	fi       os.FileInfo // uidlist as last read or written; nil if not loaded
	validity uint32
	next     uint32
	uids     map[string]uint32
	entries  int  // entry lines in the file
	torn     bool // file ends in a partial line

	names map[string]string // key -> "new/NAME" or "cur/NAME:2,.."

	newSync groupSync // fsyncs of new/, shared by deliveries in flight
}

// groupSync makes renames into one folder durable with as few fsyncs of the
// folder as there are waves of callers: a caller's rename is covered by any
// fsync that starts after it, so callers arriving while one runs share the
// next. (Deliveries in parallel otherwise queue one fsync each.)
type groupSync struct {
	mu        sync.Mutex
	cond      *sync.Cond
	requested uint64 // tickets handed out
	completed uint64 // every ticket up to this one is durable
	running   bool
	err       error // of the last fsync; reported to the tickets it covered
}

func (g *groupSync) sync(dir string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	g.requested++
	ticket := g.requested
	for g.completed < ticket {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		batch := g.requested
		g.mu.Unlock()
		err := syncDir(dir)
		g.mu.Lock()
		g.running, g.completed, g.err = false, batch, err
		g.cond.Broadcast()
	}
	return g.err
}

// locked runs fn with the in-process and cross-process locks held and the
// uidlist loaded.
func (b *box) locked(fn func() error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	unlock, err := lockFile(filepath.Join(b.dir, lockName))
	if err != nil {
		return err
	}
	defer unlock()
	if err := b.load(); err != nil {
		return err
	}
	return fn()
}

func (b *box) load() error {
	p := filepath.Join(b.dir, uidlistName)
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		b.reset()
		return b.rewrite(nil)
	}
	if err != nil {
		return err
	}
	if b.fi != nil && os.SameFile(fi, b.fi) && fi.Size() == b.fi.Size() && fi.ModTime().Equal(b.fi.ModTime()) {
		return nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	validity, next, uids, entries, torn, ok := parseUIDList(data)
	if !ok {
		// Unreadable header: start a new UID epoch; clients must resync.
		b.reset()
		return b.rewrite(nil)
	}
	b.validity, b.next, b.uids, b.entries, b.torn = validity, next, uids, entries, torn
	b.fi = fi
	return nil
}

func (b *box) reset() {
	v := uint32(time.Now().Unix())
	if v == b.validity {
		v++
	}
	b.validity, b.next, b.uids, b.entries, b.torn = v, 1, map[string]uint32{}, 0, false
}

// parseUIDList parses the uidlist; only complete lines count.
func parseUIDList(data []byte) (validity, next uint32, uids map[string]uint32, entries int, torn, ok bool) {
	end := strings.LastIndexByte(string(data), '\n')
	torn = end != len(data)-1
	if end < 0 {
		return 0, 0, nil, 0, torn, false
	}
	lines := strings.Split(string(data[:end]), "\n")
	f := strings.Fields(lines[0])
	if len(f) != 4 || f[0]+" "+f[1] != uidlistHead {
		return 0, 0, nil, 0, torn, false
	}
	v, err1 := strconv.ParseUint(f[2], 10, 32)
	n, err2 := strconv.ParseUint(f[3], 10, 32)
	if err1 != nil || err2 != nil || v == 0 || n == 0 {
		return 0, 0, nil, 0, torn, false
	}
	validity, next = uint32(v), uint32(n)
	uids = make(map[string]uint32, len(lines))
	for _, l := range lines[1:] {
		sp := strings.IndexByte(l, ' ')
		if sp <= 0 {
			continue
		}
		u, err := strconv.ParseUint(l[:sp], 10, 32)
		key := l[sp+1:]
		if err != nil || u == 0 || !validKey(key) {
			continue
		}
		entries++
		if _, dup := uids[key]; !dup {
			uids[key] = uint32(u)
		}
		if uint32(u) >= next {
			next = uint32(u) + 1
		}
	}
	return validity, next, uids, entries, torn, true
}

// rewrite replaces the uidlist atomically with the entries of keep (all
// known entries when keep is nil).
func (b *box) rewrite(keep map[string]string) error {
	if b.uids == nil {
		b.uids = map[string]uint32{}
	}
	type ent struct {
		uid uint32
		key string
	}
	var ents []ent
	for k, u := range b.uids {
		if keep != nil {
			if _, ok := keep[k]; !ok {
				delete(b.uids, k)
				continue
			}
		}
		ents = append(ents, ent{u, k})
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].uid < ents[j].uid })
	tmp := filepath.Join(b.dir, uidlistName+".tmp."+strconv.Itoa(os.Getpid()))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, filePerm)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "%s %d %d\n", uidlistHead, b.validity, b.next)
	for _, e := range ents {
		fmt.Fprintf(w, "%d %s\n", e.uid, e.key)
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(b.dir, uidlistName))
	}
	if err != nil {
		os.Remove(tmp)
		b.fi = nil
		return err
	}
	if err := syncDir(b.dir); err != nil {
		return err
	}
	b.entries, b.torn = len(ents), false
	b.fi, err = os.Stat(filepath.Join(b.dir, uidlistName))
	return err
}

// assign gives UIDs to keys not yet known and persists them.
func (b *box) assign(keys []string) error {
	var lines []byte
	added := 0
	for _, k := range keys {
		if _, ok := b.uids[k]; ok {
			continue
		}
		b.uids[k] = b.next
		lines = fmt.Appendf(lines, "%d %s\n", b.next, k)
		b.next++
		added++
	}
	if added == 0 {
		return nil
	}
	if b.torn {
		return b.rewrite(nil)
	}
	f, err := os.OpenFile(filepath.Join(b.dir, uidlistName), os.O_WRONLY|os.O_APPEND, filePerm)
	if err != nil {
		b.fi = nil
		return err
	}
	_, err = f.Write(lines)
	if err == nil {
		err = f.Sync()
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = f.Stat()
	}
	f.Close()
	if err != nil {
		b.fi = nil // force a reload; the line may be partial
		return err
	}
	b.fi = fi
	b.entries += added
	return nil
}

// scan reads new/ and cur/, assigns UIDs to unknown files and returns the
// messages sorted by UID. Must be called via locked.
func (b *box) scan() ([]Message, error) {
	names, err := b.readNames()
	if err != nil {
		return nil, err
	}
	// readdir may miss an entry renamed concurrently (a flag change in
	// another process); if a known file vanished, look once more.
	for k := range b.names {
		if _, ok := names[k]; !ok {
			again, err := b.readNames()
			if err != nil {
				return nil, err
			}
			for k, v := range again {
				if _, ok := names[k]; !ok {
					names[k] = v
				}
			}
			break
		}
	}
	var unknown []string
	for k := range names {
		if _, ok := b.uids[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	if err := b.assign(unknown); err != nil {
		return nil, err
	}
	b.names = names
	if stale := b.entries - len(names); b.torn || (stale > 256 && stale > len(names)) {
		if err := b.rewrite(names); err != nil {
			return nil, err
		}
	}
	msgs := make([]Message, 0, len(names))
	for k, rel := range names {
		msg, err := b.describe(k, rel)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // raced with a concurrent rename/removal
			}
			return nil, err
		}
		msgs = append(msgs, msg)
	}
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].UID < msgs[j].UID })
	return msgs, nil
}

// readNames maps keys to "new/NAME" or "cur/NAME". new/ is read first so a
// concurrent new->cur rename is seen in one of the two.
func (b *box) readNames() (map[string]string, error) {
	names := make(map[string]string, len(b.names)+16)
	for _, sub := range [...]string{"new", "cur"} {
		f, err := os.Open(filepath.Join(b.dir, sub))
		if err != nil {
			return nil, err
		}
		ents, err := f.ReadDir(-1)
		f.Close()
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			n := e.Name()
			if e.IsDir() || n == "" || n[0] == '.' {
				continue
			}
			key, _ := splitName(n)
			if !validKey(key) {
				continue
			}
			names[key] = sub + "/" + n // cur/ wins over a stale new/ entry
		}
	}
	return names, nil
}

// UIDValidity returns the mailbox UIDVALIDITY without scanning messages.
func (m *Mailbox) UIDValidity() (uint32, error) {
	var v uint32
	err := m.b.locked(func() error { v = m.b.validity; return nil })
	return v, err
}

func (b *box) describe(key, rel string) (Message, error) {
	_, info := splitName(rel)
	flags, _ := ParseInfo(info)
	msg := Message{Key: key, UID: b.uids[key], Flags: flags}
	size, sok := keySize(key)
	t, tok := keyTime(key)
	if !sok || !tok {
		fi, err := os.Lstat(filepath.Join(b.dir, rel))
		if err != nil {
			return Message{}, err
		}
		if !sok {
			size = fi.Size()
		}
		if !tok {
			t = fi.ModTime().Truncate(time.Second)
		}
	}
	msg.Size, msg.Internal = size, t
	return msg, nil
}

// keySize extracts the Maildir++ ",S=<size>" field.
func keySize(key string) (int64, bool) {
	i := strings.Index(key, ",S=")
	if i < 0 {
		return 0, false
	}
	s := key[i+3:]
	if j := strings.IndexByte(s, ','); j >= 0 {
		s = s[:j]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// keyTime extracts the leading delivery timestamp of a unique name.
func keyTime(key string) (time.Time, bool) {
	i := strings.IndexByte(key, '.')
	if i <= 0 {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(key[:i], 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

func validKey(key string) bool {
	if key == "" || len(key) > 250 || key[0] == '.' {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '/' || c == ':' || c <= ' ' || c == 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Snapshot returns the messages in new/ and cur/ sorted by UID together with
// UIDVALIDITY and UIDNEXT, assigning UIDs to files delivered by other agents.
func (m *Mailbox) Snapshot() (Snapshot, error) {
	var snap Snapshot
	err := m.b.locked(func() error {
		msgs, err := m.b.scan()
		snap = Snapshot{UIDValidity: m.b.validity, UIDNext: m.b.next, Messages: msgs}
		return err
	})
	return snap, err
}

// List returns the messages in new/ and cur/ sorted by UID.
func (m *Mailbox) List() ([]Message, error) {
	s, err := m.Snapshot()
	return s.Messages, err
}

// DeliverOptions tunes DeliverWith.
type DeliverOptions struct {
	Max      int64     // maximum size in bytes; <= 0 means unlimited
	Flags    []string  // initial flags (message goes straight to cur/)
	Internal time.Time // internal date; zero means now
	// NoUID leaves the UID to the next listing of the mailbox, as a mail
	// delivery agent does: the message is durable either way, and deliveries
	// in parallel do not queue for the uidlist lock and its fsync. The
	// returned Message then has UID 0.
	NoUID bool
}

// Deliver stores the message read from r. The data is written to tmp/,
// fsynced, renamed into new/ and the directory is fsynced before Deliver
// returns, so a returned Message is durable. Messages larger than max (when
// max > 0) are refused with ErrTooLarge.
func (m *Mailbox) Deliver(r io.Reader, max int64) (Message, error) {
	return m.DeliverWith(r, DeliverOptions{Max: max})
}

// DeliverWith is Deliver with initial flags and internal date.
func (m *Mailbox) DeliverWith(r io.Reader, o DeliverOptions) (Message, error) {
	info := ""
	if len(o.Flags) > 0 {
		var err error
		if info, err = FormatInfo(o.Flags); err != nil {
			return Message{}, err
		}
	}
	t := o.Internal
	if t.IsZero() {
		t = time.Now()
	}
	uniq := m.s.unique(t)
	tmp := filepath.Join(m.dir, "tmp", uniq)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return Message{}, err
	}
	fail := func(err error) (Message, error) {
		f.Close()
		os.Remove(tmp)
		return Message{}, err
	}
	src := r
	if o.Max > 0 {
		src = io.LimitReader(r, o.Max+1)
	}
	n, err := io.Copy(f, src)
	if err != nil {
		return fail(err)
	}
	if o.Max > 0 && n > o.Max {
		return fail(ErrTooLarge)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return Message{}, err
	}
	sec := time.Unix(t.Unix(), 0)
	_ = os.Chtimes(tmp, sec, sec)
	key := uniq + ",S=" + strconv.FormatInt(n, 10)
	msg := Message{Key: key, Size: n, Internal: sec}
	msg.Flags, _ = ParseInfo(info)
	if err := m.install(tmp, key, info, !o.NoUID, &msg); err != nil {
		os.Remove(tmp)
		return Message{}, err
	}
	return msg, nil
}

// install renames a prepared file into new/ (no flags) or cur/, fsyncs the
// directory and, if asked, assigns a UID.
func (m *Mailbox) install(from, key, info string, uid bool, msg *Message) error {
	rel := "new/" + key
	if info != "" {
		rel = "cur/" + key + ":" + info
	}
	if err := os.Rename(from, filepath.Join(m.dir, rel)); err != nil {
		return err
	}
	sync := func() error { return syncDir(filepath.Join(m.dir, "cur")) }
	if info == "" {
		sync = func() error { return m.b.newSync.sync(filepath.Join(m.dir, "new")) }
	}
	if err := sync(); err != nil {
		return err
	}
	if !uid {
		return nil
	}
	return m.b.locked(func() error {
		if err := m.b.assign([]string{key}); err != nil {
			return err
		}
		if m.b.names != nil {
			m.b.names[key] = rel
		}
		msg.UID = m.b.uids[key]
		return nil
	})
}

// lookup returns the current relative file name of key, rescanning once if
// the cache misses. Caller must hold b.mu and not the flock.
func (m *Mailbox) lookup(key string, rescan bool) (string, error) {
	if !validKey(key) {
		return "", ErrBadKey
	}
	if !rescan {
		if rel, ok := m.b.names[key]; ok {
			return rel, nil
		}
	}
	unlock, err := lockFile(filepath.Join(m.dir, lockName))
	if err != nil {
		return "", err
	}
	defer unlock()
	if err := m.b.load(); err != nil {
		return "", err
	}
	if _, err := m.b.scan(); err != nil {
		return "", err
	}
	if rel, ok := m.b.names[key]; ok {
		return rel, nil
	}
	return "", ErrNoMessage
}

// withFile runs fn on the file of key, retrying after a rescan if the file
// was renamed underneath (e.g. by another process changing flags).
func (m *Mailbox) withFile(key string, fn func(rel string) error) error {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	for attempt := 0; ; attempt++ {
		rel, err := m.lookup(key, attempt > 0)
		if err != nil {
			return err
		}
		err = fn(rel)
		if errors.Is(err, fs.ErrNotExist) && attempt < 3 {
			continue
		}
		return err
	}
}

// Open returns the content of message key.
func (m *Mailbox) Open(key string) (io.ReadCloser, error) {
	var f *os.File
	err := m.withFile(key, func(rel string) error {
		var err error
		f, err = os.Open(filepath.Join(m.dir, rel))
		return err
	})
	return f, err
}

// SetFlags replaces the system flags of message key, moving it from new/ to
// cur/ with a ":2,FLAGS" info suffix. Unknown info letters already on the file
// (such as keyword letters written by other software) are kept.
func (m *Mailbox) SetFlags(key string, flags []string) error {
	for _, f := range flags {
		if !KnownFlag(f) {
			return ErrUnknownFlag
		}
	}
	return m.withFile(key, func(rel string) error {
		_, oldInfo := splitName(rel)
		_, extra, err := parseInfo(oldInfo)
		if err != nil {
			extra = ""
		}
		info, err := formatInfo(flags, extra)
		if err != nil {
			return err
		}
		nrel := "cur/" + key + ":" + info
		if nrel == rel {
			return nil
		}
		if err := os.Rename(filepath.Join(m.dir, rel), filepath.Join(m.dir, nrel)); err != nil {
			return err
		}
		m.b.names[key] = nrel
		return nil
	})
}

// Remove deletes (expunges) message key.
func (m *Mailbox) Remove(key string) error {
	return m.withFile(key, func(rel string) error {
		if err := os.Remove(filepath.Join(m.dir, rel)); err != nil {
			return err
		}
		delete(m.b.names, key)
		return syncDir(filepath.Join(m.dir, filepath.Dir(rel)))
	})
}

// Copy stores a copy of message key in to (which may be m) under a new key
// and UID, keeping its system flags and internal date. The file is hard
// linked when possible.
func (m *Mailbox) Copy(key string, to *Mailbox) (Message, error) {
	var msg Message
	var tmp, info string
	err := m.withFile(key, func(rel string) error {
		src, err := m.b.describe(key, rel)
		if err != nil {
			return err
		}
		info = ""
		if len(src.Flags) > 0 {
			info, _ = FormatInfo(src.Flags)
		}
		uniq := m.s.unique(src.Internal)
		msg = Message{Key: uniq + ",S=" + strconv.FormatInt(src.Size, 10), Size: src.Size, Flags: src.Flags, Internal: src.Internal}
		tmp = filepath.Join(to.dir, "tmp", uniq)
		if err := os.Link(filepath.Join(m.dir, rel), tmp); err == nil {
			return nil
		} else if errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return copyFile(filepath.Join(m.dir, rel), tmp)
	})
	if err != nil {
		return Message{}, err
	}
	if err := to.install(tmp, msg.Key, info, true, &msg); err != nil {
		os.Remove(tmp)
		return Message{}, err
	}
	return msg, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
	}
	return err
}

// Move moves message key into to. The message gets a new key and UID in
// the destination (UIDs are never reused, even when a message moves back).
func (m *Mailbox) Move(key string, to *Mailbox) (Message, error) {
	if to.dir == m.dir {
		return Message{}, errors.New("maildir: move to the same folder")
	}
	var msg Message
	var info, tmp string
	err := m.withFile(key, func(rel string) error {
		src, err := m.b.describe(key, rel)
		if err != nil {
			return err
		}
		info = ""
		if len(src.Flags) > 0 {
			info, _ = FormatInfo(src.Flags)
		}
		uniq := m.s.unique(src.Internal)
		msg = Message{Key: uniq + ",S=" + strconv.FormatInt(src.Size, 10), Size: src.Size, Flags: src.Flags, Internal: src.Internal}
		tmp = filepath.Join(to.dir, "tmp", uniq)
		// Link then unlink keeps the message present in at least one
		// folder at every instant; rename(2) would too but cannot
		// change directories across file systems.
		if err := os.Link(filepath.Join(m.dir, rel), tmp); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if err := copyFile(filepath.Join(m.dir, rel), tmp); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Message{}, err
	}
	if err := to.install(tmp, msg.Key, info, true, &msg); err != nil {
		os.Remove(tmp)
		return Message{}, err
	}
	if err := m.Remove(key); err != nil && !errors.Is(err, ErrNoMessage) {
		return msg, err
	}
	return msg, nil
}

// Size returns the bytes used by the whole account: INBOX and every folder.
func (m *Mailbox) Size() (int64, error) {
	top := &Mailbox{s: m.s, top: m.top, dir: m.top, name: inboxName, b: m.s.box(m.top)}
	names, err := m.Folders()
	if err != nil {
		return 0, err
	}
	boxes := []*Mailbox{top}
	for _, n := range names {
		f, err := m.Folder(n)
		if err != nil {
			continue
		}
		boxes = append(boxes, f)
	}
	var total int64
	for _, b := range boxes {
		msgs, err := b.List()
		if err != nil {
			return 0, err
		}
		for _, msg := range msgs {
			total += msg.Size
		}
	}
	return total, nil
}

// ValidFolderName reports whether name may be used as a folder name. Names
// are UTF-8, use '.' as the hierarchy separator, and may not contain '/',
// '\\', control characters, IMAP wildcards, empty hierarchy levels or
// leading/trailing dots. INBOX (any case) is the root, not a folder.
func ValidFolderName(name string) bool {
	if name == "" || len(name) > 200 || !utf8.ValidString(name) || strings.EqualFold(name, inboxName) {
		return false
	}
	if name[0] == '.' || name[len(name)-1] == '.' || strings.Contains(name, "..") {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' || r == '*' || r == '%' || r == utf8.RuneError {
			return false
		}
	}
	return true
}

func (m *Mailbox) folderDir(name string) (string, error) {
	if !ValidFolderName(name) {
		return "", ErrBadName
	}
	p := filepath.Join(m.top, "."+name)
	if filepath.Dir(p) != m.top { // defence in depth
		return "", ErrBadName
	}
	return p, nil
}

// Folders lists the folder names (without INBOX), sorted.
func (m *Mailbox) Folders() ([]string, error) {
	ents, err := os.ReadDir(m.top)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() || len(n) < 2 || n[0] != '.' || !ValidFolderName(n[1:]) {
			continue
		}
		out = append(out, n[1:])
	}
	return out, nil
}

// Folder opens an existing folder; "INBOX" (any case) is the root.
func (m *Mailbox) Folder(name string) (*Mailbox, error) {
	if strings.EqualFold(name, inboxName) {
		return &Mailbox{s: m.s, top: m.top, dir: m.top, name: inboxName, b: m.s.box(m.top)}, nil
	}
	p, err := m.folderDir(name)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(p)
	if err != nil || !fi.IsDir() {
		return nil, ErrNoFolder
	}
	if err := makeMaildir(p); err != nil {
		return nil, err
	}
	return &Mailbox{s: m.s, top: m.top, dir: p, name: name, b: m.s.box(p)}, nil
}

// CreateFolder creates a folder.
func (m *Mailbox) CreateFolder(name string) error {
	if strings.EqualFold(name, inboxName) {
		return ErrFolderExists
	}
	p, err := m.folderDir(name)
	if err != nil {
		return err
	}
	if err := os.Mkdir(p, dirPerm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ErrFolderExists
		}
		return err
	}
	if err := makeMaildir(p); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p, "maildirfolder"), nil, filePerm); err != nil {
		return err
	}
	return syncDir(m.top)
}

// DeleteFolder removes a folder and its messages. Subfolders are kept.
func (m *Mailbox) DeleteFolder(name string) error {
	if strings.EqualFold(name, inboxName) {
		return ErrInbox
	}
	p, err := m.folderDir(name)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(p); err != nil || !fi.IsDir() {
		return ErrNoFolder
	}
	// Rename first so the folder disappears atomically, then remove.
	trash := filepath.Join(m.top, "tmp", "deleted-"+m.s.unique(time.Now()))
	if err := os.Rename(p, trash); err != nil {
		return err
	}
	m.s.forget(p)
	if err := syncDir(m.top); err != nil {
		return err
	}
	return os.RemoveAll(trash)
}

// RenameFolder renames a folder and its subfolders.
func (m *Mailbox) RenameFolder(oldName, newName string) error {
	if strings.EqualFold(oldName, inboxName) || strings.EqualFold(newName, inboxName) {
		return ErrInbox
	}
	op, err := m.folderDir(oldName)
	if err != nil {
		return err
	}
	np, err := m.folderDir(newName)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(op); err != nil || !fi.IsDir() {
		return ErrNoFolder
	}
	if strings.HasPrefix(newName+".", oldName+".") {
		return ErrBadName // into itself
	}
	names, err := m.Folders()
	if err != nil {
		return err
	}
	type mv struct{ from, to string }
	moves := []mv{{op, np}}
	for _, n := range names {
		if strings.HasPrefix(n, oldName+".") {
			to, err := m.folderDir(newName + n[len(oldName):])
			if err != nil {
				return err
			}
			moves = append(moves, mv{filepath.Join(m.top, "."+n), to})
		}
	}
	for _, mv := range moves {
		if _, err := os.Lstat(mv.to); err == nil {
			return ErrFolderExists
		}
	}
	for _, mv := range moves {
		if err := os.Rename(mv.from, mv.to); err != nil {
			return err
		}
		m.s.forget(mv.from)
	}
	return syncDir(m.top)
}
