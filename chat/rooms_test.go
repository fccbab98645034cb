package chat

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseRoom(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"go", "#go", ""},
		{"#go", "#go", ""},
		{"#Go", "#go", ""},
		{"GO", "#go", ""},
		{"#a.b-c_d9", "#a.b-c_d9", ""},
		{"-", "#-", ""},
		{"#" + strings.Repeat("x", 32), "#" + strings.Repeat("x", 32), ""},
		{"", "", `room name "" is empty`},
		{"#", "", `room name "#" is empty`},
		{"##go", "", `room name "##go" may only contain letters, digits, '_', '.' and '-' after the #`},
		{"#go lang", "", `room name "#go lang" may only contain letters, digits, '_', '.' and '-' after the #`},
		{"#gö", "", `room name "#gö" may only contain letters, digits, '_', '.' and '-' after the #`},
		{"#" + strings.Repeat("x", 33), "", `room name "#` + strings.Repeat("x", 33) + `" is too long (at most 32 characters after the #)`},
		{"#\x1b[2J", "", `room name "#" may only contain letters, digits, '_', '.' and '-' after the #`}, // shown sanitised
	}
	for _, tt := range tests {
		got, err := ParseRoom(tt.in)
		if tt.err != "" {
			var re *RoomError
			if err == nil || !errors.As(err, &re) || !errors.Is(err, ErrRoomInvalid) {
				t.Errorf("ParseRoom(%q) = %q, %v; want a *RoomError", tt.in, got, err)
				continue
			}
			if err.Error() != tt.err {
				t.Errorf("ParseRoom(%q): %q, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRoom(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		if !IsRoom(got) {
			t.Errorf("IsRoom(%q) = false for ParseRoom's own result", got)
		}
	}
	if IsRoom("go") || IsRoom("#Go") {
		t.Error("IsRoom takes only the shown form")
	}
}

// FuzzParseRoom checks that a room name is accepted in one shown form, that ParseRoom's result
// parses to itself, and that a refusal is safe to show: valid UTF-8, no control characters.
func FuzzParseRoom(f *testing.F) {
	for _, s := range []string{"go", "#go", "#Go", "", "#", "##", "#a b", "#\x00", "\xff", strings.Repeat("x", 40), "#é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRoom(s)
		if err != nil {
			msg := err.Error()
			if !utf8.ValidString(msg) || Sanitize(msg) != msg || len(msg) > 300 {
				t.Fatalf("ParseRoom(%q) refuses with %q: not fit to show", s, msg)
			}
			return
		}
		if !IsRoom(r) || len(r) < 2 || len(r) > MaxRoomLen+1 || r != strings.ToLower(r) {
			t.Fatalf("ParseRoom(%q) = %q", s, r)
		}
		if again, err := ParseRoom(r); err != nil || again != r {
			t.Fatalf("ParseRoom(%q) = %q, %v; want it unchanged", r, again, err)
		}
		if Fold(strings.TrimPrefix(s, "#")) != r[1:] {
			t.Fatalf("ParseRoom(%q) = %q: not the name typed", s, r)
		}
	})
}
