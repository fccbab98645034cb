package chat

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// MaxRoomLen is the longest room name, without its '#'.
const MaxRoomLen = 32

// ErrRoomInvalid is wrapped in a *RoomError for a room name outside the rules.
var ErrRoomInvalid = errors.New("room name is invalid")

// RoomError says why a room name was refused, in words fit to show the person who typed it.
type RoomError struct {
	Name   string // quoted and sanitised for display
	Reason string
}

func (e *RoomError) Error() string { return "room name " + e.Name + " " + e.Reason }
func (e *RoomError) Unwrap() error { return ErrRoomInvalid }

// ParseRoom reads a room name as people type it, with or without its '#' ("go", "#go", "#Go"),
// and returns it as rooms are named and shown: '#' then 1–32 of a–z 0–9 _ . -, in lower case.
func ParseRoom(s string) (string, error) {
	name := strings.TrimPrefix(s, "#")
	invalid := func(reason string) error {
		return &RoomError{Name: strconv.Quote(Excerpt(s, 2*MaxRoomLen)), Reason: reason}
	}
	switch {
	case name == "":
		return "", invalid("is empty")
	case len(name) > MaxRoomLen:
		return "", invalid("is too long (at most " + strconv.Itoa(MaxRoomLen) + " characters after the #)")
	}
	for i := 0; i < len(name); i++ {
		if !isNameByte(name[i]) {
			return "", invalid("may only contain letters, digits, '_', '.' and '-' after the #")
		}
	}
	return "#" + Fold(name), nil
}

// IsRoom reports whether s is a room name as ParseRoom returns them.
func IsRoom(s string) bool {
	r, err := ParseRoom(s)
	return err == nil && r == s
}

// Room is a room as a store keeps it.
type Room struct {
	Name    string    // as ParseRoom returns it: "#go"
	Owner   string    // the registered name of whoever created it; "" for none
	Topic   string    // sanitised
	Private bool      // invitation only
	Created time.Time // when it was created
	Invited []string  // the names invited to it (a private room's way in), as invited
}
