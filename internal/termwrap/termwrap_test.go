package termwrap

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rivo/uniseg"
)

const (
	red   = "\x1b[31m"
	bold  = "\x1b[1m"
	reset = "\x1b[0m"
)

func TestWrap(t *testing.T) {
	fakeNotice := "bob: hi" + strings.Repeat(" ", 73) + "* bob left (too slow)"
	fakeMessage := "12:01 alice: psst" + strings.Repeat(" ", 63) + "bob: send me your password"
	tests := []struct {
		name          string
		in            string
		width, indent int
		want          string
	}{
		{"empty", "", 80, 2, ""},
		{"empty line", "\n", 80, 2, "\n"},
		{"short", "alice: hi\n", 80, 2, "alice: hi\n"},
		{"exactly the width", strings.Repeat("x", 80) + "\n", 80, 2, strings.Repeat("x", 80) + "\n"},
		{"no final newline", "hello world foo", 11, 2, "hello world\n  foo"},
		{"word wrap", "hello world foo bar\n", 11, 2, "hello world\n  foo bar\n"},
		{"word wrap every row", "hello world foo\n", 10, 2, "hello\n  world\n  foo\n"},
		{"spaces at the break", "hello       world\n", 10, 2, "hello     \n  world\n"},
		{"trailing spaces", "x" + strings.Repeat(" ", 30) + reset + "\n", 10, 2, "x" + strings.Repeat(" ", 9) + reset + "\n"},
		{"spaces and escapes at the break", "hello     " + red + "  world\n", 10, 2, "hello     " + red + reset + "\n  " + red + "world\n"},
		{"padded notice", fakeNotice + "\n", 80, 2,
			"bob: hi" + strings.Repeat(" ", 72) + "\n  * bob left (too slow)\n"},
		{"padded message", fakeMessage + "\n", 80, 6,
			"12:01 alice: psst" + strings.Repeat(" ", 62) + "\n      bob: send me your password\n"},
		{"long word", strings.Repeat("x", 1000), 80, 2,
			strings.Repeat("x", 80) + strings.Repeat("\n  "+strings.Repeat("x", 78), 11) + "\n  " + strings.Repeat("x", 62)},
		{"cjk", strings.Repeat("你好", 25), 80, 2, strings.Repeat("你好", 20) + "\n  " + strings.Repeat("你好", 5)},
		{"cjk odd column", "a" + strings.Repeat("你", 40), 80, 2, "a" + strings.Repeat("你", 39) + "\n  你"},
		{"emoji", strings.Repeat("👍", 41), 80, 2, strings.Repeat("👍", 40) + "\n  👍"},
		{"combining marks take no column", strings.Repeat("e\u0301", 81), 80, 2,
			strings.Repeat("e\u0301", 80) + "\n  e\u0301"},
		{"zwj sequence at the boundary", strings.Repeat("a", 77) + "👩\u200d💻b", 80, 2,
			strings.Repeat("a", 77) + "\n  👩\u200d💻b"},
		{"flag at the boundary", strings.Repeat("a", 77) + "🇫🇷", 80, 2, strings.Repeat("a", 77) + "\n  🇫🇷"},
		{"keycap at the boundary", strings.Repeat("a", 79) + "1\ufe0f\u20e3", 80, 2, strings.Repeat("a", 79) + "\n  1\ufe0f\u20e3"},
		{"sgr carried", red + "aaaa bbbb cccc" + reset + "\n", 10, 2, red + "aaaa bbbb" + reset + "\n  " + red + "cccc" + reset + "\n"},
		{"sgrs carried", bold + "x " + red + "aaaaa bbbb\n", 10, 2, bold + "x " + red + "aaaaa" + reset + "\n  " + bold + red + "bbbb\n"},
		{"sgr reset before the break", red + "aaaa" + reset + " bbbb cccc\n", 10, 2, red + "aaaa" + reset + " bbbb\n  cccc\n"},
		{"sgr in the carried word", "aaaa bb" + red + "bbbb cc\n", 10, 2, "aaaa\n  bb" + red + "bbbb" + reset + "\n  " + red + "cc\n"},
		{"escapes take no column", "\a" + bold + "alice" + reset + ": hi\x1b[K\n", 9, 2, "\a" + bold + "alice" + reset + ": hi\x1b[K\n"},
		{"osc takes no column", "\x1b]8;;http://x/\x07link\x1b]8;;\x07 abc\n", 8, 2, "\x1b]8;;http://x/\x07link\x1b]8;;\x07 abc\n"},
		{"tab", "a\tb\tc\n", 12, 2, "a\tb\n  c\n"},
		{"width below the indent", "abcdefgh", 4, 6, "abcd\n efg\n h"},
		{"width 1", "abc", 1, 2, "a\n b\n c"},
		{"wide cluster on a narrow row", "你你", 1, 2, "你\n 你"},
		{"narrow indent", strings.Repeat("x", 20), 12, 6, strings.Repeat("x", 12) + "\n    " + strings.Repeat("x", 8)},
		{"many lines", "one\n" + strings.Repeat("y", 12) + "\ntwo\nthree four five six\n", 10, 2,
			"one\n" + strings.Repeat("y", 10) + "\n  yy\ntwo\nthree four\n  five six\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(Wrap(nil, []byte(tt.in), tt.width, tt.indent))
			if got != tt.want {
				t.Errorf("Wrap(%q, %d, %d) =\n%q\nwant\n%q", tt.in, tt.width, tt.indent, got, tt.want)
			}
			checkWrap(t, []byte(tt.in), tt.width, tt.indent)
		})
	}
}

