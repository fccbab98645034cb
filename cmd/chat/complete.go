package main

import (
	"slices"
	"strings"
	"sync"
	"time"

	"chatd/chat"
	"chatd/tcp/client"
)

// Tab completion in the interactive mode. What can be completed is learnt from the lines the
// server sends, never asked for: completing sends nothing.

// builtinCommands are the commands Tab completes until the user has asked for /help: the
// README's table, room commands included. The server's /help is authoritative: once it has been
// seen, its list replaces this one, so that an older or newer server completes what it has.
const builtinCommands = "/me /msg /who /names /history /whois /keys /ignore /unignore /motd " +
	"/timestamps /help /quit /exit /join /part /rooms /topic /private /invite /away /back /reply /r /weblogin"

const (
	// forgetAfter is how long someone who left stays completable: long enough to answer their
	// last words or /msg them (a registered name's messages wait for them).
	forgetAfter = 10 * time.Minute
	// maxPeople and maxRooms bound what a client in a huge, busy server remembers. Past them,
	// who left and rooms not seen for the longest are forgotten first; who is online never is.
	maxPeople = 20000
	maxRooms  = 1000
	// maxRoomLen is the longest room name after its '#', as the server's rules have it.
	maxRoomLen = 32
)

// completer knows the people, rooms and commands Tab completes, and the state of a cycle
// through several matches. It is used from two goroutines: the one receiving lines, which
// teaches it, and the line editor's, which completes.
type completer struct {
	now func() time.Time

	mu     sync.Mutex
	self   string             // folded: the user's own name, never offered
	people map[string]*person // by folded name
	rooms  map[string]uint64  // room name ("#go") -> when last seen (clock)
	// commands are the server's, from its /help answer; nil until one has been seen.
	commands []string
	// inHelp: the last line was part of a /help answer, whose entries follow; freshHelp: none
	// has been read yet, so the first one replaces what the commands were.
	inHelp, freshHelp bool
	// clock counts what happens, so that "most recently" needs no wall clock.
	clock   uint64
	pruneAt int
	cycle   *cycle
}

// person is someone the client has heard of.
type person struct {
	name   string // as they write it
	online bool
	active uint64    // the clock when they last said or did something; 0 for never
	seen   uint64    // the clock when they were last heard of at all
	left   time.Time // while !online: when they left, or were first heard of
}

// cycle is a completion with several matches: each further Tab puts the next one in the word's
// place, as long as the line is as the last Tab left it.
type cycle struct {
	start, pos int // the word being cycled: line[start:pos]
	line       string
	matches    []string
	i          int // the match in place; -1 for none yet (the common prefix is)
	suffix     string
}

func newCompleter(self string, now func() time.Time) *completer {
	return &completer{
		now:     now,
		self:    chat.Fold(self),
		people:  make(map[string]*person),
		rooms:   make(map[string]uint64),
		pruneAt: maxPeople,
	}
}

// learn takes in a line from the server, sanitised: who speaks, arrives, leaves or is online,
// which rooms exist, and which commands the server has.
func (c *completer) learn(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	line = cutClock(line) // /timestamps on
	earlier := false
	if rest, ok := strings.CutPrefix(line, "[history "); ok {
		if _, after, ok := strings.Cut(rest, "] "); ok {
			line, earlier = after, true
		}
	}
	if room, rest, ok := cutRoomTag(line); ok {
		c.sawRoom(room)
		line = rest
	}
	l := client.Parse(line)
	if l.Kind == client.Notice && c.helpLine(l.Text) {
		return
	}
	c.inHelp = false
	switch {
	case l.Name == "":
	case earlier:
		// Someone who spoke before the user came: worth completing for a while, but not
		// known to be here, nor more recent than anything live.
		if c.people[chat.Fold(l.Name)] == nil {
			c.heard(l.Name).active = c.tick()
		}
	case l.Kind == client.DMOut:
		// The user wrote to them: recent, whether or not they are online.
		c.heard(l.Name).active = c.tick()
	default:
		p := c.heard(l.Name)
		p.online, p.active = true, c.tick()
	}
	if l.Kind == client.Notice {
		c.notice(l.Text)
	}
}

