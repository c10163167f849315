package imapd

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/nexus-core/nexus/maildir"
)

const (
	delim        = '.'
	pollInterval = 250 * time.Millisecond
	loginTimeout = 15 * time.Second
)

var systemFlags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft, imap.FlagForwarded}

type session struct {
	srv  *Server
	conn *imapserver.Conn
	acct *Account
	root *maildir.Mailbox
	sel  *selected
}

type selected struct {
	mb       *maildir.Mailbox
	readOnly bool
	validity uint32
	msgs     []*smsg // index+1 == sequence number
	notify   chan struct{}
	unsub    func()
}

type smsg struct {
	uid      uint32
	key      string
	size     int64
	flags    []string
	internal time.Time
	gone     bool // removed on disk, EXPUNGE not yet sent
}

func newSmsg(m maildir.Message) *smsg {
	return &smsg{uid: m.UID, key: m.Key, size: m.Size, flags: m.Flags, internal: m.Internal}
}

func imapErr(code imap.ResponseCode, text string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
}

var (
	errNoMailbox = imapErr(imap.ResponseCodeNonExistent, "No such mailbox")
	errReadOnly  = imapErr(imap.ResponseCodeCannot, "Mailbox is read-only")
	errInternal  = imapErr(imap.ResponseCodeServerBug, "Internal error")
)

func (s *session) internal(op string, err error) error {
	s.srv.log.Error("imapd", "op", op, "account", s.address(), "err", err)
	return errInternal
}

func (s *session) address() string {
	if s.acct == nil {
		return ""
	}
	return s.acct.Address
}

func (s *session) Close() error {
	s.Unselect()
	s.srv.met.conns.Dec()
	return nil
}

func (s *session) Login(username, password string) error {
	ctx, cancel := context.WithTimeout(s.srv.ctx, loginTimeout)
	defer cancel()
	acct, err := s.srv.cfg.Auth.Login(ctx, username, password)
	if err != nil || acct.Path == "" {
		s.srv.met.logins.WithLabelValues("failure").Inc()
		s.srv.log.Info("imapd login failed", "remote", s.conn.NetConn().RemoteAddr().String())
		return imapserver.ErrAuthFailed
	}
	root, err := s.srv.store.Open(acct.Path)
	if err != nil {
		s.srv.met.logins.WithLabelValues("error").Inc()
		return s.internal("open", err)
	}
	s.srv.met.logins.WithLabelValues("success").Inc()
	s.acct, s.root = &acct, root
	return nil
}

// mailbox resolves a client mailbox name below the account root only.
func (s *session) mailbox(name string) (*maildir.Mailbox, error) {
	mb, err := s.root.Folder(name)
	if err != nil {
		if errors.Is(err, maildir.ErrNoFolder) || errors.Is(err, maildir.ErrBadName) {
			return nil, imapErr(imap.ResponseCodeTryCreate, "No such mailbox")
		}
		return nil, s.internal("folder", err)
	}
	return mb, nil
}

func (s *session) Select(name string, opts *imap.SelectOptions) (*imap.SelectData, error) {
	s.Unselect()
	mb, err := s.mailbox(name)
	if err != nil {
		if e, ok := err.(*imap.Error); ok && e.Code == imap.ResponseCodeTryCreate {
			return nil, errNoMailbox
		}
		return nil, err
	}
	snap, err := mb.Snapshot()
	if err != nil {
		return nil, s.internal("select", err)
	}
	sel := &selected{mb: mb, readOnly: opts != nil && opts.ReadOnly, validity: snap.UIDValidity}
	for _, m := range snap.Messages {
		sel.msgs = append(sel.msgs, newSmsg(m))
	}
	sel.notify, sel.unsub = s.srv.hub.subscribe(mb.Path())
	s.sel = sel
	data := &imap.SelectData{
		Flags:          systemFlags,
		PermanentFlags: systemFlags,
		NumMessages:    uint32(len(sel.msgs)),
		UIDNext:        imap.UID(snap.UIDNext),
		UIDValidity:    snap.UIDValidity,
	}
	if sel.readOnly {
		data.PermanentFlags = []imap.Flag{}
	}
	for i, m := range sel.msgs {
		if !hasFlag(m.flags, maildir.FlagSeen) {
			data.FirstUnseenSeqNum = uint32(i + 1)
			break
		}
	}
	return data, nil
}

