package duration

import (
	"errors"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		in   string
		want time.Duration
		err  error
	}{
		{"90s", 90 * time.Second, nil},
		{"10m", 10 * time.Minute, nil},
		{"2h", 2 * time.Hour, nil},
		{"7d", 7 * day, nil},
		{"2w", 14 * day, nil},
		{"1y", 365 * day, nil},
		{"1h30m", 90 * time.Minute, nil},
		{"1y6w", (365 + 42) * day, nil},
		{"", 0, ErrSyntax},
		{"10", 0, ErrSyntax},
		{"m", 0, ErrSyntax},
		{"10x", 0, ErrSyntax},
		{"-5m", 0, ErrSyntax},
		{"1.5d", 0, ErrSyntax},
		{"9999999d", 0, ErrSyntax},
		{"0s", 0, ErrNotPositive},
		{"200y", 0, ErrTooLong},
		{"5300w", 0, ErrTooLong},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("Parse(%q) = %v, %v; want %v, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}
