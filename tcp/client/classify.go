package client

import (
	"strconv"
	"strings"

	"chatd/chat"
)

// Kind is what a line from the server is, as far as a client showing it cares.
type Kind uint8

const (
	// Other is a line of no known shape.
	Other Kind = iota
	// Message is someone's message: "alice: text".
	Message
	// Action is someone's /me: "** alice waves".
	Action
	// Notice is a line from the server itself: room news ("* alice joined (3 online)") and
	// replies to this client alone ("* welcome ...", /who, /help, the goodbye). The plain
	// protocol writes both as "* text", so they are one kind here.
	Notice
	// DMIn is a private message to this client: "[dm from alice] text".
	DMIn
	// DMOut confirms a private message this client sent: "[dm to bob] text".
	DMOut
	// Error is the server's complaint about what this client did: "error: reason".
	Error
)

// Info is Notice: the plain protocol does not tell room news from a reply to one client.
const Info = Notice

var kindNames = [...]string{"other", "message", "action", "notice", "dm-in", "dm-out", "error"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Line is a server line taken apart.
type Line struct {
	Kind Kind
	// Room is the room a Message or an Action was said in when it is not the client's current
	// room ("#go alice: hi"); empty for the current room and for every other kind.
	Room string
	// Name is the member the line is from (Message, Action, DMIn) or to (DMOut); empty otherwise.
	Name string
	// Text is the rest: the message, the action, the notice or error without its prefix. For
	// Other it is the whole line.
	Text string
}

// Classify says what kind of line the server sent.
func Classify(line string) Kind { return Parse(line).Kind }

// Parse takes a server line apart. The shapes cannot be confused: a member's name is letters,
// digits, '_', '.' and '-', starting with a letter or digit, and never "error", so no one's
// message can pass for an error, a notice, a private message or another room's line.
func Parse(line string) Line {
	if strings.HasPrefix(line, "#") {
		return parseTagged(line)
	}
	switch {
	case strings.HasPrefix(line, "error: "):
		return Line{Kind: Error, Text: line[len("error: "):]}
	case line == "error:":
		return Line{Kind: Error}
	case strings.HasPrefix(line, "** "):
		if name, text, ok := cutName(line[len("** "):], " "); ok {
			return Line{Kind: Action, Name: name, Text: text}
		}
	case strings.HasPrefix(line, "* "):
		return Line{Kind: Notice, Text: line[len("* "):]}
	case strings.HasPrefix(line, "[dm from "):
		if name, text, ok := cutName(line[len("[dm from "):], "] "); ok {
			return Line{Kind: DMIn, Name: name, Text: text}
		}
	case strings.HasPrefix(line, "[dm to "):
		if name, text, ok := cutName(line[len("[dm to "):], "] "); ok {
			return Line{Kind: DMOut, Name: name, Text: text}
		}
	default:
		if name, text, ok := cutName(line, ": "); ok {
			return Line{Kind: Message, Name: name, Text: text}
		}
	}
	return Line{Kind: Other, Text: line}
}

// parseTagged takes apart a message or an action from a room other than the current one:
// "#go alice: hi", "#go ** bob waves".
func parseTagged(line string) Line {
	room, rest, ok := strings.Cut(line, " ")
	if ok && chat.IsRoom(room) && !strings.HasPrefix(rest, "#") {
		if l := Parse(rest); l.Kind == Message || l.Kind == Action {
			l.Room = room
			return l
		}
	}
	return Line{Kind: Other, Text: line}
}

// cutName splits s at the first sep and reports whether what comes before is a valid name.
func cutName(s, sep string) (name, rest string, ok bool) {
	i := strings.Index(s, sep)
	if i < 1 || i > chat.MaxNameLen {
		return "", "", false
	}
	name = s[:i]
	if chat.ValidateName(name) != nil {
		return "", "", false
	}
	return name, s[i+len(sep):], true
}