// notice learns from a notice: joins and leaves, /who's answer, room names.
func (c *completer) notice(text string) {
	for _, w := range strings.Fields(text) {
		if room, ok := roomName(strings.TrimRight(strings.TrimLeft(w, "("), ",.:;!?)")); ok {
			c.sawRoom(room)
		}
	}
	// "you joined #go in another session", "you left #go; ...": the user, not someone called
	// "you".
	if names, ok := eventNames(text, "joined"); ok {
		for _, n := range names {
			if n != "you" {
				p := c.heard(n)
				p.online, p.active = true, c.tick()
			}
		}
		return
	}
	if names, ok := eventNames(text, "left"); ok {
		for _, n := range names {
			if n != "you" {
				c.gone(n)
			}
		}
		return
	}
	if list, ok := whoList(text); ok {
		for _, n := range whoNames(list) {
			c.heard(n).online = true
		}
		return
	}
	for _, how := range []string{" was kicked by ", " was banned by "} {
		if name, _, ok := strings.Cut(text, how); ok && chat.ValidName(name) {
			c.gone(name)
			return
		}
	}
}

// helpLine reads a line of the server's /help answer ("commands:", then one entry a line:
// "  /who, /names   list who is online"), and reports whether it was one.
func (c *completer) helpLine(text string) bool {
	switch {
	case text == "commands:":
		c.inHelp, c.freshHelp = true, true
		return true
	case text == "operator commands:":
		c.inHelp = true
		return true
	case !c.inHelp || !strings.HasPrefix(text, "  "):
		return false
	}
	for _, f := range strings.Fields(text) {
		name := strings.ToLower(strings.TrimSuffix(f, ","))
		if !strings.HasPrefix(name, "/") {
			break // the arguments and the description
		}
		if !isCommand(name) {
			continue // "//text"
		}
		if c.freshHelp {
			c.commands, c.freshHelp = nil, false
		}
		if !slices.Contains(c.commands, name) {
			c.commands = append(c.commands, name)
		}
	}
	return true
}

func (c *completer) tick() uint64 {
	c.clock++
	return c.clock
}

// heard returns the person called name, met now if they were not known.
func (c *completer) heard(name string) *person {
	key := chat.Fold(name)
	p := c.people[key]
	if p == nil {
		if len(c.people) >= c.pruneAt {
			c.prune()
		}
		p = &person{name: name, left: c.now()} // not online until something says so
		c.people[key] = p
	}
	p.name = name // as they write it now
	p.seen = c.tick()
	return p
}

// gone marks name as no longer online; the name stays completable for forgetAfter.
func (c *completer) gone(name string) {
	p := c.heard(name)
	p.online, p.left = false, c.now()
}

func (c *completer) sawRoom(room string) {
	if _, ok := c.rooms[room]; !ok && len(c.rooms) >= 2*maxRooms {
		// Keep the maxRooms seen last.
		names := make([]string, 0, len(c.rooms))
		for r := range c.rooms {
			names = append(names, r)
		}
		slices.SortFunc(names, func(a, b string) int { return compareUint(c.rooms[b], c.rooms[a]) })
		for _, r := range names[maxRooms:] {
			delete(c.rooms, r)
		}
	}
	c.rooms[room] = c.tick()
}

// prune forgets who left long enough ago, then, if that is not enough, who is not online and
// was heard of the longest ago. It runs only when the map has grown well past maxPeople, so that a room
// of more than maxPeople online does not prune on every arrival.
func (c *completer) prune() {
	now := c.now()
	var gone []string
	for k, p := range c.people {
		switch {
		case p.online:
		case now.Sub(p.left) > forgetAfter:
			delete(c.people, k)
		default:
			gone = append(gone, k)
		}
	}
	if extra := len(c.people) - maxPeople; extra > 0 && len(gone) > 0 {
		slices.SortFunc(gone, func(a, b string) int { return compareUint(c.people[a].seen, c.people[b].seen) })
		for _, k := range gone[:min(extra, len(gone))] {
			delete(c.people, k)
		}
	}
	c.pruneAt = max(maxPeople, 2*len(c.people))
}

// reset ends a cycle through matches: the line being edited is done with.
func (c *completer) reset() {
	c.mu.Lock()
	c.cycle = nil
	c.mu.Unlock()
}