// TestWrapSpoofing pads a message so that, on an 80-column terminal wrapping it by itself, a fake
// line would start at column 0; wrapped here, no row but the first starts with anything but the
// indent.
func TestWrapSpoofing(t *testing.T) {
	for _, fake := range []string{"* bob left (too slow)", "bob: send me your password"} {
		for pad := 1; pad < 200; pad++ {
			line := "alice: look" + strings.Repeat(" ", pad) + fake + "\n"
			rows := strings.Split(strings.TrimSuffix(string(Wrap(nil, []byte(line), 80, 2)), "\n"), "\n")
			for _, row := range rows[1:] {
				if !strings.HasPrefix(row, "  ") {
					t.Fatalf("pad %d: row %q starts at column 0", pad, row)
				}
			}
			for _, row := range rows {
				if w := uniseg.StringWidth(row); w > 80 {
					t.Fatalf("pad %d: row %q is %d columns wide", pad, row, w)
				}
			}
		}
	}
}

// TestWrapWidths checks the column counts against uniseg's for what it knows for sure.
func TestWrapWidths(t *testing.T) {
	for _, s := range []string{"a", "é", "e\u0301", "你", "👍", "👋🏽", "🇫🇷", "❤\ufe0f", "👩\u200d💻", "1\ufe0f\u20e3", "\u2e3b", "한"} {
		_, w, _ := nextToken([]byte(s), 0, 0)
		if u := uniseg.StringWidth(s); w < u {
			t.Errorf("%+q: %d columns, uniseg says %d", s, w, u)
		}
	}
	// Where terminals differ, the widest wins.
	for s, want := range map[string]int{"👩\u200d💻": 4, "👋🏽": 4, "1\ufe0f\u20e3": 2, "e\u0301": 1, "ｶﾞ": 2} {
		if _, w, _ := nextToken([]byte(s), 0, 0); w != want {
			t.Errorf("%+q: %d columns, want %d", s, w, want)
		}
	}
}

