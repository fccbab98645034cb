package room

import (
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"chatd/chat"
	"chatd/internal/termwrap"
)

// Format is how a member's terminal wants its lines.
type Format uint8

const (
	// Plain lines carry no escape codes at all: for TCP, bots and SSH sessions without a PTY.
	Plain Format = iota
	// ANSI lines are coloured and timestamped, for an interactive terminal.
	ANSI
	// JSON (event.go) is the third.
)

// kind says what a line is; it decides its look and its plain-text prefix.
type kind uint8

const (
	kindMessage kind = iota // alice: text
	kindAction              // ** alice waves
	kindNotice              // * alice joined (3 online): room-wide news
	kindInfo                // * ...: a reply to one member (/who, /help, welcome)
	kindError               // error: ...
	kindDMIn                // [dm from alice] text
	kindDMOut               // [dm to bob] text
)

// event is one line on its way to members. It is immutable once built, so one event, and the
// bytes rendered for it, are shared by every member that receives it.
type event struct {
	kind    kind
	at      time.Time // in the room's time zone
	from    string    // the sending member's name (messages, actions, DMs)
	peer    string    // the other side of a DM
	text    string    // sanitised; info text may hold several lines
	room    string    // the room it was said in; "" for what is not a room's (DMs, replies)
	earlier bool      // replayed history: dated and dimmed
	born    time.Time // when it was made (the local clock, for delivery times)
	plain   []byte    // with a timestamp prefix of plainStampLen bytes (none when earlier)
	ansi    []byte    // with a timestamp prefix of ansiStampLen bytes (none when earlier)
	lower   string    // lower-cased text, for mention matching
	to      string    // who a DM went to (kindDMIn; its sessions are the ones that get it)

	presence *presence              // a notice's structured form (who joined or left, the topic)
	json     atomic.Pointer[[]byte] // the JSON line, rendered on first use

	// wrapped is the ANSI line wrapped for a terminal, kept for the next member with the same
	// width and timestamp setting: most terminals in a room share a width, so a long line is
	// wrapped about once rather than once per member.
	wrapped atomic.Pointer[wrappedLine]
}

// wrappedLine is an event's ANSI line wrapped to width columns.
type wrappedLine struct {
	width    int
	showTime bool
	tagged   bool
	b        []byte
}

// Every live line starts with its time, HH:MM, which a member can switch off: the prefix has a
// fixed length, so the line without it is a slice of the same bytes.
const (
	plainStampLen = len("15:04 ")
	ansiStampLen  = len(sgrDim + "15:04" + sgrReset + " ")
)

func newEvent(k kind, at time.Time, from, peer, text string) *event {
	ev := &event{kind: k, at: at, from: from, peer: peer, text: text, born: time.Now()}
	ev.plain = ev.render(Plain, "")
	ev.ansi = ev.render(ANSI, "")
	if k == kindMessage || k == kindAction {
		ev.lower = chat.Fold(text)
	}
	return ev
}

// earlierEvent is ev replayed as history: marked, dated when it is not from today, and dimmed.
func earlierEvent(ev *event, now time.Time) *event {
	h := &event{kind: ev.kind, at: ev.at, from: ev.from, peer: ev.peer, to: ev.to, text: ev.text, room: ev.room, earlier: true, born: time.Now()}
	body := h.render(Plain, "")
	layout := "15:04"
	if y, m, d := ev.at.Date(); y != now.Year() || m != now.Month() || d != now.Day() {
		layout = "Jan 2 15:04"
		if y != now.Year() {
			layout = "2006-01-02 15:04"
		}
	}
	// Plain: a fixed, parseable stamp; scripts can tell history from live lines by "[history".
	h.plain = append(ev.at.AppendFormat([]byte("[history "), "2006-01-02 15:04"), "] "...)
	h.plain = append(h.plain, body...)
	h.ansi = append(append([]byte(sgrDim), ev.at.AppendFormat(nil, layout)...), ' ')
	h.ansi = append(append(h.ansi, body[:len(body)-1]...), sgrReset+"\n"...)
	return h
}

// tagged reports whether m gets ev with its room's name in front: a message or an action of
// one of m's rooms other than its current one, so that nobody mistakes where it was said.
func (ev *event) tagged(m *Member) bool {
	if ev.room == "" || ev.earlier || ev.kind != kindMessage && ev.kind != kindAction {
		return false
	}
	cur := m.current.Load()
	return cur == nil || cur.name != ev.room
}

// appendTo appends the event as the member m should see it.
func (ev *event) appendTo(b []byte, m *Member) []byte {
	if m.format == JSON {
		return append(b, ev.jsonLine()...)
	}
	tagged := ev.tagged(m)
	showTime := ev.earlier || m.showTime.Load()
	if m.format != ANSI {
		line, stamp := ev.plain, 0
		switch {
		case !ev.earlier && !showTime:
			line = line[plainStampLen:]
		case !ev.earlier:
			stamp = plainStampLen
		}
		if !tagged {
			return append(b, line...)
		}
		b = append(b, line[:stamp]...)
		b = append(b, ev.room...)
		b = append(b, ' ')
		return append(b, line[stamp:]...)
	}
	line, personal := ev.ansi, false
	if ev.lower != "" && ev.from != m.name && mentions(ev.lower, m.key) {
		line, personal = ev.render(ANSI, m.name), true
	}
	stamp := ansiStampLen
	if !showTime {
		line, stamp = line[ansiStampLen:], 0
	}
	if tagged {
		t := make([]byte, 0, len(line)+len(ev.room)+len(sgrDim)+len(sgrReset)+1)
		t = append(t, line[:stamp]...)
		t = append(append(append(t, sgrDim...), ev.room...), sgrReset+" "...)
		line = append(t, line[stamp:]...)
	}
	width := int(m.width.Load())
	switch {
	case width <= 0 || len(line) <= width: // no wider than its bytes: nothing to wrap
		return append(b, line...)
	case personal:
		return termwrap.WrapLines(b, line, width)
	}
	if w := ev.wrapped.Load(); w != nil && w.width == width && w.showTime == showTime && w.tagged == tagged {
		return append(b, w.b...)
	}
	start := len(b)
	b = termwrap.WrapLines(b, line, width)
	ev.wrapped.Store(&wrappedLine{width: width, showTime: showTime, tagged: tagged, b: slices.Clone(b[start:])})
	return b
}

