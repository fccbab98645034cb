package room

import (
	"context"
	"strings"
	"testing"

	"chatd/chat"
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

// handRelay is a relay whose log is the history, driven by hand: deliver is what the hub gave it.
type handRelay struct{ deliver func(Line) }

func (r *handRelay) Publish(Line) error         { return nil }
func (r *handRelay) Receive(deliver func(Line)) { r.deliver = deliver }
func (r *handRelay) KeepsHistory() bool         { return true }

// TestRelayedLinesAfterTheLoad: a relay may hand over again lines the hub loaded from the history
// at its start; they are skipped by their place in the log. A topic set on another node becomes
// the room's.
func TestRelayedLinesAfterTheLoad(t *testing.T) {
	st := openStore(t, t.TempDir())
	if err := st.SaveRoom(chat.Room{Name: "#lobby"}); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"one", "two"} {
		st.Append(chat.Message{Room: "#lobby", Kind: chat.KindMessage, From: "old", Text: text})
	}
	if err := st.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs, err := st.Recent("#lobby", 2)
	if err != nil {
		t.Fatal(err)
	}
	relay := &handRelay{}
	r := newTestRoom(t, Config{Store: st, Relay: relay})
	if relay.deliver == nil {
		t.Fatal("the hub gave the relay nowhere to deliver")
	}
	_, out := join(t, r, "alice", JoinOptions{})
	out.waitFor(t, "the join", hasSuffixLine("* alice joined #lobby (1 online)"))
	relay.deliver(Line{Room: "#lobby", Kind: LineMessage, From: "old", Text: "two", At: msgs[1].At, Seq: uint64(msgs[1].ID)})
	topic := "from node B"
	relay.deliver(Line{Room: "#lobby", Kind: LineNotice, Text: "bob set the topic of #lobby: " + topic, Topic: &topic, Seq: uint64(msgs[1].ID) + 1})
	relay.deliver(Line{Room: "#lobby", Kind: LineMessage, From: "bob", Text: "three", Seq: uint64(msgs[1].ID) + 2})
	ls := out.waitFor(t, "the new line", hasSuffixLine("bob: three"))
	n := 0
	for _, l := range ls {
		if strings.HasSuffix(l, "old: two") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("a loaded line came %d times:\n%s", n, strings.Join(ls, "\n"))
	}
	alice := r.lookup("alice").sessions[0]
	alice.Handle("/topic")
	out.waitFor(t, "the topic", hasSuffixLine("* topic of #lobby: from node B"))
}
