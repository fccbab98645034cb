package natsjs

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"chatd/chat"
	"chatd/store/natsjs/natstest"
)

// TestClusterReplicas: on a cluster of three NATS servers, with every stream and bucket kept
// three times, the store goes on when the server it is connected to stops: what it wrote before
// is there, and it writes and reads as before.
func TestClusterReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-server cluster takes seconds")
	}
	c := natstest.StartCluster(t, 3)
	s, _ := openStore(t, "", Config{URLs: c.URLs(), Replicas: 3})
	for _, stream := range []string{s.streamName, "KV_" + s.cfg.Prefix + "_identities"} {
		info, err := s.js.Stream(t.Context(), stream)
		if err != nil || info.CachedInfo().Config.Replicas != 3 {
			t.Fatalf("stream %s: %v; want 3 replicas", stream, err)
		}
	}
	if _, claimed, err := s.Claim("alice", testKey(1)); !claimed || err != nil {
		t.Fatal(claimed, err)
	}
	saveRoom(t, s, "#go")
	var want []string
	for i := range 50 {
		s.Append(chat.Message{Room: "#go", Kind: chat.KindMessage, From: "alice", Text: fmt.Sprint("before ", i)})
		want = append(want, fmt.Sprint("before ", i))
	}
	flushOK(t, s)
	if _, err := s.QueueDM(chat.DM{From: "bob", To: "alice", Text: "waiting"}); err != nil {
		t.Fatal(err)
	}

	// Stop the server the store is connected to.
	name := s.nc.ConnectedServerName()
	i := slices.IndexFunc(c.Nodes, func(n *natstest.Node) bool { return n.Server() != nil && n.Server().Name() == name })
	if i < 0 {
		t.Fatalf("connected to %q, which is none of the cluster's servers", name)
	}
	c.Nodes[i].Stop()
	c.WaitForLeader()
	t.Logf("stopped %s", name)

	// Writes go on: those that reach a stream while it elects a new leader wait for it (the
	// publisher retries; a key-value write is tried again once, as a client would).
	for i := range 50 {
		s.Append(chat.Message{Room: "#go", Kind: chat.KindMessage, From: "alice", Text: fmt.Sprint("after ", i)})
		want = append(want, fmt.Sprint("after ", i))
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("flush after the stop: %v", err)
	}
	retry(t, "claim bob", func() error {
		_, _, err := s.Claim("bob", testKey(2))
		return err
	})
	retry(t, "save #rust", func() error { return s.SaveRoom(chat.Room{Name: "#rust"}) })
	var dms []chat.DM
	retry(t, "take DMs", func() (err error) {
		dms, err = s.TakeDMs("alice")
		return err
	})
	if len(dms) != 1 || dms[0].Text != "waiting" {
		t.Fatalf("TakeDMs = %+v, want the message queued before the stop", dms)
	}
	var got []chat.Message
	retry(t, "recent", func() (err error) {
		got, err = s.Recent("#go", 1000)
		return err
	})
	// Every line is there once. Those flushed before the stop are in order; of those appended
	// during the election, one whose publish was retried may be stored after later ones (the
	// store's contract: Append never waits, so it cannot hold the others back).
	have := texts(got)
	if len(have) != len(want) || !slices.Equal(have[:50], want[:50]) {
		t.Fatalf("#go has %v, want every line once, the first 50 in order", have)
	}
	slices.Sort(have)
	slices.Sort(want)
	if !slices.Equal(have, want) {
		t.Fatalf("#go has %v, want every line once", have)
	}
	rooms, err := s.Rooms()
	if err != nil || len(rooms) != 2 {
		t.Fatalf("Rooms = %+v, %v; want #go and #rust", rooms, err)
	}
	if id, ok, err := s.Identity("BOB"); err != nil || !ok || id.Keys[0].Fingerprint != testKey(2).Fingerprint {
		t.Fatalf("Identity(bob) = %+v, %v, %v", id, ok, err)
	}
}

// retry runs f until it succeeds, logging its failures, for at most a minute: a call that
// reaches a stream while it elects a leader fails after Config.Timeout.
func retry(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %v; again", what, err)
	}
}
