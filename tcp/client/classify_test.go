package client

import (
	"strings"
	"testing"
	"unicode/utf8"

	"chatd/chat"
)

func TestParse(t *testing.T) {
	tests := []struct {
		line string
		want Line
	}{
		{"alice: hi there", Line{Message, "", "alice", "hi there"}},
		{"a.b-c_d: x: y", Line{Message, "", "a.b-c_d", "x: y"}},
		{"alice: ", Line{Message, "", "alice", ""}},
		{"** bob waves", Line{Action, "", "bob", "waves"}},
		{"* bob joined #lobby (2 online)", Line{Notice, "", "", "bob joined #lobby (2 online)"}},
		{"* 2 online in #lobby: alice, bob", Line{Notice, "", "", "2 online in #lobby: alice, bob"}},
		{"#go alice: hi", Line{Message, "#go", "alice", "hi"}},
		{"#go ** bob waves", Line{Action, "#go", "bob", "waves"}},
		{"[dm from alice] psst", Line{DMIn, "", "alice", "psst"}},
		{"[dm to bob] psst", Line{DMOut, "", "bob", "psst"}},
		{"error: message too long", Line{Error, "", "", "message too long"}},
		{"error:", Line{Error, "", "", ""}},
		// Shapes that are not quite any of the above.
		{"", Line{Other, "", "", ""}},
		{"alice:hi", Line{Other, "", "", "alice:hi"}},
		{"two words: hi", Line{Other, "", "", "two words: hi"}},
		{"-x: hi", Line{Other, "", "", "-x: hi"}},
		{"error:x", Line{Other, "", "", "error:x"}},
		{"server: restarting", Line{Other, "", "", "server: restarting"}}, // a reserved name is no one
		{strings.Repeat("n", 33) + ": long name", Line{Other, "", "", strings.Repeat("n", 33) + ": long name"}},
		{"**bob waves", Line{Other, "", "", "**bob waves"}},
		{"** bob", Line{Other, "", "", "** bob"}},
		{"[dm from al ice] x", Line{Other, "", "", "[dm from al ice] x"}},
		{"[dm to bob]x", Line{Other, "", "", "[dm to bob]x"}},
		{"*", Line{Other, "", "", "*"}},
		{"#go * bob joined", Line{Other, "", "", "#go * bob joined"}}, // only messages and actions are tagged
		{"#go #go alice: hi", Line{Other, "", "", "#go #go alice: hi"}},
		{"#Go alice: hi", Line{Other, "", "", "#Go alice: hi"}},
		{"#go", Line{Other, "", "", "#go"}},
	}
	for _, tt := range tests {
		if got := Parse(tt.line); got != tt.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.line, got, tt.want)
		}
		if got := Classify(tt.line); got != tt.want.Kind {
			t.Errorf("Classify(%q) = %v, want %v", tt.line, got, tt.want.Kind)
		}
	}
}

// FuzzClassify checks that every line parses into parts that rebuild it, that a name is always
// one the room would accept, and that no text a member sends can change what their line is.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"alice: hi", "** bob waves", "* alice joined #lobby (1 online)", "[dm from a] x", "[dm to b] y",
		"error: no", "error:", "", "x", "alice:", "a: b: c", "** a", "* ", "[dm from ] x",
		"#go alice: hi", "#go ** bob waves", "#go #go a: b", "# a: b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		l := Parse(line)
		if k := Classify(line); k != l.Kind {
			t.Fatalf("Classify = %v, Parse = %v", k, l.Kind)
		}
		var rebuilt string
		switch l.Kind {
		case Message:
			rebuilt = l.Name + ": " + l.Text
		case Action:
			rebuilt = "** " + l.Name + " " + l.Text
		case Notice:
			rebuilt = "* " + l.Text
		case DMIn:
			rebuilt = "[dm from " + l.Name + "] " + l.Text
		case DMOut:
			rebuilt = "[dm to " + l.Name + "] " + l.Text
		case Error:
			rebuilt = "error: " + l.Text
			if line == "error:" {
				rebuilt = line
			}
		case Other:
			rebuilt = l.Text
		default:
			t.Fatalf("unknown kind %v", l.Kind)
		}
		if l.Room != "" {
			if l.Kind != Message && l.Kind != Action || !chat.IsRoom(l.Room) {
				t.Fatalf("Parse(%q) = %+v: a room on a line that cannot have one", line, l)
			}
			rebuilt = l.Room + " " + rebuilt
		}
		if rebuilt != line {
			t.Fatalf("Parse(%q) = %+v, which rebuilds %q", line, l, rebuilt)
		}
		switch l.Kind {
		case Message, Action, DMIn, DMOut:
			if err := chat.ValidateName(l.Name); err != nil {
				t.Fatalf("Parse(%q) found the name %q: %v", line, l.Name, err)
			}
		default:
			if l.Name != "" {
				t.Fatalf("Parse(%q) = %+v: a name on a line that has none", line, l)
			}
		}
		if l.Kind.String() == "" {
			t.Fatal("a kind without a name")
		}

		// Whatever a member says, their line stays theirs, as the room renders it.
		text := strings.TrimSpace(chat.Sanitize(line))
		if !utf8.ValidString(text) {
			t.Fatalf("Sanitize(%q) is not UTF-8", line)
		}
		for _, tt := range []struct {
			line string
			want Line
		}{
			{"alice: " + text, Line{Message, "", "alice", text}},
			{"** alice " + text, Line{Action, "", "alice", text}},
			{"[dm from alice] " + text, Line{DMIn, "", "alice", text}},
			{"[dm to alice] " + text, Line{DMOut, "", "alice", text}},
			{"#go alice: " + text, Line{Message, "#go", "alice", text}},
			{"#go ** alice " + text, Line{Action, "#go", "alice", text}},
		} {
			if got := Parse(tt.line); got != tt.want {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.line, got, tt.want)
			}
		}
	})
}
