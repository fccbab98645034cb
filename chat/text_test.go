package chat

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestSanitize(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "hello, world", "hello, world"},
		{"unicode kept", "héllo wörld 你好 👋🏽", "héllo wörld 你好 👋🏽"},
		{"emoji zwj kept", "👩‍💻", "👩‍💻"},
		{"tab to space", "a\tb", "a b"},
		{"nul and c0", "a\x00b\x01c\x7fd\re\nf", "abcdef"},
		{"bell", "ding\a", "ding"},
		{"csi clear", "\x1b[2Jclear", "clear"},
		{"csi colour", "\x1b[1;31mred\x1b[0m", "red"},
		{"csi private", "\x1b[?1049hx", "x"},
		{"osc title bel", "\x1b]0;pwned\x07after", "after"},
		{"osc title st", "\x1b]0;pwned\x1b\\after", "after"},
		{"osc hyperlink", "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"},
		{"osc unterminated", "before\x1b]0;title", "before"},
		{"osc then csi", "\x1b]0;t\x1b[2Jx", "x"},
		{"dcs", "\x1bPq#0;1\x1b\\x", "x"},
		{"charset", "\x1b(Bx", "x"},
		{"two byte", "\x1bcx\x1b7y", "xy"},
		{"lone esc", "a\x1b", "a"},
		{"c1 csi", "\u009b2Jx", "x"},
		{"c1 osc", "\u009d0;t\u009cx", "x"},
		{"c1 other", "a\u0085b", "ab"},
		{"raw c1 byte", "a\x9bb", "a\uFFFDb"},
		{"invalid utf8", "bad\xff\xfeutf8", "bad\uFFFD\uFFFDutf8"},
		{"bidi override", "abc\u202edef\u202c", "abcdef"},
		{"bidi isolate", "a\u2066b\u2069", "ab"},
		{"line separator", "a\u2028b\u2029c", "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sanitize(tt.in); got != tt.want {
				t.Errorf("Sanitize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestSanitizeInvisible covers the rules for invisible characters, joiners, variation selectors
// and combining marks, each from both sides: what goes, and what real text needs kept.
func TestSanitizeInvisible(t *testing.T) {
	const (
		england = "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F"
		wales   = "\U0001F3F4\U000E0067\U000E0062\U000E0077\U000E006C\U000E0073\U000E007F"
		acute   = "\u0301"
	)
	tests := []struct {
		name, in, want string
	}{
		// Invisible characters go.
		{"zero width space", "pass\u200bword", "password"},
		{"word joiner", "pass\u2060word", "password"},
		{"invisible math", "a\u2061b\u2062c\u2063d\u2064e", "abcde"},
		{"bom", "\ufeffhello\ufeff", "hello"},
		{"soft hyphen", "co\u00adop", "coop"},
		{"mongolian vowel separator", "a\u180eb", "ab"},
		{"hangul fillers", "\u3164\u115f\u1160\uffa0", ""},
		{"hangul filler between words", "hi\u3164there", "hithere"},
		{"grapheme joiner", "a\u034fb", "ab"},
		{"khmer inherent vowels", "a\u17b4\u17b5b", "ab"},
		{"musical format", "a\U0001D173\U0001D17Ab", "ab"},
		{"bidi marks", "a\u200eb\u200fc\u061cd", "abcd"},
		{"deprecated format", "a\u206ab\u206fc", "abc"},
		{"annotation", "a\ufff9hidden\ufffbb", "ahiddenb"},
		{"arabic number sign", "\u0600\u0661\u0662", "\u0661\u0662"},
		{"language tag", "a\U000E0001b", "ab"},
		{"tags hide text", "hi\U000E0068\U000E0069\U000E007F", "hi"},
		{"tags without flag", "\U000E0067\U000E0062\U000E007F", ""},
		{"flag tags unterminated", "\U0001F3F4\U000E0067\U000E0062", "\U0001F3F4"},
		{"flag tags interrupted", "\U0001F3F4\U000E0067\u200b\U000E0062\U000E007F", "\U0001F3F4"},
		{"flag cancel alone", "\U0001F3F4\U000E007F", "\U0001F3F4"},
		{"flag too many tags", "\U0001F3F4" + strings.Repeat("\U000E0061", 9) + "\U000E007F", "\U0001F3F4"},
		{"tags after a sequence", england + "\U000E0061\U000E007F", england},

		// Tag sequences stay whole.
		{"flag of england", england, england},
		{"flag of wales in text", "go " + wales + "!", "go " + wales + "!"},

		// ZWJ and ZWNJ go where they are misused...
		{"zwj alone", "\u200d", ""},
		{"zwj leading", "\u200d\U0001F469", "\U0001F469"},
		{"zwj trailing", "\U0001F469\u200d", "\U0001F469"},
		{"zwj doubled", "\U0001F469\u200d\u200d\U0001F4BB", "\U0001F469\U0001F4BB"},
		{"zwj doubled through hidden", "\U0001F469\u200d\u200b\u200d\U0001F4BB", "\U0001F469\U0001F4BB"},
		{"zwj between ascii", "pass\u200dword", "password"},
		{"zwnj between ascii", "Auf\u200clage", "Auflage"},
		{"zwj before ascii", "\U0001F469\u200dx", "\U0001F469x"},
		{"zwj after space", "a \u200d\U0001F469", "a \U0001F469"},
		{"zwj before space", "\U0001F469\u200d \U0001F4BB", "\U0001F469 \U0001F4BB"},
		{"zwnj in emoji", "\U0001F469\u200c\U0001F4BB", "\U0001F469\U0001F4BB"},
		{"zwj emoji to letter", "\U0001F469\u200d\u0645", "\U0001F469\u0645"},
		{"zwj between latin", "\u00e9\u200d\u00e9", "\u00e9\u00e9"},
		{"zwj between han", "\u4f60\u200d\u597d", "\u4f60\u597d"},
		{"zwnj persian to latin", "\u0645\u06cc\u200c\u00e9", "\u0645\u06cc\u00e9"},
		{"zwj across scripts", "\u0915\u094d\u200d\u0645", "\u0915\u094d\u0645"},
		{"zwj emoji to mark", "\U0001F469\u200d" + acute, "\U0001F469" + acute},

		// ... and stay where they do work.
		{"family", "\U0001F468\u200d\U0001F469\u200d\U0001F467", "\U0001F468\u200d\U0001F469\u200d\U0001F467"},
		{"rainbow flag", "\U0001F3F3\ufe0f\u200d\U0001F308", "\U0001F3F3\ufe0f\u200d\U0001F308"},
		{"technologist skin tone", "\U0001F469\U0001F3FD\u200d\U0001F4BB", "\U0001F469\U0001F3FD\u200d\U0001F4BB"},
		{"pirate flag", "\U0001F3F4\u200d\u2620\ufe0f", "\U0001F3F4\u200d\u2620\ufe0f"},
		{"heart on fire", "\u2764\ufe0f\u200d\U0001F525", "\u2764\ufe0f\u200d\U0001F525"},
		{"zwj through escape", "\U0001F469\u200d\x1b[31m\U0001F4BB", "\U0001F469\u200d\U0001F4BB"},
		{"persian zwnj", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"},
		{"arabic zwj", "\u0644\u200d\u0627", "\u0644\u200d\u0627"},
		{"devanagari half form", "\u0915\u094d\u200d\u0937", "\u0915\u094d\u200d\u0937"},
		{"devanagari zwnj", "\u0915\u094d\u200c\u0937", "\u0915\u094d\u200c\u0937"},
		{"bengali ya-phala", "\u09b0\u200d\u09cd\u09af", "\u09b0\u200d\u09cd\u09af"},
		{"sinhala yansaya", "\u0d9a\u0dca\u200d\u0dba", "\u0d9a\u0dca\u200d\u0dba"},

		// Emoji stay intact.
		{"skin tone", "\U0001F44B\U0001F3FD", "\U0001F44B\U0001F3FD"},
		{"flags", "\U0001F1EB\U0001F1F7\U0001F1EF\U0001F1F5", "\U0001F1EB\U0001F1F7\U0001F1EF\U0001F1F5"},
		{"keycaps", "1\ufe0f\u20e3 #\ufe0f\u20e3", "1\ufe0f\u20e3 #\ufe0f\u20e3"},
		{"emoji presentation", "\u2764\ufe0f", "\u2764\ufe0f"},
		{"text presentation", "\u263a\ufe0e", "\u263a\ufe0e"},

		// Variation selectors go without their base.
		{"vs leading", "\ufe0fhi", "hi"},
		{"vs repeated", "\u2764\ufe0f\ufe0f\ufe0e", "\u2764\ufe0f"},
		{"vs after space", "a \ufe0f", "a "},
		{"vs after mark", "e" + acute + "\ufe0f", "e" + acute},
		{"vs after joiner", "\U0001F469\u200d\ufe0f\U0001F4BB", "\U0001F469\u200d\U0001F4BB"},
		{"ideographic variation", "\u845b\U000E0100", "\u845b\U000E0100"},
		{"mongolian free variation", "\u1820\u180b", "\u1820\u180b"},
		{"ideographic variation leading", "\U000E0100\u845b", "\u845b"},

		// Combining marks: a few on a base, none without one.
		{"vietnamese decomposed", "Vie\u0323\u0302t Nam", "Vie\u0323\u0302t Nam"},
		{"hebrew points and accent", "\u05e9\u05bc\u05c1\u05b8\u0596", "\u05e9\u05bc\u05c1\u05b8\u0596"},
		{"tibetan stack", "\u0f66\u0f92\u0fb2\u0f74", "\u0f66\u0f92\u0fb2\u0f74"},
		{"marks at the cap", "e" + strings.Repeat(acute, maxMarks), "e" + strings.Repeat(acute, maxMarks)},
		{"zalgo", "e" + strings.Repeat(acute, 499), "e" + strings.Repeat(acute, maxMarks)},
		{"zalgo words", strings.Repeat("Z\u0336\u0337\u0338\u0339\u033a\u033b\u033c", 3),
			strings.Repeat("Z\u0336\u0337\u0338\u0339\u033a", 3)},
		{"zalgo enclosing", "a" + strings.Repeat("\u20dd", 20), "a" + strings.Repeat("\u20dd", maxMarks)},
		{"zalgo spacing marks", "\u0915" + strings.Repeat("\u093e", 20), "\u0915" + strings.Repeat("\u093e", maxMarks)},
		{"marks leading", acute + acute + "abc", "abc"},
		{"marks after escape at start", "\x1b[1m" + acute + "x", "x"},
		{"marks after space", "a " + acute + "b", "a b"},
		{"marks after newline join", "a\n" + acute, "a" + acute},
		{"marks through hidden", "e\u200b" + strings.Repeat(acute, 9), "e" + strings.Repeat(acute, maxMarks)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Sanitize(tt.in)
			if got != tt.want {
				t.Errorf("Sanitize(%+q) = %+q, want %+q", tt.in, got, tt.want)
			}
			checkSanitized(t, tt.in, got)
		})
	}
}

// TestSanitizeFormatCharacters removes every format (Cf) character Unicode has, bar the joiners
// and the tags, which have rules of their own: a new one in a Go release must be judged, not
// let through unseen.
func TestSanitizeFormatCharacters(t *testing.T) {
	for _, tab := range []*unicode.RangeTable{unicode.Cf, unicode.Other_Default_Ignorable_Code_Point} {
		for _, r16 := range tab.R16 {
			for r := rune(r16.Lo); r <= rune(r16.Hi); r += rune(r16.Stride) {
				checkRemoved(t, r)
			}
		}
		for _, r32 := range tab.R32 {
			for r := rune(r32.Lo); r <= rune(r32.Hi); r += rune(r32.Stride) {
				checkRemoved(t, r)
			}
		}
	}
}

// TestSanitizeShortcuts checks the hand-written shortcuts against the Unicode tables they stand
// for, on every code point.
func TestSanitizeShortcuts(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if isHiddenRune(r) || r < 0x20 {
			continue
		}
		if isSpace(r) != unicode.IsSpace(r) {
			t.Errorf("isSpace(%U) = %v", r, isSpace(r))
		}
		if isMark(r) != unicode.Is(unicode.M, r) {
			t.Errorf("isMark(%U) = %v", r, isMark(r))
		}
	}
}

// TestSanitizeEmojiShortcut checks the emoji blocks isExtendedPictographic answers for itself
// against uniseg's answer.
func TestSanitizeEmojiShortcut(t *testing.T) {
	for r := rune(0x1f000); r <= 0x1faff; r++ {
		if isExtendedPictographic(r) != askExtendedPictographic(r) {
			t.Errorf("isExtendedPictographic(%U) = %v", r, isExtendedPictographic(r))
		}
	}
	for _, r := range "a\u00a9\u2764\u2620\U0001F3FD\U0001F1EB\u0301\uff9e" {
		if isExtendedPictographic(r) != askExtendedPictographic(r) {
			t.Errorf("isExtendedPictographic(%U) = %v", r, isExtendedPictographic(r))
		}
	}
}

// TestSanitizeCombinations runs the checks of FuzzSanitize on many short strings made of the
// characters the rules are about, next to each other in every order: the fuzzer seldom finds
// a valid emoji next to a joiner next to a mark by itself.
func TestSanitizeCombinations(t *testing.T) {
	pieces := []string{"a", "1", " ", "\t", "\n", "\x1b[31m", "\xff", "\u00a0", "\u00e9", "\u4f60",
		"\u200d", "\u200c", "\u200b", "\u034f", "\ufe0f", "\ufe0e", "\U000E0100", "\u180b", "\u1820",
		"\u0301", "\u093e", "\u20e3", "\u0915", "\u094d", "\u0645", "\u06cc",
		"\U0001F469", "\U0001F4BB", "\U0001F3FD", "\u2764", "\U0001F1EB",
		"\U0001F3F4", "\U000E0067", "\U000E007F"}
	rng := rand.New(rand.NewPCG(1, 2)) // the same strings every run
	for range 50000 {
		var b strings.Builder
		for k := rng.IntN(10); k >= 0; k-- {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		in := b.String()
		checkSanitized(t, in, Sanitize(in))
	}
}

func checkRemoved(t *testing.T, r rune) {
	t.Helper()
	if r == zwj || r == zwnj || isTagRune(r) || isVariationSelector(r) {
		return
	}
	in := "\u0645" + string(r) + "\u0645"
	if got := Sanitize(in); got != "\u0645\u0645" {
		t.Errorf("Sanitize(%+q) = %+q: %U kept", in, got, r)
	}
}

// checkSanitized fails when s holds anything a terminal would act on, or anything the rules for
// invisible characters, joiners, variation selectors and combining marks remove.
func checkSanitized(t *testing.T, in, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("Sanitize(%+q) = %+q: invalid UTF-8", in, s)
	}
	misplaced := func(r rune) bool { // where a joiner has nothing to join
		return r < utf8.RuneSelf || unicode.IsSpace(r) || r == zwj || r == zwnj
	}
	var (
		prev  rune // the rune before, 0 at the start
		base  rune // the base the marks belong to, 0 at the start and after a space
		marks int  // marks and variation selectors on base
	)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		next, _ := utf8.DecodeRuneInString(s[i+size:])
		bad := ""
		switch {
		case r < 0x20 || r == 0x7f || isHiddenRune(r):
			bad = "control or hidden rune"
		case isTagRune(r):
			bad = "tag outside an emoji tag sequence"
		case r == zwj || r == zwnj:
			if prev == 0 || i+size == len(s) || misplaced(prev) || misplaced(next) {
				bad = "joiner with nothing to join"
			}
		case isVariationSelector(r):
			if base == 0 || marks > 0 || prev == zwj || prev == zwnj {
				bad = "variation selector away from its base"
			}
			marks++
		case isMark(r):
			if base == 0 {
				bad = "mark without a base"
			}
			if marks++; marks > maxMarks {
				bad = "too many marks"
			}
		default:
			base, marks = r, 0
			if unicode.IsSpace(r) {
				base = 0
			}
			if r == blackFlag {
				size += emojiTagRun(s[i+size:]) // a well-formed tag sequence is the flag's
			}
		}
		if bad != "" {
			t.Fatalf("Sanitize(%+q) = %+q: %s %U at byte %d", in, s, bad, r, i)
		}
		prev = r
		i += size
	}
	if Sanitize(s) != s {
		t.Fatalf("Sanitize is not idempotent on %+q: %+q", s, Sanitize(s))
	}
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"hello", "\x1b[2J", "\x1b]0;x\x07", "\u009b31m", "\xff", "a\tb", strings.Repeat("\x1b[", 10),
		"\U0001F468\u200d\U0001F469\u200d\U0001F467", "\u0645\u06cc\u200c\u062e", "\u0915\u094d\u200d\u0937",
		"e" + strings.Repeat("\u0301", 20), "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F",
		"1\ufe0f\u20e3", "\u200bx\u200d\u200d\ufe0f\ufe0f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := Sanitize(in)
		checkSanitized(t, in, out)
		if len(out) > 3*len(in) {
			t.Fatalf("Sanitize grew %d bytes into %d", len(in), len(out))
		}
	})
}

func TestExcerpt(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"a bit too long", 10, "a bit too ..."},
		{"\x1b[2Jclean", 10, "clean"},
		{"ééééé", 5, "éé..."}, // never half a character
		{strings.Repeat("\x1b[2J", 1000) + "x", 10, ""},
	}
	for _, tt := range tests {
		got := Excerpt(tt.in, tt.max)
		if got != tt.want {
			t.Errorf("Excerpt(%.20q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
		checkSanitized(t, tt.in, got)
	}
}

func BenchmarkSanitize(b *testing.B) {
	for _, bm := range []struct{ name, in string }{
		{"ascii", "alice: did anyone see the build break on main this morning? it's red again"},
		{"mixed", "héllo wörld 你好 👋🏽 the café is open 👩‍💻 🇫🇷 — naïve résumé ❤️ ok"},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(bm.in)))
			b.ReportAllocs()
			for b.Loop() {
				Sanitize(bm.in)
			}
		})
	}
}
