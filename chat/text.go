package chat

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rivo/uniseg"
)

// maxMarks caps the combining marks (and the variation selector) kept on one base character.
// Real writing needs few: Vietnamese stacks two, pointed Hebrew with cantillation four, a
// Tibetan stack three or four, a keycap emoji two. "Zalgo" text piles up hundreds, to smear a
// line over its neighbours and to make a line that looks short thousands of bytes long.
const maxMarks = 5

// maxEmojiTags bounds the tag characters in an emoji tag sequence. A subdivision flag's tags spell
// a region and a subdivision code, at most 6 letters ("gbsct", Scotland, is 5); longer runs only
// hide text.
const maxEmojiTags = 8

const (
	zwnj      = '\u200c'
	zwj       = '\u200d'
	blackFlag = '\U0001F3F4' // the base of emoji tag sequences (the flags of England, Scotland, Wales)
	cancelTag = '\U000E007F' // ends an emoji tag sequence
)

// Sanitize makes peer-supplied text safe to put on someone else's terminal. Whole escape sequences
// (CSI, OSC, DCS, ...) and every other C0/C1 control character are removed, so nothing can move a
// cursor, retitle a terminal or ring a bell; tabs become spaces; invalid UTF-8 becomes U+FFFD; the
// bidirectional controls and line separators that can disguise text are dropped, and so are
// invisible characters (see isHiddenRune). Zero-width joiners survive only where they join
// (emoji sequences, and letters of the scripts that need them), variation selectors only right
// after their base, and combining marks only on a base, at most maxMarks of them.
func Sanitize(s string) string {
	if isPlainASCII(s) {
		return s
	}
	c := cleaner{s: s}
	c.b.Grow(len(s))
	for i := 0; i < len(s); {
		ch := s[i]
		if ch < utf8.RuneSelf {
			switch {
			case ch == 0x1b:
				i = skipEscape(s, i+1)
				continue
			case ch == '\t':
				c.settle(' ', false)
				c.write(" ")
				c.base, c.marks = 0, 0
			case ch >= 0x20 && ch != 0x7f:
				// A run of printable ASCII is kept whole.
				j := i + 1
				for j < len(s) && s[j] >= 0x20 && s[j] < 0x7f {
					j++
				}
				if c.joiners > 0 {
					c.settle(rune(ch), false)
				}
				c.keep(i, j)
				c.base, c.marks = rune(s[j-1]), 0
				if s[j-1] == ' ' {
					c.base = 0
				}
				i = j
				continue
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			c.settle(r, false)
			c.write(string(utf8.RuneError))
			c.base, c.marks = r, 0
		case r == 0x9b: // C1 CSI: drop its parameters too
			i = skipCSI(s, i+size)
			continue
		case r == 0x90 || r == 0x9d || r == 0x98 || r == 0x9e || r == 0x9f: // C1 DCS, OSC, SOS, PM, APC
			i = skipString(s, i+size)
			continue
		case r == blackFlag:
			// A well-formed tag sequence is kept whole; stray tags are dropped as hidden text.
			n := emojiTagRun(s[i+size:])
			c.add(r, i, i+size+n)
			size += n
		default:
			c.add(r, i, i+size)
		}
		i += size
	}
	c.flush()
	return c.b.String()
}

// cleaner is Sanitize's state: what it has written so far, as far as the rules for joiners,
// variation selectors and marks need to know. Every decision looks at what was written, never
// at what was dropped, so that Sanitize(Sanitize(s)) == Sanitize(s).
type cleaner struct {
	s        string
	b        strings.Builder
	from, to int // s[from:to] is kept, but not yet copied to b: runs are copied whole

	base  rune // the last base character written; 0 at the start and after a space
	marks int  // combining marks and variation selectors written on base
	// joiner is a ZWJ or ZWNJ not yet written: whether it does any work depends on what follows.
	joiner  rune
	joiners int // how many in a row are waiting: two or more are misuse
}

// keep writes s[i:j] as it is.
func (c *cleaner) keep(i, j int) {
	if i != c.to { // something was dropped since the last run: a new one starts
		c.flush()
		c.from = i
	}
	c.to = j
}

// write writes text that is not in s.
func (c *cleaner) write(text string) {
	c.flush()
	c.b.WriteString(text)
}

func (c *cleaner) flush() {
	c.b.WriteString(c.s[c.from:c.to])
	c.from = c.to
}

// add writes the non-ASCII rune r, s[i:j], if it has a place in chat.
func (c *cleaner) add(r rune, i, j int) {
	switch {
	case r > 0xad && r < 0x300, r >= 0x4e00 && r <= 0x9fff, r >= 0xac00 && r <= 0xd7a3,
		r >= 0x1f300 && r <= 0x1f3fa, r >= 0x1f400 && r <= 0x1faff:
		// Latin letters, CJK ideographs, Hangul syllables and emoji, the common cases, are
		// plain base characters: skip the rules below.
	case isHiddenRune(r) || isTagRune(r):
		return
	case r == zwj || r == zwnj:
		if c.base != 0 { // not leading, not after a space
			c.joiner = r
			c.joiners++
		}
		return
	case isVariationSelector(r):
		// Right after its base only: not leading, repeated, after a mark, or after a joiner.
		if c.base == 0 || c.marks > 0 || c.joiners > 0 {
			return
		}
		c.keep(i, j)
		c.marks++
		return
	case isMark(r):
		if c.base == 0 || c.marks >= maxMarks {
			return
		}
		c.settle(r, true)
		c.keep(i, j)
		c.marks++
		return
	}
	if c.joiners > 0 {
		c.settle(r, false)
	}
	c.keep(i, j)
	c.base, c.marks = r, 0
	if isSpace(r) {
		c.base = 0
	}
}

// isSpace is unicode.IsSpace for the runes that get this far, without its table search.
func isSpace(r rune) bool {
	return r == ' ' || r == 0xa0 || r == 0x1680 || r >= 0x2000 && r <= 0x200a ||
		r == 0x202f || r == 0x205f || r == 0x3000
}

// settle writes the waiting joiner if it joins the base before it to next, the next character
// written, and forgets it either way.
func (c *cleaner) settle(next rune, nextIsMark bool) {
	if c.joiners == 0 {
		return
	}
	if c.joiners == 1 && joins(c.joiner, c.base, next, nextIsMark) {
		c.write(string(c.joiner))
	}
	c.joiner, c.joiners = 0, 0
}

// joins reports whether joiner j between base (with its marks) and next does real work: ZWJ
// between two emoji builds one emoji (👩‍💻, 🏳️‍🌈); ZWJ and ZWNJ between letters and marks of a script
// that shapes its letters (Persian "می‌خواهم", Devanagari half forms) choose the shapes. Anywhere
// else they are invisible text.
func joins(j, base, next rune, nextIsMark bool) bool {
	if isEmojiBase(base) {
		return j == zwj && !nextIsMark && isExtendedPictographic(next)
	}
	if base < 0x600 || !unicode.IsLetter(base) {
		return false
	}
	script := joiningScript(base)
	if script == nil {
		return false
	}
	return nextIsMark || unicode.IsLetter(next) && unicode.Is(script, next)
}

// joiningScript is the script of r if it is one whose letters ZWJ and ZWNJ shape (cursive
// joining, or conjuncts and half forms), else nil.
func joiningScript(r rune) *unicode.RangeTable {
	for _, t := range [...]*unicode.RangeTable{
		unicode.Arabic, unicode.Syriac, unicode.Nko, unicode.Mongolian, unicode.Hanifi_Rohingya,
		unicode.Manichaean, unicode.Psalter_Pahlavi, unicode.Phags_Pa,
		unicode.Devanagari, unicode.Bengali, unicode.Gurmukhi, unicode.Gujarati, unicode.Oriya,
		unicode.Tamil, unicode.Telugu, unicode.Kannada, unicode.Malayalam, unicode.Sinhala,
		unicode.Myanmar, unicode.Khmer,
	} {
		if unicode.Is(t, r) {
			return t
		}
	}
	return nil
}

// isEmojiBase reports an emoji a ZWJ may follow: a pictograph, or a skin tone ending one.
func isEmojiBase(r rune) bool {
	return r >= 0x1F3FB && r <= 0x1F3FF || isExtendedPictographic(r)
}

// isExtendedPictographic reports the Unicode property Extended_Pictographic: emoji, and the
// symbols that may become emoji.
func isExtendedPictographic(r rune) bool {
	switch {
	case r >= 0x1f249 && r <= 0x1f3fa, r >= 0x1f400 && r <= 0x1f53d, r >= 0x1f546 && r <= 0x1f64f,
		r >= 0x1f680 && r <= 0x1f6ff, r >= 0x1f947 && r <= 0x1faff:
		return true // the emoji blocks (emoji-data.txt), without asking
	case r < 0xa9, r >= 0x1f1e6 && r <= 0x1f1ff, r >= 0x1f3fb && r <= 0x1f3ff:
		return false // ASCII, regional indicators, skin tones
	}
	return askExtendedPictographic(r)
}

// askExtendedPictographic asks uniseg, which keeps its property table private, through its
// grapheme rules: "❤ ZWJ r" is one cluster only when r is a pictograph (UAX #29 GB11) or extends
// anything (GB9), which "a r" tells apart.
func askExtendedPictographic(r rune) bool {
	var buf [3 + 3 + utf8.UTFMax]byte
	n := copy(buf[:], "\u2764\u200d")
	n += utf8.EncodeRune(buf[n:], r)
	if _, rest, _, _ := uniseg.FirstGraphemeCluster(buf[:n], -1); len(rest) > 0 {
		return false
	}
	buf[0] = 'a'
	n = 1 + utf8.EncodeRune(buf[1:], r)
	_, rest, _, _ := uniseg.FirstGraphemeCluster(buf[:n], -1)
	return len(rest) > 0
}

// emojiTagRun returns the length of the emoji tag sequence's tags at the start of s (what follows
// 🏴): one to maxEmojiTags tag characters U+E0020..U+E007E, then CANCEL TAG. It is 0 when s does
// not start with a well-formed one.
func emojiTagRun(s string) int {
	for i, n := 0, 0; i < len(s); n++ {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == cancelTag && n > 0:
			return i + size
		case r < 0xE0020 || r > 0xE007E || n == maxEmojiTags:
			return 0
		}
		i += size
	}
	return 0
}

