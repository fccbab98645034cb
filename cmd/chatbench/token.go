package main

import (
	"bytes"
	"math"
	"strconv"
)

// Every message carries a token: "~RUN.S.Q.T~", where RUN is the run's id (runIDLen characters
// of a-z0-9), S the sender's index, Q the message's sequence number for that sender (from 0) and
// T the time it was sent in Unix nanoseconds, all in decimal. The message is the token, a space
// and '.' padding to the requested size. Nothing in it is changed by the server's sanitiser
// (printable ASCII), nothing in it can be taken for a mention (every client name has a '-', the
// message none), and it never starts with '/'.
//
// Receivers look for the token right after the ": " that ends the sender's name ("name: ~..."),
// the same in plain and ANSI lines: that skips the copy a terminal's line editor echoes while the
// sender types, and the run id skips history replayed from earlier runs.

const (
	runIDLen = 4
	padByte  = '.'

	maxSenderDigits = 7  // up to 9,999,999 senders
	maxSeqDigits    = 9  // up to 999,999,999 messages per sender
	maxNanosDigits  = 19 // Unix nanoseconds until 2262
	// maxTokenTail is the longest a token can be after its marker.
	maxTokenTail = maxSenderDigits + 1 + maxSeqDigits + 1 + maxNanosDigits + 1
)

// token is what a receiver learns from one message.
type token struct {
	sender int32
	seq    int32
	nanos  int64
}

// appendToken appends the token for sender's seq-th message, sent at nanos.
func appendToken(b []byte, run string, sender, seq int, nanos int64) []byte {
	b = append(b, '~')
	b = append(b, run...)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(sender), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, nanos, 10)
	return append(b, '~')
}

// appendMessage appends a message: the token, a space and padding, to size bytes (a message is
// never shorter than its token). The space lets a terminal's line wrap break after the token:
// chatd wraps long lines for PTY sessions at word boundaries, and a token that is one word with
// its padding would move to a row of its own, away from the ": " receivers look for. No line
// ending.
func appendMessage(b []byte, run string, sender, seq int, nanos int64, size int) []byte {
	start := len(b)
	b = appendToken(b, run, sender, seq, nanos)
	if len(b)-start+1 < size {
		b = append(b, ' ')
	}
	for len(b)-start < size {
		b = append(b, padByte)
	}
	return b
}

// scanner finds one run's tokens in a raw byte stream.
type scanner struct {
	marker []byte // ": ~RUN."
}

func newScanner(run string) scanner {
	return scanner{marker: []byte(": ~" + run + ".")}
}

// scan appends the complete tokens in data to toks and returns them, with the length of the end
// of data that may be the beginning of a token cut by the end of the read: the caller puts those
// bytes in front of the next read. The tail is never longer than len(marker)+maxTokenTail.
func (s scanner) scan(data []byte, toks []token) ([]token, int) {
	m := s.marker
	pos := 0
	for {
		i := bytes.Index(data[pos:], m)
		if i < 0 {
			break
		}
		i += pos
		tok, n, st := parseToken(data[i+len(m):])
		switch st {
		case tokIncomplete:
			return toks, len(data) - i
		case tokOK:
			toks = append(toks, tok)
			pos = i + len(m) + n
		default:
			pos = i + 1
		}
	}
	// A suffix of data that is a prefix of the marker.
	k := min(len(m)-1, len(data)-pos)
	for ; k > 0; k-- {
		if bytes.HasPrefix(m, data[len(data)-k:]) {
			break
		}
	}
	return toks, k
}

type tokStatus uint8

const (
	tokOK tokStatus = iota
	tokIncomplete
	tokMalformed
)

// parseToken parses "S.Q.T~" at the start of b and returns the token and its length.
func parseToken(b []byte) (token, int, tokStatus) {
	var fields [3]uint64
	limits := [3]int{maxSenderDigits, maxSeqDigits, maxNanosDigits}
	ends := [3]byte{'.', '.', '~'}
	i := 0
	for f := range fields {
		start := i
		var v uint64
		for {
			if i == len(b) {
				return token{}, 0, tokIncomplete
			}
			c := b[i]
			if c >= '0' && c <= '9' {
				if i-start == limits[f] {
					return token{}, 0, tokMalformed
				}
				v = v*10 + uint64(c-'0')
				i++
				continue
			}
			if c != ends[f] || i == start {
				return token{}, 0, tokMalformed
			}
			i++
			break
		}
		fields[f] = v
	}
	if fields[2] > math.MaxInt64 {
		return token{}, 0, tokMalformed
	}
	return token{sender: int32(fields[0]), seq: int32(fields[1]), nanos: int64(fields[2])}, i, tokOK
}
