package room

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kyokomi/emoji/v2"

	"chatd/chat"
)

// Tab completion costs a look at the room under the hub's lock, so a session gets a bounded
// number: completionBurst at once, completionRate a second after that. A Tab over the limit does
// nothing, as a Tab with nothing to complete does.
const (
	completionRate  = 10
	completionBurst = 20
	// maxChoices is how many candidates a Tab lists when it cannot decide.
	maxChoices = 30
)

// Complete completes the word before the cursor of a line being typed (pos is a byte offset
// into line): a command (/jo → /join), a room (#g → #go), an emoji shortcode (:wa → :wave:) or
// the name of someone else online, preferring those in the current room (al → alice). One candidate
// completes the word; several extend it to what they share, and when they share no more, the
// member is shown them. It returns the line and the cursor as they are now. Terminals call it
// when the user presses Tab.
func (m *Member) Complete(line string, pos int) (string, int) {
	if pos < 0 || pos > len(line) || !m.mayComplete() {
		return line, pos
	}
	start := strings.LastIndexByte(line[:pos], ' ') + 1
	word := line[start:pos]
	if word == "" {
		return line, pos
	}
	first := strings.TrimSpace(line[:start]) == ""
	prefix := chat.Fold(word)
	var matches []string
	suffix := " "
	switch {
	case word[0] == '/' && first:
		matches = m.commandsFrom(prefix)
	case word[0] == '#':
		matches = m.roomsFrom(prefix)
	case word[0] == ':':
		matches = m.hub.shortcodesFrom(prefix)
	default:
		matches = m.peopleFrom(prefix)
		if first {
			suffix = ": " // addressing someone, as on IRC
		}
	}
	switch len(matches) {
	case 0:
		return line, pos
	case 1:
		done := matches[0] + suffix
		if word[0] == ':' {
			done = matches[0] // a shortcode ends with its own colon, and another may follow
		}
		return line[:start] + done + line[pos:], start + len(done)
	}
	if common := commonPrefix(matches); len(common) > len(word) {
		return line[:start] + common + line[pos:], start + len(common)
	}
	shown := matches[:min(len(matches), maxChoices)]
	text := strings.Join(shown, "  ")
	if more := len(matches) - len(shown); more > 0 {
		text += "  … and " + strconv.Itoa(more) + " more"
	}
	m.reply(kindInfo, text)
	return line, pos
}

// mayComplete takes one of the session's completions, if it has one left.
func (m *Member) mayComplete() bool {
	now := m.hub.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &m.completions
	if c.last.IsZero() {
		c.tokens = completionBurst
	} else {
		c.tokens = min(completionBurst, c.tokens+now.Sub(c.last).Seconds()*completionRate)
	}
	c.last = now
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}

// completionBucket is a session's allowance of completions; under the member's mu.
type completionBucket struct {
	tokens float64
	last   time.Time
}

// hasFoldedPrefix reports whether s starts with prefix, which is in folded form, ignoring case.
func hasFoldedPrefix(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// commandsFrom are the commands this member may use that start with prefix, as typed: "/join".
func (m *Member) commandsFrom(prefix string) []string {
	var names []string
	for name, c := range m.hub.commands {
		if (!c.op || m.opts.Operator) && hasFoldedPrefix("/"+name, prefix) {
			names = append(names, "/"+name)
		}
	}
	slices.Sort(names)
	return names
}

// roomsFrom are the rooms starting with prefix this member may name: the public ones and its
// own (for an operator, all).
func (m *Member) roomsFrom(prefix string) []string {
	h := m.hub
	var names []string
	h.mu.Lock()
	for _, ch := range h.rooms {
		if hasFoldedPrefix(ch.name, prefix) && (!ch.private || m.opts.Operator || m.person.in(ch)) {
			names = append(names, ch.name)
		}
	}
	h.mu.Unlock()
	slices.Sort(names)
	return names
}

// peopleFrom are the names starting with prefix of the other people online: those in the
// member's current room first, then everyone else, each group in name order.
func (m *Member) peopleFrom(prefix string) []string {
	h := m.hub
	var here, elsewhere []string
	h.mu.Lock()
	cur := m.current.Load()
	for _, p := range h.people {
		switch {
		case p == m.person || !strings.HasPrefix(p.key, prefix):
		case p.in(cur):
			here = append(here, p.name)
		default:
			elsewhere = append(elsewhere, p.name)
		}
	}
	for key, s := range h.peers.people {
		switch {
		case h.people[key] != nil || !strings.HasPrefix(key, prefix):
		case cur.remote[key] != nil:
			here = append(here, s.name)
		default:
			elsewhere = append(elsewhere, s.name)
		}
	}
	h.mu.Unlock()
	sortNames(here)
	sortNames(elsewhere)
	return append(here, elsewhere...)
}

// shortcodesFrom are the emoji shortcodes that start with prefix, ignoring case, in order. The
// table is built on first use.
func (h *Hub) shortcodesFrom(prefix string) []string {
	t := &h.shortcodes
	t.once.Do(func() {
		codes := emoji.CodeMap()
		t.codes = make([]string, 0, len(codes))
		for code := range codes {
			t.codes = append(t.codes, code)
		}
		slices.SortFunc(t.codes, func(a, b string) int { return strings.Compare(chat.Fold(a), chat.Fold(b)) })
		t.folded = make([]string, len(t.codes))
		for i, code := range t.codes {
			t.folded[i] = chat.Fold(code)
		}
	})
	i, _ := slices.BinarySearch(t.folded, prefix)
	j := i
	for j < len(t.folded) && strings.HasPrefix(t.folded[j], prefix) {
		j++
	}
	return t.codes[i:j:j]
}

// shortcodeTable is the emoji shortcodes in the order of their folded forms, built once.
type shortcodeTable struct {
	once   sync.Once
	codes  []string
	folded []string // chat.Fold of each code
}

// commonPrefix is the longest prefix all of words share, ignoring case, as the first spells it.
func commonPrefix(words []string) string {
	p := words[0]
	for _, w := range words[1:] {
		n := 0
		for n < len(p) && n < len(w) && chat.Fold(p[n:n+1]) == chat.Fold(w[n:n+1]) {
			n++
		}
		p = p[:n]
	}
	return p
}