// isTagRune reports the tag characters: invisible, they are kept only in an emoji tag sequence.
func isTagRune(r rune) bool { return r >= 0xE0020 && r <= 0xE007F }

// isVariationSelector reports the variation selectors, which choose a glyph for the character
// before them (FE0F: as emoji, FE0E: as text): the standard ones, the ideographic ones, and
// Mongolian's free variation selectors.
func isVariationSelector(r rune) bool {
	return r >= 0xfe00 && r <= 0xfe0f || r >= 0xe0100 && r <= 0xe01ef ||
		r >= 0x180b && r <= 0x180d || r == 0x180f
}

// isMark reports combining marks (Mn, Mc, Me), which draw on the character before them.
func isMark(r rune) bool {
	switch {
	case r < 0x300, r >= 0x4e00 && r <= 0x9fff, r >= 0xac00 && r <= 0xd7a3, r >= 0x1f000 && r <= 0x1faff:
		return false // Latin, CJK ideographs, Hangul syllables, emoji: no marks, no table search
	}
	return unicode.Is(unicode.M, r)
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

// isHiddenRune reports the runes that are removed outright, wherever they are. This is the one
// list: every format (Cf) character but ZWJ, ZWNJ and the tags (whose fate depends on their
// neighbours) is here, and so is every other default-ignorable one but the variation selectors.
func isHiddenRune(r rune) bool {
	switch {
	case r < 0xad: // Latin-1 letters and punctuation are the common case
		return r >= 0x80 && r <= 0x9f // C1 controls
	case r > 0xad && r < 0x34f, r > 0x3164 && r < 0xfeff, r > 0x1d17a && r < 0xe0000:
		return false // Latin, CJK, Hangul, emoji: skip the list
	}
	switch {
	case r == 0xad: // SOFT HYPHEN: invisible unless a line breaks at it, and chat lines don't
		return true
	case r == 0x34f: // COMBINING GRAPHEME JOINER: invisible; only changes how marks sort
		return true
	case r >= 0x600 && r <= 0x605, r == 0x6dd, r == 0x70f, r == 0x890 || r == 0x891, r == 0x8e2,
		r == 0x110bd, r == 0x110cd:
		// Prepended concatenation marks (Arabic number signs and the like): terminals draw
		// them as nothing, so in chat they are only invisible text.
		return true
	case r == 0x61c, r == 0x200e || r == 0x200f: // ARABIC LETTER MARK, LRM, RLM: bidi controls
		return true
	case r == 0x115f || r == 0x1160 || r == 0x3164 || r == 0xffa0:
		// Hangul fillers: blank, used to fake empty names and messages; text needs none of them
		// (syllables are precomposed).
		return true
	case r == 0x17b4 || r == 0x17b5: // Khmer inherent vowels: invisible, not to be used (Unicode)
		return true
	case r == 0x180e: // MONGOLIAN VOWEL SEPARATOR: invisible since Unicode 6.3
		return true
	case r == 0x200b: // ZERO WIDTH SPACE: only hides text inside words
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		// Bidirectional embeddings, overrides and isolates: they reorder the rest of a line.
		return true
	case r == 0x2028 || r == 0x2029: // line and paragraph separators: some terminals break lines
		return true
	case r >= 0x2060 && r <= 0x2065:
		// WORD JOINER, the invisible math operators (function application, times, separator,
		// plus) and a reserved one: invisible.
		return true
	case r >= 0x206a && r <= 0x206f: // deprecated format characters (symmetric swapping, shaping)
		return true
	case r == 0xfeff: // BYTE ORDER MARK / zero width no-break space: invisible
		return true
	case r >= 0xfff0 && r <= 0xfffb:
		// Reserved default-ignorables, and the interlinear annotation characters, which carry
		// text meant to stay hidden.
		return true
	case r >= 0x13430 && r <= 0x1343f: // Egyptian hieroglyph format controls: no terminal lays them out
		return true
	case r >= 0x1bca0 && r <= 0x1bca3: // shorthand format controls: invisible
		return true
	case r >= 0x1d173 && r <= 0x1d17a: // musical beam and phrase controls: invisible
		return true
	case r >= 0xe0000 && r <= 0xe001f, r >= 0xe0080 && r <= 0xe00ff, r >= 0xe01f0 && r <= 0xe0fff:
		// LANGUAGE TAG (deprecated) and reserved default-ignorables around the tags and the
		// variation selectors.
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