// ANSI styling. Only the server's own constants ever reach a terminal as escape codes: user text
// is sanitised before it becomes an event.
const (
	sgrReset   = "\x1b[0m"
	sgrDim     = "\x1b[2m"
	sgrBold    = "\x1b[1m"
	sgrError   = "\x1b[1;31m"
	sgrDM      = "\x1b[1;35m"
	sgrMention = "\x1b[1;7m"
	bell       = "\a"
)

// render draws the event in format f. highlight, when set, is the name of the member the line
// mentions: it is highlighted and rings that member's bell.
func (ev *event) render(f Format, highlight string) []byte {
	b := make([]byte, 0, len(ev.text)+len(ev.from)+64)
	if !ev.earlier {
		if f == ANSI {
			b = append(b, sgrDim...)
			b = ev.at.AppendFormat(b, "15:04")
			b = append(b, sgrReset+" "...)
		} else {
			b = ev.at.AppendFormat(b, "15:04 ")
		}
	}
	if f == ANSI && (highlight != "" || ev.kind == kindDMIn) {
		b = append(b, bell...)
	}
	switch ev.kind {
	case kindMessage:
		b = appendName(b, f, ev.from)
		b = append(b, ": "...)
		b = appendHighlighted(b, f, ev.text, highlight)
	case kindAction:
		b = append(b, "** "...)
		b = appendName(b, f, ev.from)
		b = append(b, ' ')
		b = appendHighlighted(b, f, ev.text, highlight)
	case kindNotice:
		b = appendStyled(b, f, sgrDim, "* "+ev.text)
	case kindInfo:
		for i, line := range strings.Split(ev.text, "\n") {
			if i > 0 {
				b = append(b, '\n')
				if f == ANSI {
					b = append(b, "      "...) // under the timestamp
				}
			}
			b = append(b, "* "...)
			b = append(b, line...)
		}
	case kindError:
		b = appendStyled(b, f, sgrError, "error:")
		b = append(b, ' ')
		b = append(b, ev.text...)
	case kindDMIn:
		b = appendStyled(b, f, sgrDM, "[dm from "+ev.peer+"]")
		b = append(b, ' ')
		b = append(b, ev.text...)
	case kindDMOut:
		b = appendStyled(b, f, sgrDM, "[dm to "+ev.peer+"]")
		b = append(b, ' ')
		b = append(b, ev.text...)
	}
	return append(b, '\n')
}

func appendStyled(b []byte, f Format, sgr, s string) []byte {
	if f == Plain {
		return append(b, s...)
	}
	b = append(b, sgr...)
	b = append(b, s...)
	return append(b, sgrReset...)
}

// appendName draws a member's name, in its own colour on a terminal.
func appendName(b []byte, f Format, name string) []byte {
	if f == Plain {
		return append(b, name...)
	}
	b = append(b, "\x1b[1;38;5;"...)
	b = strconv.AppendUint(b, uint64(nameColour(name)), 10)
	b = append(b, 'm')
	b = append(b, name...)
	return append(b, sgrReset...)
}

// nameColour picks a stable colour for a name from a palette of 256-colour codes that read well on
// dark and light backgrounds. The same name (in any case) always gets the same colour.
func nameColour(name string) uint8 {
	palette := [...]uint8{
		1, 2, 3, 5, 6, 9, 10, 11, 12, 13, 14, 28, 31, 32, 33, 35, 37, 38, 39, 40, 41, 42,
		61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72,
		97, 98, 99, 100, 101, 106, 107, 108, 109, 110, 112, 113,
		130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141,
		160, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171,
		172, 173, 174, 175, 176, 177, 178, 179, 180, 202, 203, 204,
		205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216,
	}
	h := fnv.New32a()
	h.Write([]byte(chat.Fold(name)))
	return palette[h.Sum32()%uint32(len(palette))]
}

// appendHighlighted appends text, marking every mention of name when name is set.
func appendHighlighted(b []byte, f Format, text, name string) []byte {
	if f == Plain || name == "" {
		return append(b, text...)
	}
	lower, key := chat.Fold(text), chat.Fold(name)
	for {
		i := mentionIndex(lower, key)
		if i < 0 {
			return append(b, text...)
		}
		b = append(b, text[:i]...)
		b = append(b, sgrMention...)
		b = append(b, text[i:i+len(key)]...)
		b = append(b, sgrReset...)
		text, lower = text[i+len(key):], lower[i+len(key):]
	}
}

// mentions reports whether lower-cased text names the member whose folded name is key, as a
// whole word ("@alice," counts, "malice" does not).
func mentions(lower, key string) bool { return mentionIndex(lower, key) >= 0 }

func mentionIndex(lower, key string) int {
	for off := 0; ; {
		i := strings.Index(lower[off:], key)
		if i < 0 {
			return -1
		}
		i += off
		end := i + len(key)
		if (i == 0 || !isWordByte(lower[i-1])) && (end == len(lower) || !isWordByte(lower[end])) {
			return i
		}
		off = i + 1
	}
}

func isWordByte(c byte) bool { return chat.IsAlnum(c) || c == '_' }
