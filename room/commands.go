package room

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"chatd/chat"
)

// Action tells the transport what to do after handing the room a line.
type Action uint8

const (
	// Continue: keep reading lines.
	Continue Action = iota
	// Quit: the member asked to leave. A goodbye line is queued; call Leave(ReasonQuit).
	Quit
)

// command is one slash command. The table is the single definition every transport uses.
type command struct {
	name    string
	aliases []string
	args    string // synopsis of the arguments, for /help
	help    string
	op      bool // listed for operators only
	run     func(m *Member, args string) Action
}

// newCommands builds the command table, indexed by name and alias, the /help text, and what
// /help adds for operators.
func newCommands(cfg Config) (byName map[string]*command, help, opHelp string) {
	list := []*command{
		{name: "help", help: "show this help", run: (*Member).cmdHelp},
		{name: "join", args: "ROOM", help: "join ROOM (created if new) and talk there", run: (*Member).cmdJoin},
		{name: "part", args: "[ROOM]", help: "leave this room (or ROOM)", run: (*Member).cmdPart},
		{name: "rooms", help: "list the rooms: people online, topics", run: (*Member).cmdRooms},
		{name: "topic", args: "[TEXT]", help: "show or set this room's topic (its owner)", run: (*Member).cmdTopic},
		{name: "private", args: "on|off", help: "make this room invitation only, or not (its owner)", run: (*Member).cmdPrivate},
		{name: "invite", args: "NAME", help: "let NAME into this private room (its owner)", run: (*Member).cmdInvite},
		{name: "who", aliases: []string{"names"}, args: "[ROOM]", help: "who is in this room (or ROOM)", run: (*Member).cmdWho},
		{name: "me", args: "ACTION", help: "say what you do: /me waves", run: (*Member).cmdMe},
		{name: "msg", args: "NAME TEXT", help: "send TEXT to NAME only, whatever room (kept if NAME is offline)", run: (*Member).cmdMsg},
		{name: "reply", aliases: []string{"r"}, args: "TEXT", help: "answer the last person who sent you a /msg", run: (*Member).cmdReply},
		{name: "away", args: "[TEXT]", help: "say you are away (shown in /who; a /msg gets TEXT back)", run: (*Member).cmdAway},
		{name: "back", help: "say you are back", run: (*Member).cmdBack},
		{name: "history", args: "[ROOM] [N]", help: fmt.Sprintf("this room's (or ROOM's) last N messages (default 20, at most %d)", HistorySize), run: (*Member).cmdHistory},
		{name: "whois", args: "NAME", help: "who NAME is: sessions, rooms, keys", run: (*Member).cmdWhois},
		{name: "keys", args: "[add KEY|remove FP]", help: "your name's keys; add one (confirmed by its first login) or remove one", run: (*Member).cmdKeys},
		{name: "weblogin", args: "[list|revoke ID|all|token LABEL]", help: "a one-time link that signs a browser in as you; your browser sessions and bot tokens", run: (*Member).cmdWeblogin},
		{name: "timestamps", args: "on|off", help: "show or hide the time of each line", run: (*Member).cmdTimestamps},
		{name: "ignore", args: "[NAME]", help: "hide what NAME says from you; alone: who you ignore", run: (*Member).cmdIgnore},
		{name: "unignore", args: "NAME", help: "see what NAME says again", run: (*Member).cmdUnignore},
		{name: "motd", help: "show the message of the day", run: (*Member).cmdMotd},
		{name: "kick", args: "NAME [#ROOM] [reason]", help: "disconnect NAME (or take them out of ROOM)", op: true, run: (*Member).cmdKick},
		{name: "room", args: "delete ROOM", help: "delete ROOM and its history (asks to confirm)", op: true, run: (*Member).cmdRoom},
		{name: "ban", args: "WHO [TIME] [reason]", help: "keep out a NAME, a key (SHA256:...) or an address (1.2.3.4, 10.0.0.0/8) for TIME (10m, 2h, 7d; default for ever)", op: true, run: (*Member).cmdBan},
		{name: "unban", args: "ID", help: "lift ban ID", op: true, run: (*Member).cmdUnban},
		{name: "bans", help: "list the bans", op: true, run: (*Member).cmdBans},
		{name: "mute", args: "NAME [TIME]", help: "nobody sees what NAME says, for TIME or until /unmute", op: true, run: (*Member).cmdMute},
		{name: "unmute", args: "NAME", help: "let NAME speak again", op: true, run: (*Member).cmdUnmute},
		{name: "quit", aliases: []string{"exit"}, help: `leave (so does a line that is just "bye")`, run: (*Member).cmdQuit},
	}
	byName = make(map[string]*command)
	var h, oh strings.Builder
	h.WriteString("commands:")
	oh.WriteString("operator commands:")
	for _, c := range list {
		byName[c.name] = c
		names := "/" + c.name
		for _, a := range c.aliases {
			byName[a] = c
			names += ", /" + a
		}
		if c.args != "" {
			names += " " + c.args
		}
		w := &h
		if c.op {
			w = &oh
		}
		fmt.Fprintf(w, "\n  %-22s %s", names, c.help)
	}
	fmt.Fprintf(&h, "\n  %-22s %s", "//text", "send a message that starts with /, as typed")
	fmt.Fprintf(&h, "\n:shortcodes: such as :wave: become emoji (👋); lines from your other rooms start with the room's name")
	zone, offset := time.Date(2026, 1, 1, 0, 0, 0, 0, cfg.Location).Zone()
	fmt.Fprintf(&h, "\ntimes are in the server's time zone, %s (UTC%+03d:%02d)", zone, offset/3600, abs(offset%3600/60))
	fmt.Fprintf(&oh, "\n  %-22s %s", "/motd TEXT", "set the message of the day (/motd - clears it)")
	return byName, h.String(), oh.String()
}

