package imapd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"net/mail"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/nexus-core/nexus/maildir"
)

// content lazily loads a message's header or full text.
type content struct {
	mb     *maildir.Mailbox
	key    string
	header []byte // raw header including the blank separator line
	full   []byte
	err    error
}

func (c *content) loadHeader() ([]byte, error) {
	if c.header != nil || c.err != nil {
		return c.header, c.err
	}
	if c.full != nil {
		c.header = splitHeader(c.full)
		return c.header, nil
	}
	rc, err := c.mb.Open(c.key)
	if err != nil {
		c.err = err
		return nil, err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 8192)
	var buf bytes.Buffer
	for {
		line, err := br.ReadSlice('\n')
		buf.Write(line)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err != io.EOF {
				c.err = err
				return nil, err
			}
			break
		}
		if len(line) <= 2 && (string(line) == "\r\n" || string(line) == "\n") {
			break
		}
	}
	c.header = buf.Bytes()
	return c.header, nil
}

func (c *content) loadFull() ([]byte, error) {
	if c.full != nil || c.err != nil {
		return c.full, c.err
	}
	rc, err := c.mb.Open(c.key)
	if err != nil {
		c.err = err
		return nil, err
	}
	defer rc.Close()
	c.full, c.err = io.ReadAll(rc)
	return c.full, c.err
}

func splitHeader(b []byte) []byte {
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return b
		}
		line := b[i : i+j+1]
		i += j + 1
		if string(line) == "\r\n" || string(line) == "\n" {
			return b[:i]
		}
	}
	return b
}

func (c *content) parsedHeader() (textproto.Header, error) {
	h, err := c.loadHeader()
	if err != nil {
		return textproto.Header{}, err
	}
	return textproto.ReadHeader(bufio.NewReader(bytes.NewReader(h)))
}

func headerOnly(sec *imap.FetchItemBodySection) bool {
	return sec.Specifier == imap.PartSpecifierHeader && len(sec.Part) == 0
}

func (s *session) Fetch(w *imapserver.FetchWriter, set imap.NumSet, opts *imap.FetchOptions) error {
	sel := s.sel
	markSeen := false
	if !sel.readOnly {
		for _, sec := range opts.BodySection {
			markSeen = markSeen || !sec.Peek
		}
		for _, sec := range opts.BinarySection {
			markSeen = markSeen || !sec.Peek
		}
	}
	notify := false
	for _, i := range sel.resolve(set) {
		m := sel.msgs[i]
		c := &content{mb: sel.mb, key: m.key}
		writeFlags := opts.Flags
		if markSeen && !m.gone && !hasFlag(m.flags, maildir.FlagSeen) {
			nf := normFlags(append(append([]string(nil), m.flags...), maildir.FlagSeen))
			if err := sel.mb.SetFlags(m.key, nf); err == nil {
				m.flags = nf
				writeFlags = true
				notify = true
			} else if errors.Is(err, maildir.ErrNoMessage) {
				m.gone = true
			} else {
				return s.internal("fetch", err)
			}
		}
		rw := w.CreateMessage(uint32(i + 1))
		if opts.UID {
			rw.WriteUID(imap.UID(m.uid))
		}
		if writeFlags {
			rw.WriteFlags(imapFlags(m.flags))
		}
		if opts.InternalDate {
			rw.WriteInternalDate(m.internal)
		}
		if opts.RFC822Size {
			rw.WriteRFC822Size(m.size)
		}
		if opts.Envelope {
			env := &imap.Envelope{}
			if h, err := c.parsedHeader(); err == nil {
				env = imapserver.ExtractEnvelope(h)
			}
			rw.WriteEnvelope(env)
		}
		if opts.BodyStructure != nil {
			full, _ := c.loadFull()
			rw.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(full)))
		}
		for _, sec := range opts.BodySection {
			var data []byte
			switch {
			case headerOnly(sec) && len(sec.HeaderFields) == 0 && len(sec.HeaderFieldsNot) == 0 && sec.Partial == nil:
				data, _ = c.loadHeader()
			case headerOnly(sec):
				h, _ := c.loadHeader()
				data = imapserver.ExtractBodySection(bytes.NewReader(h), sec)
			case sec.Specifier == imap.PartSpecifierNone && len(sec.Part) == 0 && sec.Partial == nil:
				data, _ = c.loadFull()
			default:
				full, _ := c.loadFull()
				data = imapserver.ExtractBodySection(bytes.NewReader(full), sec)
			}
			wc := rw.WriteBodySection(sec, int64(len(data)))
			if _, err := wc.Write(data); err != nil {
				return err
			}
			if err := wc.Close(); err != nil {
				return err
			}
		}
		for _, sec := range opts.BinarySection {
			full, _ := c.loadFull()
			data := imapserver.ExtractBinarySection(bytes.NewReader(full), sec)
			wc := rw.WriteBinarySection(sec, int64(len(data)))
			if _, err := wc.Write(data); err != nil {
				return err
			}
			if err := wc.Close(); err != nil {
				return err
			}
		}
		for _, sec := range opts.BinarySectionSize {
			full, _ := c.loadFull()
			rw.WriteBinarySectionSize(sec, imapserver.ExtractBinarySectionSize(bytes.NewReader(full), sec))
		}
		if err := rw.Close(); err != nil {
			return err
		}
		if c.err != nil && !errors.Is(c.err, os.ErrNotExist) && !errors.Is(c.err, maildir.ErrNoMessage) {
			s.srv.log.Warn("imapd fetch", "account", s.address(), "uid", m.uid, "err", c.err)
		}
	}
	if notify {
		s.srv.hub.notify(sel.mb.Path())
	}
	return nil
}

