package room

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"chatd/chat"
)

// ErrUnknownCommand is wrapped by Exec's error for a command it does not know.
var ErrUnknownCommand = errors.New("unknown command")

// ExecOptions say who runs a one-shot command.
type ExecOptions struct {
	Name   string    // the name the client logged in with
	Key    *chat.Key // the key it proved it holds; nil without one
	Remote string    // its address, "ip:port"
}

// Exec runs a one-shot command for a client that does not join the room, such as
// "ssh host who". The login must pass the same checks as a join (bans, registered names). Its
// output goes to stdout; an error is fit to show the user.
func (h *Hub) Exec(args []string, stdout io.Writer, opts ExecOptions) error {
	if _, _, err := h.checkLogin(opts.Name, opts.Key, opts.Remote); err != nil {
		return err
	}
	if len(args) == 0 {
		return fmt.Errorf("%w: none given (try: help)", ErrUnknownCommand)
	}
	switch chat.Fold(args[0]) {
	case "who", "names":
		if len(args) == 1 {
			for _, name := range h.Names() {
				fmt.Fprintln(stdout, name)
			}
			return nil
		}
		ch, err := h.publicRoom(args[1])
		if err != nil {
			return err
		}
		for _, name := range h.namesIn(ch, false) {
			fmt.Fprintln(stdout, name)
		}
		return nil
	case "rooms":
		h.mu.Lock()
		var lines []string
		for _, ch := range h.rooms {
			if !ch.private {
				lines = append(lines, fmt.Sprintf("%s\t%d\t%s", ch.name, ch.countIn(), ch.topic))
			}
		}
		h.mu.Unlock()
		slices.Sort(lines)
		for _, l := range lines {
			fmt.Fprintln(stdout, l)
		}
		return nil
	case "history":
		h.mu.Lock()
		def := h.rooms[h.cfg.DefaultRoom]
		h.mu.Unlock()
		ch, n, err := roomAndCount(args[1:], def, 20, h.publicRoom)
		if errors.Is(err, errCount) {
			return fmt.Errorf("usage: history [ROOM] [N]: %w", err)
		}
		if err != nil {
			return err
		}
		return h.writeHistory(stdout, ch, n)
	case "help":
		fmt.Fprintln(stdout, "commands: who [ROOM] (who is online, or in ROOM: one name per line), rooms (the public rooms: name, people online, topic, tab-separated), history [ROOM] [N] (ROOM's last N messages; the default room's 20), help")
		fmt.Fprintln(stdout, "without a command you join the chat; with join ROOM, in that room")
		return nil
	}
	return fmt.Errorf("%w %s (try: help)", ErrUnknownCommand, chat.QuoteName(args[0]))
}

// publicRoom finds the room arg names for a one-shot command, which sees public rooms only.
func (h *Hub) publicRoom(arg string) (*channel, error) {
	ch, err := h.roomNamed(arg)
	if err != nil {
		return nil, err
	}
	if ch.private {
		return nil, fmt.Errorf("%s is invite-only", ch.name)
	}
	return ch, nil
}