func abs(n int) int { return max(n, -n) }

func (m *Member) cmdHelp(string) Action {
	m.reply(kindInfo, m.hub.help)
	if m.opts.Operator {
		m.reply(kindInfo, m.hub.opHelp)
	}
	return Continue
}

func (m *Member) cmdMe(args string) Action {
	if args == "" {
		m.reply(kindError, "usage: /me ACTION")
		return Continue
	}
	m.say(kindAction, expandEmoji(args))
	return Continue
}

func (m *Member) cmdMsg(args string) Action {
	name, text := nameFields(args)
	if name == "" || text == "" {
		m.reply(kindError, "usage: /msg NAME TEXT")
		return Continue
	}
	if !m.checkLength(text) || m.checkMuted() {
		return Continue
	}
	m.sendDM(name, expandEmoji(text))
	return Continue
}

// sendDM sends text to name privately: to every session of theirs when they are online, else
// into the queue kept for them.
func (m *Member) sendDM(name, text string) {
	h := m.hub
	now := h.now()
	h.mu.Lock()
	to := h.people[chat.Fold(name)]
	if to == nil || m.index < 0 {
		var nodes []string
		if m.index >= 0 {
			nodes = h.peerNodesLocked(chat.Fold(name))
		}
		h.mu.Unlock()
		if len(nodes) == 0 || !m.sendElsewhere(nodes, name, text, now) {
			m.queueDM(name, text, now)
		}
		return
	}
	if to == m.person {
		h.mu.Unlock()
		m.reply(kindError, "that is you: /msg sends to someone else")
		return
	}
	// Both sides are queued under the hub's lock, so the recipient cannot leave in between and
	// the sender's confirmation is never a lie. Every session of each gets its line; notices
	// gathered in the sender's rooms go first, so that a join notice precedes its first line.
	for _, ch := range m.person.rooms {
		h.flushNoticesLocked(ch)
	}
	h.deliverToLocked(to, dmIn(now, m.name, to.name, text))
	h.deliverToLocked(m.person, newEvent(kindDMOut, now, m.name, to.name, text))
	to.lastDM = m.name
	elsewhere := h.peerNodesLocked(to.key) // their sessions on other nodes get it too
	away := ""
	if to.away != "" && !to.awayTold[m.key] {
		if to.awayTold == nil {
			to.awayTold = make(map[string]bool)
		}
		to.awayTold[m.key] = true
		away = to.name + " is away: " + to.away
	}
	h.mu.Unlock()
	if len(elsewhere) > 0 {
		h.sendRemoteDM(elsewhere, chat.DM{At: now, From: m.name, FromAddr: senderAddr(m.opts.Remote), To: to.name, Text: text})
	}
	if away != "" {
		m.reply(kindInfo, away)
	}
	h.cfg.Metrics.Said("dm")
}

// sendElsewhere hands a private message to the nodes where its recipient is online, and
// reports whether they got it there.
func (m *Member) sendElsewhere(nodes []string, name, text string, now time.Time) bool {
	h := m.hub
	dm := chat.DM{At: now, From: m.name, FromAddr: senderAddr(m.opts.Remote), To: name, Text: text}
	if !h.sendRemoteDM(nodes, dm) {
		return false
	}
	h.mu.Lock()
	display := name
	if s := h.peers.people[chat.Fold(name)]; s != nil {
		display = s.name
	}
	h.mu.Unlock()
	h.deliverTo(m.person, newEvent(kindDMOut, now, m.name, display, text))
	h.cfg.Metrics.Said("dm")
	return true
}

