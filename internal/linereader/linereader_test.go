package linereader

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"chatd/chat"
)

func TestLineReader(t *testing.T) {
	type result struct {
		line string
		err  error
	}
	tests := []struct {
		name string
		in   string
		max  int
		want []result
	}{
		{"lf", "a\nb\n", 10, []result{{"a", nil}, {"b", nil}, {"", io.EOF}}},
		{"crlf", "a\r\nb\r\n", 10, []result{{"a", nil}, {"b", nil}, {"", io.EOF}}},
		{"bare cr stays", "a\rb\n", 10, []result{{"a\rb", nil}, {"", io.EOF}}},
		{"last line without newline", "a\nb", 10, []result{{"a", nil}, {"b", nil}, {"", io.EOF}}},
		{"empty lines", "\n\n", 10, []result{{"", nil}, {"", nil}, {"", io.EOF}}},
		{"exactly max", "12345\n", 5, []result{{"12345", nil}, {"", io.EOF}}},
		{"exactly max crlf", "12345\r\n", 5, []result{{"12345", nil}, {"", io.EOF}}},
		{"one over max", "123456\nok\n", 5, []result{{"", ErrTooLong}, {"ok", nil}, {"", io.EOF}}},
		{"far over max", strings.Repeat("x", 100) + "\nok\n", 5, []result{{"", ErrTooLong}, {"ok", nil}, {"", io.EOF}}},
		{"too long at eof", strings.Repeat("x", 100), 5, []result{{"", ErrTooLong}, {"", io.EOF}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lr := New(strings.NewReader(tt.in), tt.max)
			for i, want := range tt.want {
				line, err := lr.ReadLine()
				if line != want.line || !errors.Is(err, want.err) {
					t.Fatalf("read %d: (%q, %v), want (%q, %v)", i, line, err, want.line, want.err)
				}
			}
		})
	}
}

// A 10 MB line is skipped without being held: memory stays at the buffer size.
func TestLineReaderDoesNotBufferHugeLines(t *testing.T) {
	huge := bytes.Repeat([]byte("x"), 10<<20)
	in := io.MultiReader(strings.NewReader("before\n"), bytes.NewReader(huge), strings.NewReader("\nafter\n"))
	lr := New(in, 4096)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, want := range []struct {
		line string
		err  error
	}{{"before", nil}, {"", ErrTooLong}, {"after", nil}, {"", io.EOF}} {
		line, err := lr.ReadLine()
		if line != want.line || !errors.Is(err, want.err) {
			t.Fatalf("got (%q, %v), want (%q, %v)", line, err, want.line, want.err)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("reading a 10 MB line allocated %d bytes", grew)
	}
}

// FuzzLineReader feeds arbitrary input through the reader and the sanitiser, as the transports
// do: nothing may panic, no line may exceed the limit, and every line must come out clean.
func FuzzLineReader(f *testing.F) {
	for _, s := range []string{"hello\nworld\n", "a\r\nb", strings.Repeat("y", 80) + "\nz\n", "\x00\x1b[2J\n\xff\n", "\r\r\n\n"} {
		f.Add([]byte(s), uint8(16))
	}
	f.Fuzz(func(t *testing.T, in []byte, max uint8) {
		limit := int(max) + 1
		lr := New(bytes.NewReader(in), limit)
		for n := 0; ; n++ {
			line, err := lr.ReadLine()
			if errors.Is(err, io.EOF) {
				return
			}
			if n > len(in)+1 {
				t.Fatalf("more lines than input bytes")
			}
			if errors.Is(err, ErrTooLong) {
				continue
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if len(line) > limit || strings.Contains(line, "\n") {
				t.Fatalf("line %q breaks the limit %d or holds a newline", line, limit)
			}
			if s := chat.Sanitize(line); !utf8.ValidString(s) || chat.Sanitize(s) != s {
				t.Fatalf("Sanitize(%+q) = %+q: invalid UTF-8, or not idempotent", line, s)
			}
		}
	})
}
