// Package termwrap breaks chat lines into rows that fit a terminal, with a hanging indent, so
// that the terminal never wraps a line itself: a peer who pads a message until the terminal's
// own wrapping puts part of it at column 0 could make that part pass for a line of its own
// ("* bob left", "bob: send me your password"). Here every continuation row starts indented.
package termwrap

import (
	"bytes"
	"unicode"
	"unicode/utf8"

	"github.com/rivo/uniseg"
)

const (
	// minText is how many columns a continuation row keeps for text however narrow the
	// terminal: the indent shrinks (to 1, never 0) before the text does.
	minText = 8
	// maxSGR is how many SGR sequences since the last reset are carried across a break. The
	// server's lines use at most three; past the limit the oldest go, which loses only colour:
	// the indent is drawn after a reset whatever happens.
	maxSGR = 8
	// tabStop is the distance between the terminal's tab stops.
	tabStop = 8
	// StampIndent is the indent under a line that starts with an "HH:MM " timestamp: the
	// continuation lines up with the text after the time.
	StampIndent = len("15:04 ")
	// PlainIndent is the indent under any other line.
	PlainIndent = 2
)

const (
	sgrReset = "\x1b[0m"
	spaces   = "                                                                "
	// threeEmDash is U+2E3B, the one character that takes more columns (4) than bytes (3).
	threeEmDash = "\u2e3b"
	// vs16 asks for emoji presentation and keycap makes a keycap: terminals that honour them
	// draw the cluster 2 columns wide whatever the base character's own width.
	vs16   = "\ufe0f"
	keycap = "\u20e3"
)

// Wrap appends src to dst, with every line wider than width columns broken into rows of at most
// width columns. src holds lines ending in '\n' (the last one may have none). A row breaks at its
// last space or, in a word too long for a row, between two grapheme clusters; the spaces at a
// break are dropped, and every continuation row starts with indent spaces instead. indent is at
// least 1, and shrinks to leave minText columns on a narrow terminal; a row is wider than width
// only when a single cluster does not fit in it. Rows are separated with '\n': the caller's
// terminal writer turns that into "\r\n".
//
// Widths are display columns: East Asian wide characters and emoji take 2, combining marks 0,
// and escape sequences (SGR, other CSI, OSC) and control characters none. A cluster counts at
// the widest any common terminal draws it (an emoji ZWJ sequence drawn as its parts is as wide
// as its parts), so that the terminal never has to wrap a row itself. At a break inside coloured
// text, the colour is reset before the newline and set again after the indent, so the indent is
// never drawn in colour or reverse video.
func Wrap(dst, src []byte, width, indent int) []byte {
	return wrap(dst, src, width, indent)
}

// WrapLines is Wrap with each line's own indent, the one Indent chooses for it: for a batch of
// chat lines, some timestamped and some not.
func WrapLines(dst, src []byte, width int) []byte {
	return wrap(dst, src, width, 0)
}

// wrap is Wrap; an indent of 0 means each line's Indent.
func wrap(dst, src []byte, width, indent int) []byte {
	width = max(width, 1)
	// A line of at most width bytes needs no wrapping: no character takes more columns than it
	// has bytes, but a tab and U+2E3B.
	short := bytes.IndexByte(src, '\t') < 0 && !bytes.Contains(src, []byte(threeEmDash))
	copied := 0 // src[copied:pos] is still to be copied as it is
	for pos := 0; pos < len(src); {
		end, next := len(src), len(src)
		if i := bytes.IndexByte(src[pos:], '\n'); i >= 0 {
			end, next = pos+i, pos+i+1
		}
		if !short || end-pos > width {
			line, ind := src[pos:end], indent
			if ind == 0 {
				ind = Indent(line)
			}
			dst = append(dst, src[copied:pos]...)
			dst = wrapLine(dst, line, width, max(min(ind, width-minText), 1))
			copied = end
		}
		pos = next
	}
	return append(dst, src[copied:]...)
}

