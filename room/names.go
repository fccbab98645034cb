package room

import (
	"errors"
	"strconv"
	"strings"
)

// MaxNameLen is the longest name a member may use, in bytes (names are ASCII).
const MaxNameLen = 32

// ErrNameTaken is returned (wrapped in a *NameError) when someone online already uses the name.
var ErrNameTaken = errors.New("name is taken")

// ErrNameInvalid is returned (wrapped in a *NameError) for a name outside the allowed alphabet.
var ErrNameInvalid = errors.New("name is invalid")

// NameError says why a name was refused, in words fit to show the person who chose it.
type NameError struct {
	Name   string // already quoted and sanitised for display
	Reason string
	Err    error // ErrNameTaken or ErrNameInvalid
}

func (e *NameError) Error() string { return "name " + e.Name + " " + e.Reason }
func (e *NameError) Unwrap() error { return e.Err }

// ValidateName checks a name against the rules: 1–32 characters of [A-Za-z0-9_.-], starting with a
// letter or a digit, and not one of the names that would read like server output.
func ValidateName(name string) error {
	invalid := func(reason string) error {
		return &NameError{Name: quoteName(name), Reason: reason, Err: ErrNameInvalid}
	}
	switch {
	case name == "":
		return invalid("is empty")
	case len(name) > MaxNameLen:
		return invalid("is too long (at most " + strconv.Itoa(MaxNameLen) + " characters)")
	case !isAlnum(name[0]):
		return invalid("must start with a letter or a digit")
	}
	for i := 0; i < len(name); i++ {
		if !isNameByte(name[i]) {
			return invalid("may only contain letters, digits, '_', '.' and '-'")
		}
	}
	if isReservedName(foldName(name)) {
		return invalid("is reserved")
	}
	return nil
}

// isReservedName reports names that would let a member's lines pass for the server's own:
// "error: ..." is how the server reports errors.
func isReservedName(folded string) bool {
	switch folded {
	case "error", "server", "system", "chatd":
		return true
	}
	return false
}

// foldName is the key names are compared by: names are unique case-insensitively, and they are
// ASCII, so a byte-wise lower-casing is exact.
func foldName(name string) string { return asciiLower(name) }

// asciiLower lower-cases ASCII letters only, so byte offsets in the result match the input.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isNameByte(c byte) bool { return isAlnum(c) || c == '_' || c == '.' || c == '-' }

// quoteName makes a refused name safe to print: sanitised, shortened and quoted.
func quoteName(name string) string { return strconv.Quote(Excerpt(name, 2*MaxNameLen)) }

// takenError is the error for a name someone online already uses.
func takenError(name string) error {
	return &NameError{Name: quoteName(name), Reason: "is taken by someone online", Err: ErrNameTaken}
}

// nameFields splits "NAME rest" at the first run of spaces.
func nameFields(s string) (name, rest string) {
	s = strings.TrimSpace(s)
	name, rest, _ = strings.Cut(s, " ")
	return name, strings.TrimSpace(rest)
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
