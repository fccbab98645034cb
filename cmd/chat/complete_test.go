package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeClock is the completer's clock in these tests: it moves only when told to.
type fakeClock struct{ t time.Time }

func (f *fakeClock) now() time.Time { return f.t }

func newTestCompleter(self string, lines ...string) (*completer, *fakeClock) {
	clock := &fakeClock{t: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}
	c := newCompleter(self, clock.now)
	for _, l := range lines {
		c.learn(l)
	}
	return c, clock
}

// press sends key to the completer with the cursor where '|' is in line, and returns the line
// the editor then shows, the cursor marked the same way.
func press(t *testing.T, c *completer, line string, key rune) string {
	t.Helper()
	pos := strings.Index(line, "|")
	if pos < 0 {
		t.Fatalf("no cursor in %q", line)
	}
	line = line[:pos] + line[pos+1:]
	newLine, newPos, ok := c.complete(line, pos, key)
	if !ok {
		newLine, newPos = line, pos // the editor handles the key as usual (Tab: nothing)
	}
	return newLine[:newPos] + "|" + newLine[newPos:]
}

// serverHelp is /help's answer as chatd writes it on the TCP protocol, an operator's part
// included.
var serverHelp = []string{
	"* commands:",
	"*   /help                  show this help",
	"*   /who, /names           list who is online",
	"*   /me ACTION             say what you do: /me waves",
	"*   /msg NAME TEXT         send TEXT to NAME only (kept if NAME is away)",
	"*   /keys [add KEY|remove FP] your name's keys",
	"*   /frobnicate            a command this client has never heard of",
	"*   /quit, /exit           leave (so does a line that is just \"bye\")",
	"*   //text                 send a message that starts with /",
	"* times are in the server's time zone, UTC (UTC+00:00)",
	"* operator commands:",
	"*   /kick NAME [reason]    disconnect NAME",
	"*   /motd TEXT             set the message of the day (/motd - clears it)",
}

