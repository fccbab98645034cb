package room

import (
	"strings"
	"unicode/utf8"
)

// Sanitize makes peer-supplied text safe to put on someone else's terminal. Whole escape sequences
// (CSI, OSC, DCS, ...) and every other C0/C1 control character are removed, so nothing can move a
// cursor, retitle a terminal or ring a bell; tabs become spaces; invalid UTF-8 becomes U+FFFD; and
// the bidirectional overrides and line separators that can disguise text are dropped.
func Sanitize(s string) string {
	if isPlainASCII(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == 0x1b:
				i = skipEscape(s, i+1)
				continue
			case c == '\t':
				b.WriteByte(' ')
			case c >= 0x20 && c != 0x7f:
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(utf8.RuneError)
		case r == 0x9b: // C1 CSI: drop its parameters too
			i = skipCSI(s, i+size)
			continue
		case r == 0x90 || r == 0x9d || r == 0x98 || r == 0x9e || r == 0x9f: // C1 DCS, OSC, SOS, PM, APC
			i = skipString(s, i+size)
			continue
		case isHiddenRune(r):
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// isPlainASCII reports whether s is printable ASCII only, the common case that needs no copy.
func isPlainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// isHiddenRune reports runes that are removed outright: C1 controls, bidirectional embeddings,
// overrides and isolates (they reorder the rest of a line), and the Unicode line and paragraph
// separators (some terminals break lines on them).
func isHiddenRune(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	case r == 0x2028 || r == 0x2029:
		return true
	}
	return false
}

// skipEscape returns the index just past the escape sequence whose ESC byte precedes i.
func skipEscape(s string, i int) int {
	if i >= len(s) {
		return i
	}
	switch c := s[i]; {
	case c == '[':
		return skipCSI(s, i+1)
	case c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_':
		return skipString(s, i+1)
	case c >= 0x20 && c <= 0x2f: // nF: intermediates, then one final byte
		for i < len(s) && s[i] >= 0x20 && s[i] <= 0x2f {
			i++
		}
		if i < len(s) && s[i] >= 0x30 && s[i] <= 0x7e {
			i++
		}
		return i
	case c >= 0x30 && c <= 0x7e: // two-byte sequence such as ESC c (reset) or ESC 7
		return i + 1
	}
	return i // a lone ESC: drop it, keep what follows
}

// skipCSI skips a control sequence's parameter and intermediate bytes and its final byte.
func skipCSI(s string, i int) int {
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x3f {
		i++
	}
	if i < len(s) && s[i] >= 0x40 && s[i] <= 0x7e {
		i++
	}
	return i
}

// skipString skips a control string (OSC, DCS, ...) up to and including its terminator: BEL,
// ESC \ or C1 ST. An unterminated string runs to the end, as a terminal would swallow it.
func skipString(s string, i int) int {
	for i < len(s) {
		switch {
		case s[i] == 0x07:
			return i + 1
		case s[i] == 0x1b:
			if i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
			return i // ESC starts a new sequence; the caller skips that one too
		case s[i] == 0xc2 && i+1 < len(s) && s[i+1] == 0x9c:
			return i + 2
		}
		i++
	}
	return i
}

// Excerpt is a peer-supplied string made fit for a log line or an error message: sanitised, and
// cut at a character boundary to at most max bytes, with "..." added when it was cut.
func Excerpt(s string, max int) string {
	if len(s) > 4*max+8 {
		s = s[:4*max+8] // bound the sanitiser's work on a huge input; escapes only shrink it
	}
	s = Sanitize(s)
	if len(s) <= max {
		return s
	}
	return truncateUTF8(s, max) + "..."
}