// complete is the line editor's AutoCompleteCallback. Tab completes the word before the
// cursor: a command at the start of the line, a room after '#', otherwise a person's name
// (followed by ": " at the start of the line, IRC style). With several matches, the first Tab
// completes what they have in common and each further one puts the next match in place, the
// most likely first. Every other key is the line editor's.
func (c *completer) complete(line string, pos int, key rune) (newLine string, newPos int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if key != '\t' {
		c.cycle = nil
		return "", 0, false
	}
	if cy := c.cycle; cy != nil && cy.line == line && cy.pos == pos {
		cy.i = (cy.i + 1) % len(cy.matches)
		cy.line, cy.pos = splice(line, cy.start, pos, cy.matches[cy.i]+cy.suffix)
		return cy.line, cy.pos, true
	}
	c.cycle = nil

	start := strings.LastIndexByte(line[:pos], ' ') + 1
	word := line[start:pos]
	atStart := strings.TrimLeft(line[:start], " ") == ""
	var matches []string
	suffix := " "
	switch {
	case word == "":
		return "", 0, false
	case word[0] == '/':
		if !atStart {
			return "", 0, false
		}
		matches = c.commandsFor(word)
	case word[0] == '#':
		matches = c.roomsFor(word)
	default:
		// "@al" completes as "al" does, and keeps its "@".
		lead := len(word) - len(strings.TrimLeft(word, "@(<'\""))
		start, word = start+lead, word[lead:]
		if word == "" || !isNameBytes(word) {
			return "", 0, false
		}
		matches = c.peopleFor(word)
		if atStart && lead == 0 {
			suffix = ": "
		}
	}
	if pos != len(line) {
		suffix = "" // editing inside the line: what follows is the user's
	}
	switch len(matches) {
	case 0:
		return "", 0, false
	case 1:
		newLine, newPos = splice(line, start, pos, matches[0]+suffix)
		return newLine, newPos, true
	}
	common := commonPrefix(matches)
	if len(common) < len(word) {
		common = word // they differ in case within what was typed: keep the typing
	}
	newLine, newPos = splice(line, start, pos, common)
	c.cycle = &cycle{start: start, pos: newPos, line: newLine, matches: matches, i: -1, suffix: suffix}
	return newLine, newPos, true
}

// commandsFor returns the commands starting with prefix, any case, in alphabetical order.
func (c *completer) commandsFor(prefix string) []string {
	all := c.commands
	if all == nil {
		all = strings.Fields(builtinCommands)
	}
	prefix = strings.ToLower(prefix)
	var out []string
	for _, cmd := range all {
		if strings.HasPrefix(cmd, prefix) {
			out = append(out, cmd)
		}
	}
	slices.Sort(out)
	return out
}

// roomsFor returns the rooms starting with prefix, any case, the most recently seen first.
func (c *completer) roomsFor(prefix string) []string {
	prefix = strings.ToLower(prefix)
	var out []string
	for r := range c.rooms {
		if strings.HasPrefix(r, prefix) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		if n := compareUint(c.rooms[b], c.rooms[a]); n != 0 {
			return n
		}
		return strings.Compare(a, b)
	})
	return out
}