// cmdReply is /reply TEXT (/r): a private message to whoever last sent one.
func (m *Member) cmdReply(args string) Action {
	text := strings.TrimSpace(args)
	h := m.hub
	h.mu.Lock()
	to := m.person.lastDM
	h.mu.Unlock()
	switch {
	case to == "":
		m.reply(kindError, "nobody has sent you a private message yet: /msg NAME TEXT")
	case text == "":
		m.reply(kindError, "usage: /reply TEXT (answers "+to+")")
	case m.checkLength(text) && !m.checkMuted():
		m.sendDM(to, expandEmoji(text))
	}
	return Continue
}

// cmdAway is /away [TEXT]: others see it in /who and /whois, and whoever sends a /msg gets it
// back, once.
func (m *Member) cmdAway(args string) Action {
	text := strings.TrimSpace(args)
	if text == "" {
		text = "away"
	}
	if max := 200; len(text) > max {
		text = chat.Excerpt(text, max)
	}
	h := m.hub
	h.mu.Lock()
	m.person.away, m.person.awayTold = text, nil
	h.mu.Unlock()
	m.reply(kindInfo, "you are away ("+text+"); /back when you are back")
	return Continue
}

// cmdBack is /back.
func (m *Member) cmdBack(string) Action {
	h := m.hub
	h.mu.Lock()
	was := m.person.away != ""
	m.person.away, m.person.awayTold = "", nil
	h.mu.Unlock()
	if was {
		m.reply(kindInfo, "welcome back")
	} else {
		m.reply(kindError, "you were not away")
	}
	return Continue
}

// queueDM keeps a private message for a registered name that is offline.
func (m *Member) queueDM(name, text string, now time.Time) {
	h := m.hub
	if h.cfg.Store == nil {
		m.reply(kindError, chat.QuoteName(name)+" is not online")
		return
	}
	id, ok, err := h.cfg.Store.Identity(name)
	switch {
	case err != nil:
		h.log.Error("store: identity", "user", name, "err", err)
		m.reply(kindError, ErrUnavailable.Error())
		return
	case !ok:
		m.reply(kindError, chat.QuoteName(name)+" is not online")
		return
	}
	_, err = h.cfg.Store.QueueDM(chat.DM{At: now, From: m.name, FromAddr: senderAddr(m.opts.Remote), To: id.Name, Text: text})
	var limit *chat.LimitError
	errors.As(err, &limit)
	switch {
	case errors.Is(err, chat.ErrSenderQueueFull):
		m.reply(kindError, fmt.Sprintf("you already have %d messages waiting for %s; they get them when they are back", limit.Max, id.Name))
		return
	case errors.Is(err, chat.ErrAddrQueueFull):
		m.reply(kindError, fmt.Sprintf("%d messages from your address are already waiting for %s; they get them when they are back", limit.Max, id.Name))
		return
	case errors.Is(err, chat.ErrQueueFull):
		m.reply(kindError, id.Name+" is offline and has too many messages waiting; try again when they are back")
		return
	case err != nil:
		h.log.Error("store: queue dm", "from", m.name, "to", id.Name, "err", err)
		m.reply(kindError, ErrUnavailable.Error())
		return
	}
	h.deliverTo(m.person, newEvent(kindDMOut, now, m.name, id.Name, text))
	m.reply(kindInfo, id.Name+" is offline: they get your message when they next log in")
	h.cfg.Metrics.Said("dm")
}