func TestComplete(t *testing.T) {
	tests := []struct {
		name  string
		self  string
		learn []string
		line  string   // before the first Tab; '|' is the cursor
		tabs  []string // the line after each Tab in a row
	}{
		// Commands, at the start of the line only.
		{name: "command", line: "/jo|", tabs: []string{"/join |", "/join |"}},
		{name: "command in capitals", line: "/JO|", tabs: []string{"/join |"}},
		{name: "command after blanks", line: "  /jo|", tabs: []string{"  /join |"}},
		{name: "command not first", line: "say /jo|", tabs: []string{"say /jo|"}},
		{name: "commands in common, then cycled", line: "/wh|", tabs: []string{"/who|", "/who |", "/whois |", "/who |"}},
		{name: "a command that is a prefix of others", line: "/r|", tabs: []string{"/r|", "/r |", "/reply |", "/rooms |", "/r |"}},
		{name: "no such command", line: "/zz|", tabs: []string{"/zz|"}},
		{name: "// is no command", line: "//jo|", tabs: []string{"//jo|"}},
		{name: "server's commands", learn: serverHelp, line: "/fr|", tabs: []string{"/frobnicate |"}},
		{name: "server's commands replace the built-in ones", learn: serverHelp, line: "/jo|", tabs: []string{"/jo|"}},
		{name: "server's aliases", learn: serverHelp, line: "/na|", tabs: []string{"/names |"}},
		{name: "server's operator commands", learn: serverHelp, line: "/ki|", tabs: []string{"/kick |"}},
		{name: "server's /keys with its arguments", learn: serverHelp, line: "/k|", tabs: []string{"/k|", "/keys |", "/kick |"}},

		// Names: ": " after one at the start of the line, a space elsewhere.
		{name: "name first", learn: []string{"alice: hi"}, line: "al|", tabs: []string{"alice: |"}},
		{name: "name later", learn: []string{"alice: hi"}, line: "hi al|", tabs: []string{"hi alice |"}},
		{name: "name after a command", learn: []string{"alice: hi"}, line: "/msg al|", tabs: []string{"/msg alice |"}},
		{name: "name as written", learn: []string{"AliCe: hi"}, line: "ALI|", tabs: []string{"AliCe: |"}},
		{name: "name after @", learn: []string{"alice: hi"}, line: "@al|", tabs: []string{"@alice |"}},
		{name: "name inside the line", learn: []string{"alice: hi"}, line: "al| there", tabs: []string{"alice| there"}},
		{name: "whole name", learn: []string{"alice: hi"}, line: "alice|", tabs: []string{"alice: |", "alice: |"}},
		{name: "no such name", learn: []string{"alice: hi"}, line: "bo|", tabs: []string{"bo|"}},
		{name: "nothing typed", learn: []string{"alice: hi"}, line: "hi |", tabs: []string{"hi |"}},
		{name: "not a name", learn: []string{"alice: hi"}, line: "al,|", tabs: []string{"al,|"}},
		{name: "not oneself", self: "Alice", learn: []string{"* alice joined (2 online)", "alan: hi"}, line: "al|", tabs: []string{"alan: |"}},
		{name: "only oneself", self: "alice", learn: []string{"* alice joined (1 online)"}, line: "al|", tabs: []string{"al|"}},
		{
			name: "the last to speak first", learn: []string{"alice: one", "alan: two"},
			line: "al|", tabs: []string{"al|", "alan: |", "alice: |", "alan: |"},
		},
		{
			name: "who is here before who left", learn: []string{"alice: one", "alan: two", "* alan left"},
			line: "al|", tabs: []string{"al|", "alice: |", "alan: |"},
		},
		{
			name: "a join is activity", learn: []string{"alan: one", "* 2 online: alan, alice", "* alice joined (3 online)"},
			line: "hi al|", tabs: []string{"hi al|", "hi alice |", "hi alan |"},
		},
		{
			name: "never active: alphabetical", learn: []string{"* 3 online: carol, alice, Alan"},
			line: "a|", tabs: []string{"a|", "Alan: |", "alice: |"},
		},
		{
			name: "the common prefix", learn: []string{"alexander: one", "alexandra: two"},
			line: "al|", tabs: []string{"alexand|", "alexandra: |", "alexander: |"},
		},
		{
			name: "the common prefix, typed in another case", learn: []string{"alexander: one", "alexandra: two"},
			line: "AL|", tabs: []string{"alexand|", "alexandra: |"},
		},
		{
			name: "matches that differ in case keep the typing", learn: []string{"Alice: one", "alan: two"},
			line: "al|", tabs: []string{"al|", "alan: |", "Alice: |"},
		},
		{
			name: "cycling inside the line", learn: []string{"alice: one", "alan: two"},
			line: "hey al|, how", tabs: []string{"hey al|, how", "hey alan|, how", "hey alice|, how"},
		},

		// Rooms.
		{name: "room", learn: []string{"#go alice: hi"}, line: "#g|", tabs: []string{"#go |"}},
		{name: "room after /join", learn: []string{"* alice joined #go (3 online)"}, line: "/join #G|", tabs: []string{"/join #go |"}},
		{
			name: "rooms from /rooms", learn: []string{"* #golang (4 online)", "* #go (3 online): the Go language"},
			line: "#go|", tabs: []string{"#go|", "#go |", "#golang |"},
		},
		{name: "no such room", learn: []string{"* #go (3 online)"}, line: "#r|", tabs: []string{"#r|"}},
		{name: "a name is no room", learn: []string{"gopher: hi"}, line: "#go|", tabs: []string{"#go|"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestCompleter(tt.self, tt.learn...)
			line := tt.line
			for i, want := range tt.tabs {
				line = press(t, c, line, '\t')
				if line != want {
					t.Fatalf("Tab %d: %q, want %q", i+1, line, want)
				}
			}
		})
	}
}

// TestCompleteCycleEnds checks that a cycle through matches lasts only while the line is as the
// last Tab left it.
func TestCompleteCycleEnds(t *testing.T) {
	c, _ := newTestCompleter("", "alice: one", "alan: two", "bob: three", "bea: four")
	line := press(t, c, "al|", '\t')
	line = press(t, c, line, '\t')
	if line != "alan: |" {
		t.Fatalf("got %q", line)
	}
	// A key typed ends the cycle (the editor inserts it): the next Tab completes afresh.
	if got := press(t, c, line, 'b'); got != line {
		t.Fatalf("a letter changed the line: %q", got)
	}
	if line = press(t, c, "alan: b|", '\t'); line != "alan: b|" {
		t.Fatalf("after typing: %q", line)
	}
	if line = press(t, c, line, '\t'); line != "alan: bea |" {
		t.Fatalf("cycling after typing: %q", line)
	}
	// A line changed by other keys (backspace, arrows: the editor's own) is not the cycle's.
	c.complete("al", 2, '\t')
	if line = press(t, c, "xal|", '\t'); line != "xal|" {
		t.Fatalf("another line went on cycling: %q", line)
	}
	// A new line never goes on with the last one's cycle, even if it reads the same.
	line = press(t, c, "al|", '\t')
	c.reset()
	if got := press(t, c, line, '\t'); got != "al|" {
		t.Fatalf("a new line went on cycling: %q", got)
	}
}

