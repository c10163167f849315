package vm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The Linux kernel compresses with "lz4 -l": the legacy LZ4 frame, a magic
// number followed by independent blocks of at most 8 MiB each, each
// preceded by its compressed size. Nothing else in the format is needed, so
// it is decoded here rather than by an external tool.
const (
	lz4LegacyMagic    = 0x184C2102
	lz4LegacyBlockMax = 8 << 20
)

var errLZ4Corrupt = errors.New("corrupt lz4 block")

// decodeLZ4Legacy writes the decompressed content of the legacy LZ4 frame
// at the start of src to w and returns its length. It stops at the end of
// src or at trailing data that cannot be a block (the kernel appends the
// uncompressed size as four more bytes).
func decodeLZ4Legacy(ctx context.Context, w io.Writer, src []byte) (int64, error) {
	if len(src) < 4 || binary.LittleEndian.Uint32(src) != lz4LegacyMagic {
		return 0, errors.New("not a legacy lz4 frame")
	}
	p := src[4:]
	buf := make([]byte, 0, lz4LegacyBlockMax)
	var total int64
	for len(p) >= 4 {
		n := binary.LittleEndian.Uint32(p)
		if n == lz4LegacyMagic { // frames may be concatenated
			p = p[4:]
			continue
		}
		if uint64(n) > uint64(len(p)-4) {
			break
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
		out, err := decodeLZ4Block(buf, p[4:4+n])
		if err != nil {
			return total, fmt.Errorf("lz4 block at byte %d: %w", len(src)-len(p), err)
		}
		if _, err := w.Write(out); err != nil {
			return total, err
		}
		total += int64(len(out))
		p = p[4+n:]
	}
	return total, nil
}

// decodeLZ4Block decompresses one LZ4 block into dst[:0], never growing it
// beyond cap(dst).
func decodeLZ4Block(dst, src []byte) ([]byte, error) {
	d := dst[:0]
	limit := cap(dst)
	length := func(i, n int) (int, int, error) {
		if n != 15 {
			return i, n, nil
		}
		for {
			if i >= len(src) {
				return i, 0, errLZ4Corrupt
			}
			b := src[i]
			i++
			n += int(b)
			if n > limit {
				return i, 0, errLZ4Corrupt
			}
			if b != 255 {
				return i, n, nil
			}
		}
	}
	var lit, ml int
	var err error
	for i := 0; i < len(src); {
		tok := src[i]
		i++
		i, lit, err = length(i, int(tok>>4))
		if err != nil {
			return nil, err
		}
		if lit > len(src)-i || len(d)+lit > limit {
			return nil, errLZ4Corrupt
		}
		d = append(d, src[i:i+lit]...)
		i += lit
		if i == len(src) { // the last sequence has literals only
			return d, nil
		}
		if len(src)-i < 2 {
			return nil, errLZ4Corrupt
		}
		off := int(src[i]) | int(src[i+1])<<8
		i += 2
		if off == 0 || off > len(d) {
			return nil, errLZ4Corrupt
		}
		i, ml, err = length(i, int(tok&15))
		if err != nil {
			return nil, err
		}
		ml += 4
		if len(d)+ml > limit {
			return nil, errLZ4Corrupt
		}
		// A match may overlap its own output (off < ml): copy in steps of
		// off bytes, each of which is already written.
		for start := len(d) - off; ml > 0; {
			n := min(ml, len(d)-start)
			d = append(d, d[start:start+n]...)
			start += n
			ml -= n
		}
	}
	return d, nil
}