// senderAddr is what the cap on queued private messages per address counts by: an IPv4 address,
// or the /64 of an IPv6 one (one subscriber's usual share: a single host may use any of its
// addresses). Empty when remote is not an address.
func senderAddr(remote string) string {
	ip := remoteIP(remote)
	switch {
	case !ip.IsValid():
		return ""
	case ip.Is6():
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

func (m *Member) cmdWhois(args string) Action {
	name, _ := nameFields(args)
	if name == "" {
		m.reply(kindError, "usage: /whois NAME")
		return Continue
	}
	text, err := m.hub.whois(name)
	if err != nil {
		m.reply(kindError, err.Error())
		return Continue
	}
	m.reply(kindInfo, text)
	return Continue
}

func (m *Member) cmdKeys(args string) Action {
	h := m.hub
	if h.cfg.Store == nil {
		m.reply(kindError, "names are not registered on this server")
		return Continue
	}
	if !m.person.registered {
		m.reply(kindError, "you logged in without a registered key: log in over SSH with a key to register your name")
		return Continue
	}
	sub, rest := nameFields(args)
	var err error
	switch chat.Fold(sub) {
	case "":
	case "add":
		err = m.addKey(rest)
	case "remove", "rm", "del":
		err = h.cfg.Store.RemoveKey(m.name, rest)
		switch {
		case errors.Is(err, chat.ErrLastKey):
			err = errors.New("that is your name's only key: add another one first")
		case errors.Is(err, chat.ErrNotFound):
			err = errors.New("no such key: /keys lists the fingerprints")
		case err == nil:
			h.log.Info("key removed", "user", m.name, "key", rest)
			m.reply(kindInfo, "removed "+chat.Excerpt(rest, 80))
		}
	default:
		err = errors.New("usage: /keys, /keys add KEY, /keys remove FINGERPRINT")
	}
	if err != nil {
		m.reply(kindError, err.Error())
		return Continue
	}
	id, _, err := h.cfg.Store.Identity(m.name)
	if err != nil {
		h.log.Error("store: identity", "user", m.name, "err", err)
		m.reply(kindError, ErrUnavailable.Error())
		return Continue
	}
	lines := []string{fmt.Sprintf("keys of %s:", id.Name)}
	for _, k := range id.Keys {
		lines = append(lines, fmt.Sprintf("  %s %s added %s", k.Type, k.Fingerprint, h.stamp(k.Added)))
	}
	if len(id.Pending) > 0 {
		lines = append(lines, fmt.Sprintf("pending, not usable until each logs in once as %s to confirm it (%s):", id.Name, confirmHint(id.Name)))
		for _, k := range id.Pending {
			lines = append(lines, fmt.Sprintf("  %s %s added %s, expires %s", k.Type, k.Fingerprint, h.stamp(k.Added), h.stamp(k.Expires)))
		}
	}
	m.reply(kindInfo, strings.Join(lines, "\n"))
	return Continue
}

// confirmHint is the command that confirms a pending key of name. The room knows neither the
// host nor the port the user reached it by, nor where the key's file is: they fill those in.
func confirmHint(name string) string {
	return "ssh -i KEYFILE -p PORT " + name + "@HOST"
}

// addKey proposes the key in an authorized_keys line for the member's name. It stays pending,
// unable to log in as anyone's name, until a login as this name with it proves that its holder
// has it: anyone's public key can be pasted, and a key nobody proved must never make its holder
// answer for this name (bans by name, /whois).
func (m *Member) addKey(line string) error {
	h := m.hub
	if h.cfg.ParseKey == nil {
		return errors.New("adding keys is not supported here")
	}
	if line == "" {
		return errors.New("usage: /keys add KEY (an authorized_keys line, such as: ssh-ed25519 AAAA... laptop)")
	}
	k, err := h.cfg.ParseKey(line)
	if err != nil {
		return fmt.Errorf("not a public key: %s", chat.Excerpt(err.Error(), 120))
	}
	k.Added = h.now()
	expires := k.Added.Add(PendingKeyTTL)
	var limit *chat.LimitError
	switch err := h.cfg.Store.ProposeKey(m.name, k, expires); {
	case errors.Is(err, chat.ErrKeyExists):
		return errors.New("that key is already yours")
	case errors.As(err, &limit) && errors.Is(err, chat.ErrKeyLimit):
		return fmt.Errorf("%s has %d keys (active and pending), the most a name may have; remove one first: /keys remove FINGERPRINT", m.name, limit.Max)
	case err != nil:
		h.log.Error("store: propose key", "user", m.name, "err", err)
		return ErrUnavailable
	}
	h.log.Info("key proposed", "user", m.name, "key", k.Fingerprint, "expires", expires.Format(time.RFC3339))
	m.reply(kindInfo, fmt.Sprintf("%s %s is pending: it becomes one of %s's keys once it has logged in as %s, before %s.\n"+
		"to confirm it, log in once as %s with that key: %s (KEYFILE is that key's private file; HOST and PORT as you use them now)",
		k.Type, k.Fingerprint, m.name, m.name, h.stamp(expires), m.name, confirmHint(m.name)))
	return nil
}

func (m *Member) cmdTimestamps(args string) Action {
	on, ok := onOff(args)
	switch {
	case !ok:
		m.reply(kindError, "usage: /timestamps on|off")
	case on:
		m.showTime.Store(true)
		m.reply(kindInfo, "timestamps on")
	default:
		m.showTime.Store(false)
		m.reply(kindInfo, "timestamps off")
	}
	return Continue
}

// onOff reads a switch's argument, "on" or "off" in any case; ok is false for anything else.
func onOff(args string) (on, ok bool) {
	switch chat.Fold(strings.TrimSpace(args)) {
	case "on":
		return true, true
	case "off":
		return false, true
	}
	return false, false
}

func (m *Member) cmdQuit(string) Action {
	m.reply(kindInfo, "goodbye, "+m.name+"!")
	return Quit
}