// Indent is the hanging indent for a line of chat: StampIndent when it starts with an "HH:MM "
// timestamp (escape codes aside), else PlainIndent.
func Indent(line []byte) int {
	var stamp [StampIndent]byte
	n := 0
	for i := 0; i < len(line) && n < len(stamp) && line[i] != '\n'; {
		switch c := line[i]; {
		case c == 0x1b:
			i += escapeLen(line[i:])
		case c < 0x20 || c == 0x7f:
			i++
		default:
			stamp[n] = c
			n++
			i++
		}
	}
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	if n == len(stamp) && digit(stamp[0]) && digit(stamp[1]) && stamp[2] == ':' &&
		digit(stamp[3]) && digit(stamp[4]) && stamp[5] == ' ' {
		return StampIndent
	}
	return PlainIndent
}

// token kinds
const (
	tokText   = iota // a grapheme cluster
	tokSpace         // a space or a tab: a row may break there
	tokEscape        // an escape sequence, which takes no columns
	tokZero          // another control character, which takes no columns either
)

// wrapLine appends line, which holds no '\n', broken into rows.
func wrapLine(dst, line []byte, width, indent int) []byte {
	var sgr, sgrAtSpace sgrState
	start := 0      // where the current row's text starts in line
	col := 0        // columns taken in the current row, indent included
	filled := false // the row holds something visible, so it may end
	cont := false   // the row is a continuation
	broken := false // the row is a continuation not yet started: nothing visible came yet
	space := -1     // the row's last space after something visible: where a word wrap breaks
	// begin starts the continuation row when its first visible cluster, at i, comes: the
	// escapes before it go on the row before, and its colours are set again after the indent.
	// A line whose rest is spaces gets no empty row.
	begin := func(i int) {
		dst = append(dst, line[start:i]...)
		dst = sgr.newRow(dst, line, indent)
		start, broken = i, false
	}
	for i := 0; i < len(line); {
		// The common case first: printable ASCII other than space, a column a byte, while it
		// fits (a byte before a non-ASCII one may start a cluster with it: nextToken decides).
		j := i
		for ; j < len(line) && col < width; j++ {
			if c := line[j]; c <= ' ' || c >= 0x7f || j+1 < len(line) && line[j+1] >= utf8.RuneSelf {
				break
			}
			col++
		}
		if j > i {
			if broken {
				begin(i)
			}
			filled = true
			i = j
			continue
		}
		n, w, kind := nextToken(line, i, col)
		switch {
		case kind == tokEscape:
			sgr.note(line, i, i+n)
			i += n
			continue
		case w == 0 && kind != tokText:
			// A control character goes with what is around it. (A zero-width cluster, a
			// combining mark after a space, is text: a row it starts starts with it.)
			i += n
			continue
		case kind == tokSpace && cont && !filled:
			// The spaces a break falls on go, all of them: the indent replaces them.
			dst = append(dst, line[start:i]...)
			i += n
			start = i
			continue
		case filled && col+w > width:
			brk, resume := i, i // break before this cluster
			switch {
			case kind == tokSpace:
				resume = i + n // at this space, which goes
			case space >= 0:
				brk, resume = space, space+1 // at the last space, which goes
				sgr = sgrAtSpace             // what follows it is read again
			}
			dst = append(dst, line[start:brk]...)
			i, start, col, filled, cont, broken, space = resume, resume, indent, false, true, true, -1
			continue
		case kind == tokSpace && filled:
			space, sgrAtSpace = i, sgr
		}
		if broken {
			begin(i)
		}
		col += w
		filled = true
		i += n
	}
	return append(dst, line[start:]...)
}

// nextToken returns the length, the width in columns and the kind of the token at line[i:],
// whose first column would be col.
func nextToken(line []byte, i, col int) (n, width, kind int) {
	c := line[i]
	asciiNext := i+1 == len(line) || line[i+1] < utf8.RuneSelf
	switch {
	case c == ' ' && asciiNext:
		return 1, 1, tokSpace
	case c == '\t':
		return 1, tabStop - col%tabStop, tokSpace
	case c == 0x1b:
		return escapeLen(line[i:]), 0, tokEscape
	case c < 0x20 || c == 0x7f:
		return 1, 0, tokZero
	case c < utf8.RuneSelf && asciiNext:
		return 1, 1, tokText
	}
	cluster, _, w, _ := uniseg.FirstGraphemeCluster(line[i:], -1)
	switch {
	case len(cluster) == 1 && c == ' ':
		return 1, 1, tokSpace
	case len(cluster) == 1 || utf8.RuneCount(cluster) == 1:
		return len(cluster), w, tokText
	}
	return len(cluster), clusterWidth(cluster, w), tokText
}

