package room

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
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
	run     func(m *Member, args string) Action
}

// newCommands builds the command table, indexed by name and alias, and the /help text.
func newCommands() (map[string]*command, string) {
	list := []*command{
		{name: "help", help: "show this help", run: (*Member).cmdHelp},
		{name: "who", aliases: []string{"names"}, help: "list who is online", run: (*Member).cmdWho},
		{name: "me", args: "ACTION", help: "say what you do: /me waves", run: (*Member).cmdMe},
		{name: "msg", args: "NAME TEXT", help: "send TEXT to NAME only", run: (*Member).cmdMsg},
		{name: "quit", aliases: []string{"exit"}, help: `leave (a line that is just "bye" does too)`, run: (*Member).cmdQuit},
	}
	byName := make(map[string]*command)
	var help strings.Builder
	help.WriteString("commands:")
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
		fmt.Fprintf(&help, "\n  %-18s %s", names, c.help)
	}
	fmt.Fprintf(&help, "\n  %-18s %s", "//text", "send a message that starts with /")
	return byName, help.String()
}

// Handle processes one line of input from the member: a message, a command, or "bye". The line is
// sanitised here, so transports pass on what the client sent, as it was sent.
func (m *Member) Handle(line string) Action {
	if len(line) > m.room.cfg.MaxLineBytes() {
		m.reply(kindError, fmt.Sprintf("line too long (the limit for a message is %d bytes); it was not sent", m.room.cfg.MaxMessageBytes))
		return Continue
	}
	line = strings.TrimSpace(Sanitize(line))
	switch {
	case line == "":
		return Continue
	case line == "bye":
		return m.cmdQuit("")
	case strings.HasPrefix(line, "//"):
		m.say(kindMessage, line[1:])
	case line[0] == '/':
		name, args := nameFields(line[1:])
		c := m.room.commands[asciiLower(name)]
		if c == nil {
			m.reply(kindError, "unknown command "+quoteName("/"+name)+" (/help lists the commands)")
			return Continue
		}
		return c.run(m, args)
	default:
		m.say(kindMessage, line)
	}
	return Continue
}

// say sends a message or an action to everyone. Interactive members see their own line come back
// in its place in the room's order; plain clients (bots, scripts) do not get an echo.
func (m *Member) say(k kind, text string) {
	if !m.checkLength(text) {
		return
	}
	ev := newEvent(k, m.room.cfg.Now(), m.name, "", text)
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
	slow := r.broadcastLocked(ev, except)
	r.mu.Unlock()
	r.dropSlow(slow)
}

// checkLength tells the member when text is over the message limit.
func (m *Member) checkLength(text string) bool {
	if max := m.room.cfg.MaxMessageBytes; len(text) > max {
		m.reply(kindError, fmt.Sprintf("message too long (%d bytes; the limit is %d); it was not sent", len(text), max))
		return false
	}
	return true
}

func (m *Member) cmdHelp(string) Action {
	m.reply(kindInfo, m.room.help)
	return Continue
}

func (m *Member) cmdWho(string) Action {
	names := m.room.Names()
	m.reply(kindInfo, strconv.Itoa(len(names))+" online: "+strings.Join(names, ", "))
	return Continue
}

func (m *Member) cmdMe(args string) Action {
	if args == "" {
		m.reply(kindError, "usage: /me ACTION")
		return Continue
	}
	m.say(kindAction, args)
	return Continue
}

func (m *Member) cmdMsg(args string) Action {
	name, text := nameFields(args)
	if name == "" || text == "" {
		m.reply(kindError, "usage: /msg NAME TEXT")
		return Continue
	}
	if !m.checkLength(text) {
		return Continue
	}
	r := m.room
	now := r.cfg.Now()
	r.mu.Lock()
	to := r.byName[foldName(name)]
	if to == nil || m.index < 0 {
		r.mu.Unlock()
		m.reply(kindError, quoteName(name)+" is not online")
		return Continue
	}
	if to == m {
		r.mu.Unlock()
		m.reply(kindError, "that is you: /msg sends to someone else")
		return Continue
	}
	// Both lines are queued under the room's lock, so the recipient cannot leave in between and
	// the sender's confirmation is never a lie.
	var slow []*Member
	if !to.enqueue(newEvent(kindDMIn, now, m.name, m.name, text)) {
		slow = append(slow, to)
	}
	if !m.enqueue(newEvent(kindDMOut, now, m.name, to.name, text)) {
		slow = append(slow, m)
	}
	r.mu.Unlock()
	r.dropSlow(slow)
	return Continue
}

func (m *Member) cmdQuit(string) Action {
	m.reply(kindInfo, "goodbye, "+m.name+"!")
	return Quit
}

// ErrUnknownCommand is wrapped by Exec's error for a command it does not know.
var ErrUnknownCommand = errors.New("unknown command")

// Exec runs a one-shot command for a client that does not join the room, such as
// "ssh host who". Its output goes to stdout; an error is fit to show the user.
func (r *Room) Exec(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: none given (try: help)", ErrUnknownCommand)
	}
	switch asciiLower(args[0]) {
	case "who", "names":
		for _, name := range r.Names() {
			fmt.Fprintln(stdout, name)
		}
		return nil
	case "help":
		fmt.Fprintln(stdout, "commands: who (list who is online, one name per line), help")
		fmt.Fprintln(stdout, "without a command you join the chat")
		return nil
	}
	return fmt.Errorf("%w %s (try: help)", ErrUnknownCommand, quoteName(args[0]))
}