func (s *session) Unselect() error {
	if s.sel != nil {
		s.sel.unsub()
		s.sel = nil
	}
	return nil
}

func (s *session) Create(name string, _ *imap.CreateOptions) error {
	name = strings.TrimSuffix(name, string(delim))
	switch err := s.root.CreateFolder(name); {
	case err == nil:
		return nil
	case errors.Is(err, maildir.ErrFolderExists):
		return imapErr(imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, maildir.ErrBadName):
		return imapErr(imap.ResponseCodeCannot, "Invalid mailbox name")
	default:
		return s.internal("create", err)
	}
}

func (s *session) Delete(name string) error {
	switch err := s.root.DeleteFolder(name); {
	case err == nil:
		return nil
	case errors.Is(err, maildir.ErrInbox):
		return imapErr(imap.ResponseCodeCannot, "INBOX cannot be deleted")
	case errors.Is(err, maildir.ErrNoFolder), errors.Is(err, maildir.ErrBadName):
		return errNoMailbox
	default:
		return s.internal("delete", err)
	}
}

func (s *session) Rename(oldName, newName string, _ *imap.RenameOptions) error {
	switch err := s.root.RenameFolder(oldName, strings.TrimSuffix(newName, string(delim))); {
	case err == nil:
		return nil
	case errors.Is(err, maildir.ErrInbox):
		return imapErr(imap.ResponseCodeCannot, "Renaming INBOX is not supported")
	case errors.Is(err, maildir.ErrNoFolder):
		return errNoMailbox
	case errors.Is(err, maildir.ErrFolderExists):
		return imapErr(imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, maildir.ErrBadName):
		return imapErr(imap.ResponseCodeCannot, "Invalid mailbox name")
	default:
		return s.internal("rename", err)
	}
}

// Every mailbox is treated as subscribed.
func (s *session) Subscribe(string) error   { return nil }
func (s *session) Unsubscribe(string) error { return nil }

