package room

import (
	"fmt"
	"strings"

	"chatd/chat"
)

// Handle processes one line of input from the member: a message, a command, or "bye". The line is
// sanitised here, so transports pass on what the client sent, as it was sent.
func (m *Member) Handle(line string) Action {
	if len(line) > m.hub.cfg.MaxLineBytes() {
		m.reply(kindError, fmt.Sprintf("line too long (the limit for a message is %d bytes); it was not sent", m.hub.cfg.MaxMessageBytes))
		return Continue
	}
	line = strings.TrimSpace(chat.Sanitize(line))
	if line == "" {
		return Continue
	}
	m.lastInput.Store(m.hub.cfg.Now().UnixNano())
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
		m.say(kindMessage, line[1:]) // as typed: no emoji shortcodes either
	case line[0] == '/':
		name, args := nameFields(line[1:])
		c := m.hub.commands[chat.Fold(name)]
		if c == nil {
			m.reply(kindError, "unknown command "+chat.QuoteName("/"+name)+" (/help lists the commands)")
			return Continue
		}
		return c.run(m, args)
	default:
		m.say(kindMessage, expandEmoji(line))
	}
	return Continue
}

// say sends a message or an action to the member's current room. Interactive sessions see their
// own line come back in its place in the room's order; plain clients (bots, scripts) get no echo
// of their own lines, but a person's other sessions get everything they say.
func (m *Member) say(k kind, text string) {
	if !m.checkLength(text) || m.checkMuted() {
		return
	}
	ch := m.current.Load()
	select {
	case <-m.done: // already out of the chat: it has no voice
		return
	default:
	}
	h := m.hub
	if h.paused.Load() {
		m.reply(kindError, "your line was not sent: the chat is paused until this server reaches the rest of the chat again")
		return
	}
	l := Line{Room: ch.name, Kind: LineMessage, From: m.name, Text: text, At: h.now(), Origin: m.id}
	if k == kindAction {
		l.Kind = LineAction
	}
	if err := h.relay.Publish(l); err != nil {
		h.log.Error("relay: publish", "room", ch.name, "err", err)
		m.reply(kindError, "your line could not be sent: "+ErrUnavailable.Error())
		return
	}
	if k == kindAction {
		h.cfg.Metrics.Said("action")
	} else {
		h.cfg.Metrics.Said("message")
	}
}

// deliver hands a line the relay brought to the members of its room here, and keeps it in the
// room's history: the relay's order is the room's order.
func (h *Hub) deliver(l Line) {
	k := kindMessage
	switch l.Kind {
	case LineAction:
		k = kindAction
	case LineNotice:
		k = kindNotice
	}
	ev := newEvent(k, l.At.In(h.cfg.Location), l.From, "", l.Text)
	if l.Topic != nil {
		ev.presence = &presence{topic: l.Topic}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.roomLocked(l.Room)
	if ch == nil {
		return // deleted meanwhile
	}
	if l.Seq != 0 && l.Seq <= ch.loadedSeq {
		return // in the history loaded at the start already
	}
	if l.Topic != nil {
		ch.topic = *l.Topic // set by another node, or again by this one
	}
	ev.room = ch.name
	h.flushNoticesLocked(ch)
	for _, m := range ch.members {
		if m.id == l.Origin && !m.opts.Echo || m.person.ignores != nil && m.person.ignoring(ev) {
			continue
		}
		m.enqueue(ev)
	}
	if k != kindNotice {
		h.rememberLocked(ch, ev)
	}
}

// checkLength tells the member when text is over the message limit.
func (m *Member) checkLength(text string) bool {
	if max := m.hub.cfg.MaxMessageBytes; len(text) > max {
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
