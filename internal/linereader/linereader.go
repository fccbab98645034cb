// Package linereader reads lines from a peer with bounded memory: a line over the limit is
// discarded as it streams past, never held whole.
package linereader

import (
	"bufio"
	"errors"
	"io"
)

// ErrTooLong is returned by Reader.ReadLine for a line over the limit. The line has been
// consumed up to its newline, so the caller can report it and keep reading.
var ErrTooLong = errors.New("line too long")

// Reader reads LF- or CRLF-terminated lines with a bounded buffer: a line over the limit is
// discarded as it streams past, never held whole, so a 10 MB line costs no more memory than a
// short one.
type Reader struct {
	br  *bufio.Reader
	max int
}

// New returns a Reader for lines of at most max bytes (without the line ending).
func New(r io.Reader, max int) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, max+2), max: max}
}

// ReadLine returns the next line without its line ending. A last line without a newline is
// returned before io.EOF. For a line over the limit it returns ErrTooLong, after which reading
// can continue with the next line.
func (lr *Reader) ReadLine() (string, error) {
	b, err := lr.br.ReadSlice('\n')
	switch {
	case err == nil:
		b = trimEOL(b)
	case errors.Is(err, bufio.ErrBufferFull):
		return "", lr.discardLine()
	case errors.Is(err, io.EOF) && len(b) > 0:
		// A final unterminated line: hand it over now, io.EOF comes on the next call.
		b = trimEOL(b)
	default:
		return "", err
	}
	if len(b) > lr.max {
		return "", ErrTooLong
	}
	return string(b), nil
}

// discardLine skips the rest of an over-long line, up to and including its newline.
func (lr *Reader) discardLine() error {
	for {
		_, err := lr.br.ReadSlice('\n')
		switch {
		case err == nil, errors.Is(err, io.EOF):
			return ErrTooLong
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return err
		}
	}
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}
