package chat

import (
	"errors"
	"strconv"
)

// MaxNameLen is the longest name a person may use, in bytes (names are ASCII).
const MaxNameLen = 32

// ErrNameTaken is wrapped in a *NameError when someone online already uses the name.
var ErrNameTaken = errors.New("name is taken")

// ErrNameInvalid is wrapped in a *NameError for a name outside the rules.
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
		return &NameError{Name: QuoteName(name), Reason: reason, Err: ErrNameInvalid}
	}
	switch {
	case name == "":
		return invalid("is empty")
	case len(name) > MaxNameLen:
		return invalid("is too long (at most " + strconv.Itoa(MaxNameLen) + " characters)")
	case !IsAlnum(name[0]):
		return invalid("must start with a letter or a digit")
	}
	for i := 0; i < len(name); i++ {
		if !isNameByte(name[i]) {
			return invalid("may only contain letters, digits, '_', '.' and '-'")
		}
	}
	if isReservedName(Fold(name)) {
		return invalid("is reserved")
	}
	return nil
}

// ValidName reports whether name could ever have been accepted: what a store may keep.
func ValidName(name string) bool { return ValidateName(name) == nil }

// isReservedName reports names that would let a member's lines pass for the server's own:
// "error: ..." is how the server reports errors.
func isReservedName(folded string) bool {
	switch folded {
	case "error", "server", "system", "chatd":
		return true
	}
	return false
}

// Fold is the key names (and room names, and commands) are compared by: they are unique
// case-insensitively, and they are ASCII, so lower-casing ASCII letters is exact. Only ASCII
// letters change, so byte offsets in the result match the input's.
func Fold(s string) string {
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

// IsAlnum reports an ASCII letter or digit.
func IsAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isNameByte(c byte) bool { return IsAlnum(c) || c == '_' || c == '.' || c == '-' }

// QuoteName makes a name someone chose safe to print: sanitised, shortened and quoted.
func QuoteName(name string) string { return strconv.Quote(Excerpt(name, 2*MaxNameLen)) }

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