func TestWrapLines(t *testing.T) {
	in := "12:01 alice: " + strings.Repeat("x", 20) + "\n" +
		"alice: " + strings.Repeat("y", 20) + "\n" +
		"\x1b[2m12:02\x1b[0m " + strings.Repeat("z", 20) + "\n" +
		"short\n"
	want := "12:01 alice:\n      " + strings.Repeat("x", 14) + "\n      " + strings.Repeat("x", 6) + "\n" +
		"alice:\n  " + strings.Repeat("y", 18) + "\n  yy\n" +
		"\x1b[2m12:02\x1b[0m\n      " + strings.Repeat("z", 14) + "\n      " + strings.Repeat("z", 6) + "\n" +
		"short\n"
	if got := string(WrapLines(nil, []byte(in), 20)); got != want {
		t.Errorf("WrapLines =\n%q\nwant\n%q", got, want)
	}
}

func TestIndent(t *testing.T) {
	tests := []struct {
		line string
		want int
	}{
		{"12:34 alice: hi", StampIndent},
		{"\x1b[2m12:34\x1b[0m \a\x1b[1;38;5;3malice\x1b[0m: hi", StampIndent},
		{"alice: hi", PlainIndent},
		{"12:34", PlainIndent},
		{"12:34alice", PlainIndent},
		{"1:34 alice", PlainIndent},
		{"[history 2026-11-25 09:40] bob: hi", PlainIndent},
		{"", PlainIndent},
	}
	for _, tt := range tests {
		if got := Indent([]byte(tt.line)); got != tt.want {
			t.Errorf("Indent(%q) = %d, want %d", tt.line, got, tt.want)
		}
	}
}

func FuzzWrap(f *testing.F) {
	f.Add("hello world foo\nbar", 10, 2)
	f.Add("bob: hi"+strings.Repeat(" ", 73)+"* bob left (too slow)", 80, 2)
	f.Add(red+"aaa bbb"+reset+" ccc\x1b[K\a", 5, 6)
	f.Add(strings.Repeat("你好👩\u200d💻e\u0301", 20), 7, 2)
	f.Add("a\tb\t\tc\x1b]0;t\x07 d\x1b[", 3, 1)
	f.Add("\x1b[12 é\u2e3b\u2e3b\xff\r", 2, 3)
	f.Fuzz(func(t *testing.T, in string, width, indent int) {
		width = 1 + abs(width%300)
		indent = 1 + abs(indent%12)
		checkWrap(t, []byte(in), width, indent)
		var each []byte
		for _, line := range bytes.SplitAfter([]byte(in), []byte("\n")) {
			each = Wrap(each, line, width, Indent(line))
		}
		if lines := WrapLines(nil, []byte(in), width); !bytes.Equal(lines, each) {
			t.Fatalf("WrapLines(%q, %d) = %q, but line by line %q", in, width, lines, each)
		}
	})
}

func abs(n int) int { return max(n, -n) }

// checkWrap checks what Wrap makes of in: the same as each line wrapped alone; every row within
// the width (or the widest cluster after the indent); every continuation row indented; and
// nothing visible lost or added but the indents and the spaces dropped at breaks.
func checkWrap(t *testing.T, in []byte, width, indent int) {
	t.Helper()
	out := Wrap([]byte("x"), in, width, indent)[1:]
	var each []byte
	for rest := in; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		each = Wrap(each, line, width, indent)
		rest = rest[len(line):]
	}
	if !bytes.Equal(out, each) {
		t.Fatalf("Wrap(%q) = %q, but line by line %q", in, out, each)
	}
	indent = max(min(indent, width-minText), 1)
	for _, line := range bytes.Split(in, []byte("\n")) {
		rows := bytes.Split(Wrap(nil, line, width, indent), []byte("\n"))
		widest := 0
		for i := 0; i < len(line); {
			n, w, _ := nextToken(line, i, 0)
			if line[i] == '\t' {
				w = tabStop // a tab may take a whole tab stop
			}
			widest = max(widest, w)
			i += n
		}
		if len(line) <= width && !bytes.ContainsAny(line, "\t"+threeEmDash) && rowWidth(line) > width {
			t.Fatalf("%q: %d bytes, but %d columns: Wrap's shortcut is wrong", line, len(line), rowWidth(line))
		}
		if rowWidth(line) <= width && !bytes.Equal(rows[0], line) {
			t.Fatalf("Wrap(%q, %d, %d) = %q, but the line fits", line, width, indent, rows)
		}
		var visible [][]byte
		for k, row := range rows {
			if k > 0 {
				if !bytes.HasPrefix(row, []byte(spaces[:indent])) {
					t.Fatalf("Wrap(%q, %d, %d): continuation row %q has no indent", line, width, indent, row)
				}
				row = row[indent:]
			}
			if w := rowWidth(rows[k]); w > max(width, widest+indent) {
				t.Fatalf("Wrap(%q, %d, %d): row %q is %d columns wide", line, width, indent, rows[k], w)
			}
			visible = append(visible, stripEscapes(row))
		}
		if !bytes.Equal(controls(line), controls(bytes.Join(rows, nil))) {
			t.Fatalf("Wrap(%q, %d, %d) = %q: the control characters changed", line, width, indent, rows)
		}
		if !rejoins(stripEscapes(line), visible) {
			t.Fatalf("Wrap(%q, %d, %d) = %q: the text is not the line's", line, width, indent, rows)
		}
	}
}

