package room

import (
	"context"
	"testing"
)

// keepingRelay is a one-node relay whose log stands for the history, as a cluster's stream does.
type keepingRelay struct{ LocalRelay }

func (*keepingRelay) KeepsHistory() bool { return true }

// TestRelayThatKeepsHistoryIsNotAppendedTwice: when the relay's log is the history, every node
// delivering a line must not store it again.
func TestRelayThatKeepsHistoryIsNotAppendedTwice(t *testing.T) {
	for _, tt := range []struct {
		name   string
		relay  Relay
		stored int
	}{
		{"local relay: the hub stores", nil, 1},
		{"a relay that keeps the history: the hub does not", &keepingRelay{}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t, t.TempDir())
			r := newTestRoom(t, Config{Store: st, Relay: tt.relay})
			alice, out := join(t, r, "alice", JoinOptions{Echo: true})
			alice.Handle("hello")
			out.waitFor(t, "the echo", hasSuffixLine("alice: hello"))
			if err := st.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			msgs, err := st.Recent("#lobby", 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != tt.stored {
				t.Errorf("stored %d lines, want %d", len(msgs), tt.stored)
			}
		})
	}
}