// peopleFor returns the names starting with prefix, any case, as their owners write them: who
// is online first, then who left lately; within each, the most recently active first, then in
// alphabetical order. Who left more than forgetAfter ago is forgotten here.
func (c *completer) peopleFor(prefix string) []string {
	prefix = chat.Fold(prefix)
	now := c.now()
	var found []*person
	for k, p := range c.people {
		switch {
		case !p.online && now.Sub(p.left) > forgetAfter:
			delete(c.people, k)
		case k != c.self && strings.HasPrefix(k, prefix):
			found = append(found, p)
		}
	}
	slices.SortFunc(found, func(a, b *person) int {
		switch {
		case a.online != b.online:
			if a.online {
				return -1
			}
			return 1
		case a.active != b.active:
			return compareUint(b.active, a.active)
		}
		return strings.Compare(chat.Fold(a.name), chat.Fold(b.name))
	})
	out := make([]string, len(found))
	for i, p := range found {
		out[i] = p.name
	}
	return out
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// splice replaces line[start:end] with s, and returns the new line and the position just
// after s.
func splice(line string, start, end int, s string) (string, int) {
	return line[:start] + s + line[end:], start + len(s)
}

// commonPrefix is the longest prefix, byte for byte, that all of words share.
func commonPrefix(words []string) string {
	p := words[0]
	for _, w := range words[1:] {
		n := 0
		for n < len(p) && n < len(w) && p[n] == w[n] {
			n++
		}
		p = p[:n]
	}
	return p
}

// cutClock removes the "HH:MM " /timestamps puts at the start of live lines.
func cutClock(line string) string {
	if len(line) > 6 && isDigit(line[0]) && isDigit(line[1]) && line[2] == ':' &&
		isDigit(line[3]) && isDigit(line[4]) && line[5] == ' ' {
		return line[6:]
	}
	return line
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// cutRoomTag splits "#go alice: hi", a line from a room other than the current one, into the
// room and the line.
func cutRoomTag(line string) (room, rest string, ok bool) {
	if !strings.HasPrefix(line, "#") {
		return "", "", false
	}
	tag, rest, found := strings.Cut(line, " ")
	if room, ok = roomName(tag); !ok || !found {
		return "", "", false
	}
	return room, rest, true
}

// roomName checks a room's name as the server shows it: '#' and 1–32 of A–Z a–z 0–9 _ . -,
// and returns it in lower case, as rooms are named.
func roomName(s string) (string, bool) {
	name, ok := strings.CutPrefix(s, "#")
	if !ok || name == "" || len(name) > maxRoomLen || !isNameBytes(name) {
		return "", false
	}
	return "#" + chat.Fold(name), true
}

func isCommand(s string) bool {
	name, ok := strings.CutPrefix(s, "/")
	return ok && name != "" && isNameBytes(name) && chat.IsAlnum(name[0])
}

func isNameBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; !chat.IsAlnum(b) && b != '_' && b != '.' && b != '-' {
			return false
		}
	}
	return true
}

// eventNames reads a join or leave notice, "alice joined #go (3 online)", "alice left",
// "alice, bob and 3 others left (too slow)": the names in it, for verb "joined" or "left".
func eventNames(text, verb string) ([]string, bool) {
	list, tail, ok := strings.Cut(text, " "+verb)
	if !ok || tail != "" && tail[0] != ' ' {
		return nil, false
	}
	return nameList(list)
}

// whoList reads /who's answer, "3 online in #go: alice, bob (away: lunch), carol" (or, from a
// server with one room, "3 online: alice, bob, carol"), and returns the list.
func whoList(text string) (string, bool) {
	count, rest, ok := strings.Cut(text, " online")
	if !ok || count == "" || strings.TrimLeft(count, "0123456789") != "" {
		return "", false
	}
	if r, ok := strings.CutPrefix(rest, " in "); ok {
		room, after, _ := strings.Cut(r, ":")
		if _, ok := roomName(room); !ok {
			return "", false
		}
		rest = ":" + after
	}
	return strings.CutPrefix(rest, ": ")
}

// whoNames reads the names in /who's list. An away message is the person's own words and may
// hold anything, ", " included: what follows " (away: " up to an item ending in ")" is skipped,
// and so is any item that is not a name.
func whoNames(list string) []string {
	var names []string
	inAway := false
	for _, item := range strings.Split(list, ", ") {
		if inAway {
			inAway = !strings.HasSuffix(item, ")")
			continue
		}
		name, away, hasAway := strings.Cut(item, " (away: ")
		inAway = hasAway && !strings.HasSuffix(away, ")")
		if chat.ValidName(name) {
			names = append(names, name)
		}
	}
	return names
}

// nameList reads "alice", "alice and bob", "alice, bob, carol" or "alice, bob and 37 others".
// Every item must be a valid name, so that no other notice passes for a list of names.
func nameList(s string) ([]string, bool) {
	items := strings.Split(s, ", ")
	if last, final, ok := strings.Cut(items[len(items)-1], " and "); ok {
		items[len(items)-1] = last
		if n, ok := strings.CutSuffix(final, " others"); !ok || n == "" || strings.TrimLeft(n, "0123456789") != "" {
			items = append(items, final)
		}
	}
	for _, n := range items {
		if !chat.ValidName(n) {
			return nil, false
		}
	}
	return items, true
}
