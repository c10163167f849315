package mailq

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File layout of an IMVU's queue folder:
//
//	<id>.msg        the DKIM-signed message, CRLF line endings
//	<id>.json       the envelope (see envelope); its presence means queued
//	.tmp-*          files being written; renamed into place once fsynced
//	<id>.json.bad   an envelope that failed to parse, kept for an operator
//
// Enqueue writes the message, then the envelope, each to a temporary file
// that is fsynced and renamed, and finally fsyncs the folder. Removal
// deletes the envelope first, so a crash never leaves an envelope whose
// message is gone.

const (
	msgExt     = ".msg"
	envExt     = ".json"
	tmpPrefix  = ".tmp-"
	staleAfter = time.Hour // orphaned temp/message files older than this are removed
)

func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b[:])
}

// writeFileDurable writes data to dir/name via a fsynced temporary file and
// a rename. The caller fsyncs dir.
func writeFileDurable(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	ok = true
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeEnvelope durably replaces the envelope file of e.
func writeEnvelope(dir string, e *envelope) error {
	b, err := e.marshal()
	if err != nil {
		return err
	}
	if err := writeFileDurable(dir, e.ID+envExt, b); err != nil {
		return err
	}
	return syncDir(dir)
}

// removeItem durably deletes an item: envelope first, then the message.
func removeItem(dir, id string) error {
	if err := os.Remove(filepath.Join(dir, id+envExt)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, id+msgExt)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(dir)
}

// loadDir reads every envelope of one IMVU folder. Envelopes that do not
// parse, or that belong to another IMVU, are renamed to "<name>.bad" and
// reported through bad; stale temporary and orphaned message files are
// removed.
func loadDir(dir, imvu string, now time.Time, bad func(name string, err error)) ([]*envelope, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	var out []*envelope
	for _, de := range ents {
		name := de.Name()
		if !de.Type().IsRegular() || !strings.HasSuffix(name, envExt) || strings.HasPrefix(name, tmpPrefix) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		e, err := parseEnvelope(b)
		if err == nil && (e.ID+envExt != name || e.IMVU != imvu) {
			err = fmt.Errorf("mailq: envelope %s names id %s of imvu %q", name, e.ID, e.IMVU)
		}
		if err == nil {
			if _, serr := os.Stat(filepath.Join(dir, e.ID+msgExt)); serr != nil {
				err = fmt.Errorf("mailq: message of %s: %w", name, serr)
			}
		}
		if err != nil {
			bad(name, err)
			os.Rename(filepath.Join(dir, name), filepath.Join(dir, name+".bad"))
			continue
		}
		have[e.ID] = true
		out = append(out, e)
	}
	for _, de := range ents {
		name := de.Name()
		stale := false
		if strings.HasPrefix(name, tmpPrefix) {
			stale = true
		} else if id, ok := strings.CutSuffix(name, msgExt); ok && validID(id) && !have[id] {
			stale = true // an Enqueue that crashed before its envelope was written
		}
		if !stale {
			continue
		}
		if info, err := de.Info(); err == nil && now.Sub(info.ModTime()) > staleAfter {
			os.Remove(filepath.Join(dir, name))
		}
	}
	return out, nil
}

// countDir counts the queued items (envelope files) of one folder.
func countDir(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, de := range ents {
		name := de.Name()
		if id, ok := strings.CutSuffix(name, envExt); ok && validID(id) && de.Type().IsRegular() {
			n++
		}
	}
	return n, nil
}