func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, _ *imap.SearchOptions) (*imap.SearchData, error) {
	sel := s.sel
	data := &imap.SearchData{}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	for i, m := range sel.msgs {
		if m.gone {
			continue
		}
		c := &content{mb: sel.mb, key: m.key}
		seq := uint32(i + 1)
		if !sel.match(seq, m, c, criteria) {
			continue
		}
		num := seq
		if kind == imapserver.NumKindUID {
			num = m.uid
			uids.AddNum(imap.UID(m.uid))
		} else {
			seqs.AddNum(seq)
		}
		if data.Count == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	return data, nil
}

func (sel *selected) match(seq uint32, m *smsg, c *content, cr *imap.SearchCriteria) bool {
	n := uint32(len(sel.msgs))
	for _, set := range cr.SeqNum {
		if !seqContains(set, seq, n) {
			return false
		}
	}
	for _, set := range cr.UID {
		if !uidContains(set, imap.UID(m.uid), imap.UID(sel.msgs[n-1].uid)) {
			return false
		}
	}
	if !cr.Since.IsZero() && day(m.internal).Before(day(cr.Since)) {
		return false
	}
	if !cr.Before.IsZero() && !day(m.internal).Before(day(cr.Before)) {
		return false
	}
	if !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
		h, err := c.parsedHeader()
		if err != nil {
			return false
		}
		t, err := mail.ParseDate(h.Get("Date"))
		if err != nil {
			return false
		}
		if !cr.SentSince.IsZero() && day(t).Before(day(cr.SentSince)) {
			return false
		}
		if !cr.SentBefore.IsZero() && !day(t).Before(day(cr.SentBefore)) {
			return false
		}
	}
	for _, f := range cr.Flag {
		if !hasFlag(m.flags, string(f)) {
			return false
		}
	}
	for _, f := range cr.NotFlag {
		if hasFlag(m.flags, string(f)) {
			return false
		}
	}
	if cr.Larger > 0 && m.size <= cr.Larger {
		return false
	}
	if cr.Smaller > 0 && m.size >= cr.Smaller {
		return false
	}
	if len(cr.Header) > 0 {
		h, err := c.parsedHeader()
		if err != nil {
			return false
		}
		for _, hf := range cr.Header {
			vals := h.Values(hf.Key)
			if len(vals) == 0 {
				return false
			}
			if hf.Value == "" {
				continue
			}
			found := false
			for _, v := range vals {
				if containsFold(decodeHeader(v), hf.Value) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
	}
	for _, txt := range cr.Body {
		full, err := c.loadFull()
		if err != nil || !containsFold(string(full[len(splitHeader(full)):]), txt) {
			return false
		}
	}
	for _, txt := range cr.Text {
		full, err := c.loadFull()
		if err != nil || !containsFold(string(full), txt) {
			return false
		}
	}
	for i := range cr.Not {
		if sel.match(seq, m, c, &cr.Not[i]) {
			return false
		}
	}
	for i := range cr.Or {
		if !sel.match(seq, m, c, &cr.Or[i][0]) && !sel.match(seq, m, c, &cr.Or[i][1]) {
			return false
		}
	}
	return true
}

func decodeHeader(v string) string {
	var dec mime.WordDecoder
	if s, err := dec.DecodeHeader(v); err == nil {
		return s
	}
	return v
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func day(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func seqContains(set imap.SeqSet, seq, n uint32) bool {
	for _, r := range set {
		a, b := r.Start, r.Stop
		if a == 0 {
			a = n
		}
		if b == 0 {
			b = n
		}
		if a > b {
			a, b = b, a
		}
		if seq >= a && seq <= b {
			return true
		}
	}
	return false
}

func uidContains(set imap.UIDSet, uid, maxUID imap.UID) bool {
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
		if uid >= a && uid <= b {
			return true
		}
	}
	return false
}