// clusterWidth is the widest a terminal may draw a cluster of several code points, of which
// uniseg says it takes w columns. Terminals that do not know a sequence (a ZWJ sequence, a skin
// tone, a flag) draw its parts one after the other; those that honour VS16 or a keycap draw it
// 2 wide even on a narrow base. Counting too many columns only ends a row early; too few would
// let the terminal wrap it.
func clusterWidth(cluster []byte, w int) int {
	sum := 0
	for j := 0; j < len(cluster); {
		r, size := utf8.DecodeRune(cluster[j:])
		_, _, rw, _ := uniseg.FirstGraphemeCluster(cluster[j:j+size], -1)
		if rw == 0 {
			// uniseg gives every extending code point 0 columns; on their own, the skin tones
			// take 2, and the few extenders that are not marks or format characters (halfwidth
			// kana voicing marks, some vowel signs) 1.
			switch {
			case r >= 0x1f3fb && r <= 0x1f3ff:
				rw = 2
			case !unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf):
				rw = 1
			}
		}
		sum += rw
		j += size
	}
	w = max(w, sum)
	if w < 2 && (bytes.Contains(cluster, []byte(vs16)) || bytes.Contains(cluster, []byte(keycap))) {
		w = 2
	}
	return w
}

// escapeLen returns the length of the escape sequence at the start of b, which starts with ESC:
// CSI, a control string (OSC, DCS, ... up to BEL or ST; an unterminated one runs to the end),
// an nF sequence, a two-byte sequence, or a lone ESC.
func escapeLen(b []byte) int {
	if len(b) < 2 {
		return len(b)
	}
	i := 2
	switch c := b[1]; {
	case c == '[':
		for i < len(b) && b[i] >= 0x20 && b[i] <= 0x3f {
			i++
		}
		if i < len(b) && b[i] >= 0x40 && b[i] <= 0x7e {
			i++
		}
		return i
	case c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_':
		for ; i < len(b); i++ {
			switch {
			case b[i] == 0x07:
				return i + 1
			case b[i] == 0x1b && i+1 < len(b) && b[i+1] == '\\':
				return i + 2
			case b[i] == 0x1b:
				return i // a new sequence starts
			}
		}
		return i
	case c >= 0x20 && c <= 0x2f:
		for i < len(b) && b[i] >= 0x20 && b[i] <= 0x2f {
			i++
		}
		if i < len(b) && b[i] >= 0x30 && b[i] <= 0x7e {
			i++
		}
		return i
	case c >= 0x30 && c <= 0x7e:
		return 2
	}
	return 1
}

// sgrState is the SGR sequences in effect: those seen since the last reset, as offsets into the
// line.
type sgrState struct {
	seq [maxSGR][2]int32
	n   int
}

// note records line[a:b], an escape sequence, if it is an SGR one.
func (s *sgrState) note(line []byte, a, b int) {
	seq := line[a:b]
	if len(seq) < 3 || seq[1] != '[' || seq[len(seq)-1] != 'm' {
		return
	}
	reset := true
	for _, c := range seq[2 : len(seq)-1] {
		if (c < '0' || c > '9') && c != ';' && c != ':' {
			return // a private or intermediate byte: not a plain SGR
		}
		reset = reset && c == '0'
	}
	if reset { // ESC[m, ESC[0m
		s.n = 0
		return
	}
	if s.n == maxSGR {
		copy(s.seq[:], s.seq[1:])
		s.n--
	}
	s.seq[s.n] = [2]int32{int32(a), int32(b)}
	s.n++
}

// newRow ends a row and starts the next: a reset if colour is on, the newline, the indent, and
// the colour again.
func (s *sgrState) newRow(dst, line []byte, indent int) []byte {
	if s.n > 0 {
		dst = append(dst, sgrReset...)
	}
	dst = append(dst, '\n')
	for ; indent > len(spaces); indent -= len(spaces) {
		dst = append(dst, spaces...)
	}
	dst = append(dst, spaces[:indent]...)
	for _, seq := range s.seq[:s.n] {
		dst = append(dst, line[seq[0]:seq[1]]...)
	}
	return dst
}
