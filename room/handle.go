package room

import (
	"fmt"
	"strings"

	"chatd/chat"
)

// Handle processes one line of input from the member: a message, a command, or "bye". The line is
// sanitised here, so transports pass on what the client sent, as it was sent.
func (m *Member) Handle(line string) Action {
	if len(line) > m.room.cfg.MaxLineBytes() {
		m.reply(kindError, fmt.Sprintf("line too long (the limit for a message is %d bytes); it was not sent", m.room.cfg.MaxMessageBytes))
		return Continue
	}
	line = strings.TrimSpace(chat.Sanitize(line))
	if line == "" {
		return Continue
	}
	m.lastInput.Store(m.room.cfg.Now().UnixNano())
	if line == "bye" || isQuit(line) {
		return m.cmdQuit("")
	}
	if !m.pace(line) {
		return Continue
	}
	return m.run(line)
}

// run carries out a line that the rate limit let through: a message or a command. Lines held
// back by the limit come here later, from releaseHeld.
func (m *Member) run(line string) Action {
	switch {
	case strings.HasPrefix(line, "//"):
		m.say(kindMessage, line[1:])
	case line[0] == '/':
		name, args := nameFields(line[1:])
		c := m.room.commands[chat.Fold(name)]
		if c == nil {
			m.reply(kindError, "unknown command "+chat.QuoteName("/"+name)+" (/help lists the commands)")
			return Continue
		}
		return c.run(m, args)
	default:
		m.say(kindMessage, line)
	}
	return Continue
}

// say sends a message or an action to everyone. Interactive sessions see their own line come
// back in its place in the room's order; plain clients (bots, scripts) get no echo of their own
// lines, but a person's other sessions get everything they say.
func (m *Member) say(k kind, text string) {
	if !m.checkLength(text) || m.checkMuted() {
		return
	}
	ev := newEvent(k, m.room.now(), m.name, "", text)
	except := m
	if m.opts.Echo {
		except = nil
	}
	r := m.room
	r.mu.Lock()
	if m.index < 0 { // already out of the room: it has no voice
		r.mu.Unlock()
		return
	}
	r.flushNoticesLocked()
	r.broadcastLocked(ev, except)
	r.rememberLocked(ev)
	r.mu.Unlock()
	if k == kindAction {
		r.cfg.Metrics.Said("action")
	} else {
		r.cfg.Metrics.Said("message")
	}
}

// checkLength tells the member when text is over the message limit.
func (m *Member) checkLength(text string) bool {
	if max := m.room.cfg.MaxMessageBytes; len(text) > max {
		m.reply(kindError, fmt.Sprintf("message too long (%d bytes; the limit is %d); it was not sent", len(text), max))
		return false
	}
	return true
}

// isQuit reports the commands that leave: they are never held back by the rate limit.
func isQuit(line string) bool {
	name, _ := nameFields(line)
	switch chat.Fold(name) {
	case "/quit", "/exit":
		return true
	}
	return false
}
