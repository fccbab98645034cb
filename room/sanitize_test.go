package room

import (
	"strings"
	"testing"
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

// checkSanitized fails when s holds anything a terminal would act on.
func checkSanitized(t *testing.T, in, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("Sanitize(%q) = %q: invalid UTF-8", in, s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || isHiddenRune(r) {
			t.Fatalf("Sanitize(%q) = %q: kept control %U", in, s, r)
		}
	}
	if Sanitize(s) != s {
		t.Fatalf("Sanitize is not idempotent on %q", s)
	}
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"hello", "\x1b[2J", "\x1b]0;x\x07", "\u009b31m", "\xff", "a\tb", strings.Repeat("\x1b[", 10)} {
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