// state lists who the completer knows, in its order, who is not online marked with '~', then
// the rooms.
func state(c *completer) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, n := range c.peopleFor("") {
		if !c.people[strings.ToLower(n)].online {
			n += "~"
		}
		out = append(out, n)
	}
	return strings.Join(append(out, c.roomsFor("#")...), " ")
}

func TestLearn(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  string
	}{
		{"message", []string{"alice: hi"}, "alice"},
		{"action", []string{"** bob waves"}, "bob"},
		{"dm", []string{"[dm from carol] psst"}, "carol"},
		{"dm sent", []string{"[dm to dave] you there?"}, "dave~"},
		{"order", []string{"alice: hi", "** bob waves", "carol: yo"}, "carol bob alice"},
		{"timestamps", []string{"09:41 alice: hi", "09:42 * bob joined (2 online)"}, "bob alice"},
		{"history", []string{"[history 2026-11-25 09:41] alice: lunch?", "[history 2026-11-25 09:41] ** carol waves"}, "carol~ alice~"},
		{"history does not hide who is online", []string{"alice: hi", "[history 2026-11-25 09:41] alice: lunch?"}, "alice"},
		{"joined", []string{"* alice joined (3 online)"}, "alice"},
		{"joined a room", []string{"* alice joined #go (3 online)"}, "alice #go"},
		{"many joined", []string{"* alice, bob, carol, dave, erin and 37 others joined (412 online)"}, "erin dave carol bob alice"},
		{"two joined", []string{"* alice and bob joined (2 online)"}, "bob alice"},
		{"left", []string{"alice: hi", "* alice left"}, "alice~"},
		{"left a room", []string{"* alice joined #go (3 online)", "* alice left #go"}, "alice~ #go"},
		{"left, too slow", []string{"bob: hi", "* bob left (too slow)"}, "bob~"},
		{"many left", []string{"* 3 online: alice, bob, carol", "* alice, bob and 3 others left"}, "carol alice~ bob~"},
		{"kicked", []string{"bob: spam", "* bob was kicked by op: spam"}, "bob~"},
		{"banned", []string{"bob: spam", "* bob was banned by op"}, "bob~"},
		{"who", []string{"* 3 online: carol, alice, bob"}, "alice bob carol"},
		{"who in a room", []string{"* 2 online in #go: alice, bob"}, "alice bob #go"},
		{"who with away messages", []string{"* 4 online in #go: alice (away: lunch, then a walk, back at 2), bob (away: brb), carol, dave (away: x, eve)"}, "alice bob carol dave #go"},
		{"who, not a name", []string{"* 2 online: error, alice"}, "alice"},
		{"room tag", []string{"#go alice: hi", "#rust ** bob waves"}, "bob alice #rust #go"},
		{"room tag and timestamp", []string{"09:41 #go alice: hi"}, "alice #go"},
		{"rooms", []string{"* #go (3 online)", "* #Rust (1 online): topic", "* #help-desk (0 online)"}, "#help-desk #rust #go"},
		{"you", []string{"* you joined #go in another session", "* you left #go; you are in #lobby now"}, "#lobby #go"},
		{"a room in a notice", []string{"* you are in #go now."}, "#go"},
		{"nobody", []string{
			"* welcome to chatd, alice! /help lists the commands; bye leaves.",
			"* the last 3 messages:",
			"* slow down: you may send 2 lines a second (10 at once); your lines are delayed",
			"* alice set the topic: we all left early",
			"* 1 private message(s) arrived while you were away:",
			"* server is shutting down, goodbye",
			"* goodbye, alice!",
			"error: unknown command \"/frobnicate\" (/help lists the commands)",
			"error: name \"bob\" is taken by someone online",
			"* 3 people joined",
			"* 2 online in #no/room: alice, bob",
			"#not/a/room: hi",
			"# alice: hi",
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestCompleter("", tt.lines...)
			if got := state(c); got != tt.want {
				t.Fatalf("learnt %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLearnHelp(t *testing.T) {
	c, _ := newTestCompleter("", serverHelp...)
	want := "/exit /frobnicate /help /keys /kick /me /motd /msg /names /quit /who"
	if got := strings.Join(c.commandsFor("/"), " "); got != want {
		t.Fatalf("commands %q, want %q", got, want)
	}
	// An indented notice that is not in a /help answer adds nothing.
	c.learn("* alice joined (2 online)")
	c.learn("*   /evil")
	if got := strings.Join(c.commandsFor("/"), " "); got != want {
		t.Fatalf("commands %q, want %q", got, want)
	}
	// The next /help replaces what the last one said.
	c.learn("* commands:")
	c.learn("*   /only                  the one command")
	if got := strings.Join(c.commandsFor("/"), " "); got != "/only" {
		t.Fatalf("commands %q, want /only", got)
	}
	// A /help answer this client cannot read leaves the commands as they were.
	c.learn("* commands:")
	c.learn("* something else entirely")
	if got := strings.Join(c.commandsFor("/"), " "); got != "/only" {
		t.Fatalf("commands %q, want /only", got)
	}
}

// TestForget checks that who left stays completable for a while, and that who is online does
// not go.
func TestForget(t *testing.T) {
	c, clock := newTestCompleter("", "alice: hi", "* alice left", "alan: hi", "[history 2026-11-25 08:00] albert: old news")
	clock.t = clock.t.Add(forgetAfter)
	if got := press(t, c, "al|", '\t'); got != "al|" {
		t.Fatalf("%q", got)
	}
	if got := state(c); got != "alan albert~ alice~" {
		t.Fatalf("after %v: %q", forgetAfter, got)
	}
	clock.t = clock.t.Add(time.Second)
	if got := state(c); got != "alan" {
		t.Fatalf("after %v: %q", forgetAfter+time.Second, got)
	}
	if got := press(t, c, "al|", '\t'); got != "alan: |" {
		t.Fatalf("%q", got)
	}
	// Back, and gone again: the time counts from the last leave.
	c.learn("* alice joined (2 online)")
	clock.t = clock.t.Add(time.Hour)
	c.learn("* alice left")
	clock.t = clock.t.Add(forgetAfter)
	if got := state(c); got != "alan alice~" {
		t.Fatalf("%q", got)
	}
}

// TestPrune fills the completer past its bound: who left long ago goes first, then who left
// the longest ago; who is online stays.
func TestPrune(t *testing.T) {
	c, clock := newTestCompleter("")
	c.learn("* 1 online: here")
	for i := range maxPeople - 1 {
		c.learn(fmt.Sprintf("* old%d left", i))
	}
	clock.t = clock.t.Add(forgetAfter + time.Second)
	c.learn("* recent0 left")
	c.learn("* recent1 left")
	if n := len(c.people); n != 3 {
		t.Fatalf("%d people remembered, want 3", n)
	}
	for i := range 2 * maxPeople {
		c.learn(fmt.Sprintf("* new%d left", i))
	}
	if n := len(c.people); n > 2*maxPeople {
		t.Fatalf("%d people remembered", n)
	}
	if got := press(t, c, "her|", '\t'); got != "here: |" {
		t.Fatalf("who is online was forgotten: %q", got)
	}
	if got := press(t, c, "recent|", '\t'); got != "recent|" {
		t.Fatalf("who left first is still there: %q", got)
	}
	if got := press(t, c, fmt.Sprintf("new%d|", 2*maxPeople-1), '\t'); got != fmt.Sprintf("new%d: |", 2*maxPeople-1) {
		t.Fatalf("who left last was forgotten: %q", got)
	}
}

// TestLearnServerHelp reads a real server's /help: what it lists for everyone is what the
// built-in list has, so that completion is the same before and after the user asks for /help.
func TestLearnServerHelp(t *testing.T) {
	s := defaultServer(t)
	alice := join(t, s.addr, "alice")
	alice.send("/help")
	all := alice.lines.waitFor("the end of /help", func(s string) bool { return strings.Contains(s, "\n* times are in ") })
	c, _ := newTestCompleter("alice")
	for _, l := range strings.Split(all, "\n") {
		c.learn(l)
	}
	got := c.commandsFor("/")
	want := strings.Fields(builtinCommands)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the server's /help lists\n%q\nthe built-in list has\n%q", got, want)
	}
}
