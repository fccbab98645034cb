package room

import (
	"encoding/json"
	"time"
)

// JSON is the third Format, beside Plain and ANSI: every line is one Event as a JSON object, for
// clients that draw the chat themselves (the web page, bots). Each Write to such a member's Output
// holds one or more whole lines, each ending in '\n'.
const JSON Format = ANSI + 1

// Event is a line as structured clients get it: the one definition of the wire format of the web
// page and of bots. Text is sanitised like every other line; the client must still show it as
// text, never as markup.
type Event struct {
	// Type is "message", "action", "notice", "info" (a reply to this session alone), "error" or
	// "dm".
	Type string `json:"type"`
	// Room is where it was said or happened; empty for replies and DMs.
	Room string `json:"room,omitempty"`
	// From is who said it (a message, an action, a DM).
	From string `json:"from,omitempty"`
	// To is who a DM went to.
	To   string `json:"to,omitempty"`
	Text string `json:"text"`
	// Time is when it was said, in UTC, to the millisecond: the unit history is kept in, so that
	// a time seen here is an exact bound for a history request.
	Time time.Time `json:"time"`
	// History marks lines replayed from the room's history.
	History bool `json:"history,omitempty"`
	// Colour is From's colour in the SSH shell: an index into the xterm 256-colour palette.
	Colour int `json:"colour,omitempty"`
	// Joined and Left name who a join or leave notice is about: at most MaxNoticeNames, and
	// Others counts those not named (a join storm's gathered notice); a client that keeps a list
	// of members asks for its state then.
	Joined []string `json:"joined,omitempty"`
	Left   []string `json:"left,omitempty"`
	Others int      `json:"others,omitempty"`
	// Topic is the room's new topic, on the notice that sets it.
	Topic *string `json:"topic,omitempty"`
}

// MaxNoticeNames is the most names a notice's Joined or Left carries. A join storm's gathered
// notice goes to every member: naming a thousand people in it would write a thousand times 17 KB
// before the next line.
const MaxNoticeNames = 20

// presence is what a notice says in structured form: who joined or left, or the topic it set.
type presence struct {
	joined, left []string
	others       int
	topic        *string
}

// gathered is the presence of a gathered notice about names (joined, or left).
func gathered(names []string, joined bool) *presence {
	p := &presence{others: max(len(names)-MaxNoticeNames, 0)}
	names = names[:min(len(names), MaxNoticeNames)]
	if joined {
		p.joined = names
	} else {
		p.left = names
	}
	return p
}

// Event is ev as structured clients get it.
func (ev *event) Event() Event {
	e := Event{Room: ev.room, Text: ev.text, Time: ev.at.UTC().Truncate(time.Millisecond), History: ev.earlier}
	switch ev.kind {
	case kindMessage:
		e.Type, e.From = "message", ev.from
	case kindAction:
		e.Type, e.From = "action", ev.from
	case kindNotice:
		e.Type = "notice"
	case kindInfo:
		e.Type = "info"
	case kindError:
		e.Type = "error"
	case kindDMIn:
		e.Type, e.From, e.To = "dm", ev.peer, ev.to
	case kindDMOut:
		e.Type, e.From, e.To = "dm", ev.from, ev.peer
	}
	if e.From != "" {
		e.Colour = int(nameColour(e.From))
	}
	if p := ev.presence; p != nil {
		e.Joined, e.Left, e.Others, e.Topic = p.joined, p.left, p.others, p.topic
	}
	return e
}

// jsonLine is ev as one line of JSON, rendered once for every structured member that gets it.
func (ev *event) jsonLine() []byte {
	if b := ev.json.Load(); b != nil {
		return *b
	}
	b, err := json.Marshal(ev.Event())
	if err != nil { // cannot happen: every field marshals
		b = []byte(`{"type":"error","text":"unrenderable line"}`)
	}
	b = append(b, '\n')
	ev.json.Store(&b)
	return b
}

// dmIn is a private message from one person as its recipient's sessions get it.
func dmIn(at time.Time, from, to, text string) *event {
	ev := newEvent(kindDMIn, at, from, from, text)
	ev.to = to
	return ev
}
