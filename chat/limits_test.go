package chat

import (
	"errors"
	"testing"
)

func TestStoreLimits(t *testing.T) {
	if got := (StoreLimits{MaxKeysPerName: 3}).WithDefaults(); got.MaxKeysPerName != 3 || got.MaxQueuedDMs != DefaultStoreLimits().MaxQueuedDMs {
		t.Errorf("WithDefaults = %+v: want the one set kept and the rest defaulted", got)
	}
	if err := (StoreLimits{MaxQueuedDMsPerAddr: -1}).Validate(); err == nil {
		t.Error("Validate took a negative cap")
	}
	l := StoreLimits{MaxQueuedDMs: 5, MaxQueuedDMsPerSender: 2, MaxQueuedDMsPerAddr: 3}
	tests := []struct {
		name                         string
		waiting, fromSender, fromAdr int
		hasAddr                      bool
		want                         error // nil: room for one more
	}{
		{"room", 4, 1, 2, true, nil},
		{"sender first, though the queue is full too", 5, 2, 3, true, ErrSenderQueueFull},
		{"address", 5, 1, 3, true, ErrAddrQueueFull},
		{"no address to count by", 4, 1, 3, false, nil},
		{"queue", 5, 1, 0, true, ErrQueueFull},
	}
	for _, tt := range tests {
		got := l.DMQueueFull(tt.waiting, tt.fromSender, tt.fromAdr, tt.hasAddr)
		switch {
		case tt.want == nil && got != nil:
			t.Errorf("%s: %v, want room", tt.name, got)
		case tt.want != nil && (got == nil || !errors.Is(got, tt.want)):
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
