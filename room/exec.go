package room

import (
	"errors"
	"fmt"
	"io"

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
func (r *Room) Exec(args []string, stdout io.Writer, opts ExecOptions) error {
	if _, _, err := r.checkLogin(opts.Name, opts.Key, opts.Remote); err != nil {
		return err
	}
	if len(args) == 0 {
		return fmt.Errorf("%w: none given (try: help)", ErrUnknownCommand)
	}
	switch chat.Fold(args[0]) {
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
	return fmt.Errorf("%w %s (try: help)", ErrUnknownCommand, chat.QuoteName(args[0]))
}
