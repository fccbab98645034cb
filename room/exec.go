package room

import (
	"errors"
	"fmt"
	"io"
)

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
	case "history":
		arg := ""
		if len(args) > 1 {
			arg = args[1]
		}
		n, err := parseCount(arg, 20)
		if err != nil {
			return fmt.Errorf("usage: history [N]: %w", err)
		}
		return r.writeHistory(stdout, n)
	case "help":
		fmt.Fprintln(stdout, "commands: who (who is online, one name per line), history [N] (the last N messages), help")
		fmt.Fprintln(stdout, "without a command you join the chat")
		return nil
	}
	return fmt.Errorf("%w %s (try: help)", ErrUnknownCommand, quoteName(args[0]))
}
