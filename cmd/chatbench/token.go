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
	room   int32 // the room its line was tagged with: K for this run's "#RUN-rK", or roomUntagged or roomElsewhere
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

// scanner finds one run's tokens in a raw byte stream, and the room each came from.
type scanner struct {
	marker     []byte // ": ~RUN."
	roomPrefix []byte // "#RUN-r": this run's rooms are named "#RUN-rK"
}

func newScanner(run string) scanner {
	return scanner{marker: []byte(": ~" + run + "."), roomPrefix: []byte("#" + run + "-r")}
}

// roomName is the name of the run's K-th room. A run id is lower case, as chatd shows room names.
func roomName(run string, k int) string { return "#" + run + "-r" + strconv.Itoa(k) }

// Where a token came from, as its line says: a room tag in front of the sender's name
// ("#go alice: ..."), or none. chatd tags a line with its room when the room is not the
// receiver's current one.
const (
	roomUntagged  int32 = -1 // no tag: the receiver's current room
	roomElsewhere int32 = -2 // tagged with a room that is not one of this run's (#lobby, ...)
	// A tag "#RUN-rK" of this run's K-th room is K.
)

// maxLinePrefix bounds what is read of a line in front of a token's marker for its room tag: a
// timestamp, a tag and a name, with their escape codes, take well under half of it.
const maxLinePrefix = 256

// maxTail is the longest tail scan returns: a line's prefix and a token cut by the end of a read.
func (s scanner) maxTail() int { return maxLinePrefix + len(s.marker) + maxTokenTail }

// scan appends the complete tokens in data to toks and returns them, with the length of the end
// of data that the caller must put in front of the next read: the beginning of a line whose
// token, or whose room tag in front of a token, may be cut by the end of the read. The tail is
// never longer than maxTail, and never holds a token already returned.
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
			return toks, len(data) - max(pos, lineStart(data, i))
		case tokOK:
			tok.room = s.roomOf(data[lineStart(data, i):i])
			toks = append(toks, tok)
			pos = i + len(m) + n
		default:
			pos = i + 1
		}
	}
	// The unfinished last line, which may end with a room tag, a name or part of a marker.
	from := max(pos, len(data)-(maxLinePrefix+len(m)-1))
	if j := bytes.LastIndexAny(data[from:], "\r\n"); j >= 0 {
		from += j + 1
	}
	return toks, len(data) - from
}

// lineStart is where the line holding data[i] starts, at most maxLinePrefix bytes before i.
func lineStart(data []byte, i int) int {
	from := max(0, i-maxLinePrefix)
	if j := bytes.LastIndexAny(data[from:i], "\r\n"); j >= 0 {
		return from + j + 1
	}
	return from
}

// roomOf reads the room tag in prefix, the line in front of a token's marker: what a terminal
// shows of it is "[HH:MM ][#room ][HH:MM ]NAME", and the field before the name (a timestamp
// aside) is the tag if it is a room name.
func (s scanner) roomOf(prefix []byte) int32 {
	var arr [maxLinePrefix]byte
	vis := visibleText(arr[:0], prefix)
	_, rest := lastField(vis) // the sender's name
	var f []byte
	for {
		if f, rest = lastField(rest); !isClock(f) {
			break
		}
	}
	if !isRoomName(f) {
		return roomUntagged
	}
	if k, ok := bytes.CutPrefix(f, s.roomPrefix); ok && len(k) > 0 && len(k) <= 9 && (k[0] != '0' || len(k) == 1) {
		if n, err := strconv.Atoi(string(k)); err == nil {
			return int32(n)
		}
	}
	return roomElsewhere
}

// visibleText appends to dst what a terminal shows of the last line in b: the text after the
// last line break or cursor movement (a line editor clears its prompt with CR or a CSI sequence
// before it writes a line), with colours (SGR) and other control characters removed. dst must
// have room for b.
func visibleText(dst, b []byte) []byte {
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\n' || c == '\r':
			dst = dst[:0]
		case c == 0x1b:
			if i+1 == len(b) || b[i+1] != '[' {
				continue
			}
			j := i + 2
			for j < len(b) && (b[j] < 0x40 || b[j] > 0x7e) {
				j++
			}
			if j == len(b) {
				return dst // cut: nothing visible follows
			}
			if b[j] != 'm' {
				dst = dst[:0] // the cursor moved, or the line was erased
			}
			i = j
		case c >= 0x20 && c != 0x7f:
			dst = append(dst, c)
		}
	}
	return dst
}

// lastField splits b into its last space-separated field and what is before it.
func lastField(b []byte) (field, rest []byte) {
	end := len(b)
	for end > 0 && b[end-1] == ' ' {
		end--
	}
	start := bytes.LastIndexByte(b[:end], ' ') + 1
	return b[start:end], b[:start]
}

// isClock reports whether f is a time of day as chatd prints it: "15:04".
func isClock(f []byte) bool {
	return len(f) == 5 && f[2] == ':' && isDigits(f[:2]) && isDigits(f[3:])
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isRoomName applies chatd's room name rules: '#' then 1-32 of a-z 0-9 _ . -.
func isRoomName(f []byte) bool {
	if len(f) < 2 || len(f) > 33 || f[0] != '#' {
		return false
	}
	for _, c := range f[1:] {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
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