func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, opts *imap.ListOptions) error {
	if len(patterns) == 0 || (len(patterns) == 1 && patterns[0] == "") {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	folders, err := s.root.Folders()
	if err != nil {
		return s.internal("list", err)
	}
	names := append([]string{"INBOX"}, folders...)
	for _, name := range names {
		match := false
		for _, p := range patterns {
			if imapserver.MatchList(name, delim, ref, p) {
				match = true
				break
			}
		}
		if !match {
			continue
		}
		data := &imap.ListData{Delim: delim, Mailbox: name}
		children := false
		for _, other := range folders {
			if strings.HasPrefix(other, name+string(delim)) {
				children = true
				break
			}
		}
		if children {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if opts != nil && (opts.SelectSubscribed || opts.ReturnSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if opts != nil && opts.ReturnStatus != nil {
			st, err := s.Status(name, opts.ReturnStatus)
			if err != nil {
				return err
			}
			data.Status = st
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) Status(name string, opts *imap.StatusOptions) (*imap.StatusData, error) {
	mb, err := s.mailbox(name)
	if err != nil {
		return nil, errNoMailbox
	}
	snap, err := mb.Snapshot()
	if err != nil {
		return nil, s.internal("status", err)
	}
	data := &imap.StatusData{Mailbox: name}
	var unseen, deleted uint32
	var size int64
	for _, m := range snap.Messages {
		if !hasFlag(m.Flags, maildir.FlagSeen) {
			unseen++
		}
		if hasFlag(m.Flags, maildir.FlagDeleted) {
			deleted++
		}
		size += m.Size
	}
	n := uint32(len(snap.Messages))
	if opts.NumMessages {
		data.NumMessages = &n
	}
	if opts.UIDNext {
		data.UIDNext = imap.UID(snap.UIDNext)
	}
	if opts.UIDValidity {
		data.UIDValidity = snap.UIDValidity
	}
	if opts.NumUnseen {
		data.NumUnseen = &unseen
	}
	if opts.NumDeleted {
		data.NumDeleted = &deleted
	}
	if opts.Size {
		data.Size = &size
	}
	if opts.AppendLimit {
		l := uint32(MaxMessageSize)
		data.AppendLimit = &l
	}
	if opts.NumRecent {
		var zero uint32
		data.NumRecent = &zero
	}
	return data, nil
}

func (s *session) AppendLimit() uint32 { return MaxMessageSize }

func (s *session) Append(name string, r imap.LiteralReader, opts *imap.AppendOptions) (*imap.AppendData, error) {
	mb, err := s.mailbox(name)
	if err != nil {
		s.srv.met.appends.WithLabelValues("nomailbox").Inc()
		return nil, err
	}
	if err := s.checkQuota(r.Size()); err != nil {
		s.srv.met.appends.WithLabelValues("overquota").Inc()
		return nil, err
	}
	msg, err := mb.DeliverWith(r, maildir.DeliverOptions{Max: MaxMessageSize, Flags: storable(opts.Flags), Internal: opts.Time})
	if err != nil {
		if errors.Is(err, maildir.ErrTooLarge) {
			s.srv.met.appends.WithLabelValues("toobig").Inc()
			return nil, imapErr(imap.ResponseCodeTooBig, "Message too large")
		}
		s.srv.met.appends.WithLabelValues("error").Inc()
		return nil, s.internal("append", err)
	}
	s.srv.met.appends.WithLabelValues("ok").Inc()
	s.srv.hub.notify(mb.Path())
	v, err := mb.UIDValidity()
	if err != nil {
		return nil, s.internal("append", err)
	}
	return &imap.AppendData{UID: imap.UID(msg.UID), UIDValidity: v}, nil
}

// checkQuota refuses adding n bytes when the account would exceed its quota.
func (s *session) checkQuota(n int64) error {
	if s.acct.Fits != nil {
		switch err := s.acct.Fits(n); {
		case errors.Is(err, ErrOverQuota):
			return imapErr(imap.ResponseCodeOverQuota, "Mailbox quota exceeded")
		case err != nil:
			return s.internal("quota", err)
		}
		return nil
	}
	if s.acct.Quota <= 0 {
		return nil
	}
	used, err := s.root.Size()
	if err != nil {
		return s.internal("quota", err)
	}
	if used+n > s.acct.Quota {
		return imapErr(imap.ResponseCodeOverQuota, "Mailbox quota exceeded")
	}
	return nil
}

func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

// Poll reports changes made by other sessions or processes.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return nil
	}
	return s.sync(w, allowExpunge)
}

func (s *session) sync(w *imapserver.UpdateWriter, allowExpunge bool) error {
	sel := s.sel
	snap, err := sel.mb.Snapshot()
	if err != nil {
		return s.internal("poll", err)
	}
	cur := make(map[uint32]maildir.Message, len(snap.Messages))
	for _, m := range snap.Messages {
		cur[m.UID] = m
	}
	if allowExpunge {
		for i := len(sel.msgs) - 1; i >= 0; i-- {
			m := sel.msgs[i]
			if _, ok := cur[m.uid]; ok && !m.gone {
				continue
			}
			if err := w.WriteExpunge(uint32(i + 1)); err != nil {
				return err
			}
			sel.msgs = append(sel.msgs[:i], sel.msgs[i+1:]...)
		}
	}
	var maxUID uint32
	for i, m := range sel.msgs {
		maxUID = max(maxUID, m.uid)
		c, ok := cur[m.uid]
		if !ok {
			m.gone = true
			continue
		}
		if !sameFlags(c.Flags, m.flags) && !m.gone {
			m.flags = c.Flags
			if err := w.WriteMessageFlags(uint32(i+1), imap.UID(m.uid), imapFlags(m.flags)); err != nil {
				return err
			}
		}
	}
	added := false
	for _, m := range snap.Messages {
		if m.UID > maxUID {
			sel.msgs = append(sel.msgs, newSmsg(m))
			added = true
		}
	}
	if added {
		return w.WriteNumMessages(uint32(len(sel.msgs)))
	}
	return nil
}

func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.sel == nil {
		<-stop
		return nil
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if err := s.sync(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-s.sel.notify:
		case <-t.C:
		}
	}
}

// resolve returns the indexes of sel.msgs addressed by set.
func (sel *selected) resolve(set imap.NumSet) []int {
	n := len(sel.msgs)
	var out []int
	switch set := set.(type) {
	case imap.SeqSet:
		hit := make([]bool, n)
		for _, r := range set {
			a, b := r.Start, r.Stop
			if a == 0 {
				a = uint32(n)
			}
			if b == 0 {
				b = uint32(n)
			}
			if a > b {
				a, b = b, a
			}
			for i := a; i <= b && i <= uint32(n); i++ {
				if i > 0 {
					hit[i-1] = true
				}
			}
		}
		for i, h := range hit {
			if h {
				out = append(out, i)
			}
		}
	case imap.UIDSet:
		if n == 0 {
			return nil
		}
		maxUID := imap.UID(sel.msgs[n-1].uid)
		for _, r := range set {
			a, b := r.Start, r.Stop
			if a == 0 {
				a = maxUID
			}
			if b == 0 {
				b = maxUID
			}
			if a > b {
				a, b = b, a
			}
			lo := sort.Search(n, func(i int) bool { return imap.UID(sel.msgs[i].uid) >= a })
			for i := lo; i < n && imap.UID(sel.msgs[i].uid) <= b; i++ {
				out = append(out, i)
			}
		}
		sort.Ints(out)
		out = dedupe(out)
	}
	return out
}

func dedupe(s []int) []int {
	if len(s) < 2 {
		return s
	}
	j := 0
	for i := 1; i < len(s); i++ {
		if s[i] != s[j] {
			j++
			s[j] = s[i]
		}
	}
	return s[:j+1]
}

func (s *session) Store(w *imapserver.FetchWriter, set imap.NumSet, flags *imap.StoreFlags, _ *imap.StoreOptions) error {
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	_, isUID := set.(imap.UIDSet)
	want := storable(flags.Flags)
	changed := false
	for _, i := range sel.resolve(set) {
		m := sel.msgs[i]
		if m.gone {
			continue
		}
		var nf []string
		switch flags.Op {
		case imap.StoreFlagsSet:
			nf = want
		case imap.StoreFlagsAdd:
			nf = append(append([]string(nil), m.flags...), want...)
		case imap.StoreFlagsDel:
			for _, f := range m.flags {
				if !hasFlag(want, f) {
					nf = append(nf, f)
				}
			}
		}
		nf = normFlags(nf)
		if !sameFlags(nf, m.flags) {
			if err := sel.mb.SetFlags(m.key, nf); err != nil {
				if errors.Is(err, maildir.ErrNoMessage) {
					m.gone = true
					continue
				}
				return s.internal("store", err)
			}
			m.flags = nf
			changed = true
		}
		if !flags.Silent {
			rw := w.CreateMessage(uint32(i + 1))
			if isUID {
				rw.WriteUID(imap.UID(m.uid))
			}
			rw.WriteFlags(imapFlags(m.flags))
			if err := rw.Close(); err != nil {
				return err
			}
		}
	}
	if changed {
		s.srv.hub.notify(sel.mb.Path())
	}
	return nil
}

func (s *session) copyTarget(dest string) (*maildir.Mailbox, error) {
	return s.mailbox(dest)
}

func (s *session) Copy(set imap.NumSet, dest string) (*imap.CopyData, error) {
	sel := s.sel
	to, err := s.copyTarget(dest)
	if err != nil {
		return nil, err
	}
	idx := sel.resolve(set)
	var total int64
	for _, i := range idx {
		total += sel.msgs[i].size
	}
	if err := s.checkQuota(total); err != nil {
		return nil, err
	}
	data := &imap.CopyData{}
	for _, i := range idx {
		m := sel.msgs[i]
		if m.gone {
			continue
		}
		c, err := sel.mb.Copy(m.key, to)
		if err != nil {
			if errors.Is(err, maildir.ErrNoMessage) {
				continue
			}
			return nil, s.internal("copy", err)
		}
		data.SourceUIDs.AddNum(imap.UID(m.uid))
		data.DestUIDs.AddNum(imap.UID(c.UID))
	}
	if data.UIDValidity, err = to.UIDValidity(); err != nil {
		return nil, s.internal("copy", err)
	}
	s.srv.hub.notify(to.Path())
	return data, nil
}

func (s *session) Move(w *imapserver.MoveWriter, set imap.NumSet, dest string) error {
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	to, err := s.copyTarget(dest)
	if err != nil {
		return err
	}
	if to.Path() == sel.mb.Path() {
		return imapErr(imap.ResponseCodeCannot, "Source and destination are the same mailbox")
	}
	data := &imap.CopyData{}
	var moved []int
	for _, i := range sel.resolve(set) {
		m := sel.msgs[i]
		if m.gone {
			continue
		}
		c, err := sel.mb.Move(m.key, to)
		if err != nil {
			if errors.Is(err, maildir.ErrNoMessage) {
				continue
			}
			return s.internal("move", err)
		}
		data.SourceUIDs.AddNum(imap.UID(m.uid))
		data.DestUIDs.AddNum(imap.UID(c.UID))
		moved = append(moved, i)
	}
	if data.UIDValidity, err = to.UIDValidity(); err != nil {
		return s.internal("move", err)
	}
	if err := w.WriteCopyData(data); err != nil {
		return err
	}
	for j := len(moved) - 1; j >= 0; j-- {
		i := moved[j]
		if err := w.WriteExpunge(uint32(i + 1)); err != nil {
			return err
		}
		sel.msgs = append(sel.msgs[:i], sel.msgs[i+1:]...)
	}
	s.srv.hub.notify(to.Path())
	s.srv.hub.notify(sel.mb.Path())
	return nil
}

func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	snap, err := sel.mb.Snapshot()
	if err != nil {
		return s.internal("expunge", err)
	}
	deleted := make(map[uint32]bool)
	present := make(map[uint32]bool)
	for _, m := range snap.Messages {
		present[m.UID] = true
		if hasFlag(m.Flags, maildir.FlagDeleted) {
			deleted[m.UID] = true
		}
	}
	removed := false
	for i := len(sel.msgs) - 1; i >= 0; i-- {
		m := sel.msgs[i]
		switch {
		case m.gone || !present[m.uid]:
		case deleted[m.uid] && (uids == nil || uids.Contains(imap.UID(m.uid))):
			if err := sel.mb.Remove(m.key); err != nil && !errors.Is(err, maildir.ErrNoMessage) {
				return s.internal("expunge", err)
			}
			removed = true
		default:
			continue
		}
		if err := w.WriteExpunge(uint32(i + 1)); err != nil {
			return err
		}
		sel.msgs = append(sel.msgs[:i], sel.msgs[i+1:]...)
	}
	if removed {
		s.srv.hub.notify(sel.mb.Path())
	}
	return nil
}

// storable keeps the flags that Maildir can store, canonically named.
// Keywords are not persisted (PERMANENTFLAGS does not include \*).
func storable(flags []imap.Flag) []string {
	var out []string
	for _, f := range flags {
		if c := canonFlag(string(f)); c != "" {
			out = append(out, c)
		}
	}
	return normFlags(out)
}

func canonFlag(f string) string {
	for _, sf := range systemFlags {
		if strings.EqualFold(string(sf), f) {
			return string(sf)
		}
	}
	return ""
}

func normFlags(f []string) []string {
	info, err := maildir.FormatInfo(f)
	if err != nil {
		return nil
	}
	out, _ := maildir.ParseInfo(info)
	return out
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func imapFlags(f []string) []imap.Flag {
	out := make([]imap.Flag, len(f))
	for i, x := range f {
		out[i] = imap.Flag(x)
	}
	return out
}