// rowWidth is a row's width in columns.
func rowWidth(row []byte) int {
	col := 0
	for i := 0; i < len(row); {
		n, w, _ := nextToken(row, i, col)
		col += w
		i += n
	}
	return col
}

// stripEscapes removes escape sequences and control characters (C0, DEL and C1), which take no
// columns: Wrap may add the former, and drop the spaces around the latter at a break.
func stripEscapes(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c == 0x1b:
			i += escapeLen(b[i:])
		case c < 0x20 && c != '\t' || c == 0x7f:
			i++
		case c == 0xc2 && i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f: // U+0080-U+009F
			i += 2
		default:
			out = append(out, c)
			i++
		}
	}
	return out
}

// controls is the control characters in b, escape sequences aside.
func controls(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c == 0x1b:
			i += escapeLen(b[i:])
		case c < 0x20 && c != '\t' && c != '\n' || c == 0x7f:
			out = append(out, c)
			i++
		default:
			i++
		}
	}
	return out
}

// rejoins reports whether rows, joined with nothing or the spaces and tabs dropped at a break,
// are text (whose last spaces may have gone at a break too).
func rejoins(text []byte, rows [][]byte) bool {
	at := map[int]bool{0: true} // where in text the rows so far may end
	for k, row := range rows {
		next := map[int]bool{}
		for p := range at {
			for q := p; q <= len(text); q++ {
				if bytes.HasPrefix(text[q:], row) {
					next[q+len(row)] = true
				}
				if k == 0 || q == len(text) || text[q] != ' ' && text[q] != '\t' {
					break
				}
			}
		}
		at = next
	}
	for p := range at {
		if len(bytes.Trim(text[p:], " \t")) == 0 {
			return true
		}
	}
	return false
}

func BenchmarkWrap(b *testing.B) {
	var batch []byte
	for i := range 20 {
		line := "12:3" + string(rune('0'+i%10)) + " alice: the build is green again, shipping it after lunch"
		batch = append(batch, line[:60]...)
		batch = append(batch, '\n')
	}
	long := []byte(strings.Repeat("the quick brown fox jumps over the lazy dog ", 23)[:1000])
	for _, bm := range []struct {
		name string
		in   []byte
	}{
		{"20-short-lines", batch},
		{"1000-byte-line", long},
		{"1000-byte-line-sgr", []byte(red + string(long) + reset)},
	} {
		b.Run(bm.name, func(b *testing.B) {
			buf := make([]byte, 0, 2*len(bm.in))
			b.SetBytes(int64(len(bm.in)))
			b.ReportAllocs()
			for b.Loop() {
				buf = Wrap(buf[:0], bm.in, 80, 2)
			}
		})
	}
}
