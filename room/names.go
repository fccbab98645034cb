package room

import (
	"strings"

	"chatd/chat"
)

// takenError is the error for a name someone online already uses.
func takenError(name string) error {
	return &chat.NameError{Name: chat.QuoteName(name), Reason: "is taken by someone online", Err: chat.ErrNameTaken}
}

// nameFields splits "NAME rest" at the first run of spaces.
func nameFields(s string) (name, rest string) {
	s = strings.TrimSpace(s)
	name, rest, _ = strings.Cut(s, " ")
	return name, strings.TrimSpace(rest)
}
