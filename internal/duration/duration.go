// Package duration reads durations the way people write them in chat commands and flags: a
// whole number and a unit, s, m, h, d (24 h), w (7 d) or y (365 d), or several of them, as in
// 90s, 10m, 2h, 7d, 2w, 1y, 1h30m or 1y6w.
package duration

import (
	"errors"
	"strconv"
	"time"
)

// Max is the longest duration Parse accepts: far from overflowing a time.Duration, and longer
// than anything a chat needs.
const Max = 100 * 365 * 24 * time.Hour

var (
	// ErrSyntax: the text is not a duration.
	ErrSyntax = errors.New("not a duration")
	// ErrTooLong: the duration is longer than Max.
	ErrTooLong = errors.New("longer than 100 years")
	// ErrNotPositive: the duration is zero.
	ErrNotPositive = errors.New("not a positive duration")
)

// unit is what a unit letter stands for.
func unit(c byte) (time.Duration, bool) {
	switch c {
	case 's':
		return time.Second, true
	case 'm':
		return time.Minute, true
	case 'h':
		return time.Hour, true
	case 'd':
		return 24 * time.Hour, true
	case 'w':
		return 7 * 24 * time.Hour, true
	case 'y':
		return 365 * 24 * time.Hour, true
	}
	return 0, false
}

// Parse reads s. A number has at most 6 digits; the error is ErrSyntax, ErrTooLong or
// ErrNotPositive, for the caller to put in words with s.
func Parse(s string) (time.Duration, error) {
	if s == "" {
		return 0, ErrSyntax
	}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 || i > 6 || i == len(s) {
			return 0, ErrSyntax
		}
		u, ok := unit(s[i])
		if !ok {
			return 0, ErrSyntax
		}
		n, _ := strconv.Atoi(s[:i])
		total += time.Duration(n) * u
		if total > Max {
			return 0, ErrTooLong
		}
		s = s[i+1:]
	}
	if total <= 0 {
		return 0, ErrNotPositive
	}
	return total, nil
}
