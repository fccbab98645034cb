package natsjs

import (
	"fmt"
	"testing"
	"time"

	"chatd/chat"
	"chatd/store/natsjs/natstest"
)

const benchText = "a chat message of a typical length, give or take a few words"

// BenchmarkAppend measures the history's write throughput to an embedded NATS server (one
// process, loopback): b.N messages appended, then Flush waits until the stream has acknowledged
// them all. msgs/s is acknowledged messages per second.
func BenchmarkAppend(b *testing.B) {
	srv := natstest.Start(b)
	benchmarkAppend(b, srv.URL(), Config{})
}

// BenchmarkAppendCluster is BenchmarkAppend on a cluster of three servers (in this process, on
// the same two cores) with every line kept three times.
func BenchmarkAppendCluster(b *testing.B) {
	c := natstest.StartCluster(b, 3)
	benchmarkAppend(b, "", Config{URLs: c.URLs(), Replicas: 3})
}

func benchmarkAppend(b *testing.B, url string, cfg Config) {
	cfg.MaxBacklog = max(b.N+1, 10_000)
	s, _ := openStore(b, url, cfg)
	saveRoom(b, s, "#lobby")
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.Append(chat.Message{Room: "#lobby", Kind: chat.KindMessage, From: "alice", Text: benchText})
	}
	flushOK(b, s)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// historyOf100k is a store whose #big has 100 000 lines a millisecond apart, and whose #small
// has 1000 lines among 100 000 of #big's. It returns the time of #big's first line.
func historyOf100k(b *testing.B) (*Store, time.Time) {
	b.Helper()
	srv := natstest.Start(b)
	s, _ := openStore(b, srv.URL(), Config{MaxBacklog: 300_000})
	saveRoom(b, s, "#big")
	saveRoom(b, s, "#small")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.Local)
	for i := range 100_000 {
		s.Append(chat.Message{Room: "#big", At: base.Add(time.Duration(i) * time.Millisecond), Kind: chat.KindMessage, From: "alice", Text: benchText})
		if i%100 == 0 {
			s.Append(chat.Message{Room: "#small", At: base.Add(time.Duration(i) * time.Millisecond), Kind: chat.KindMessage, From: "bob", Text: benchText})
		}
	}
	flushOK(b, s)
	return s, base
}

// BenchmarkRecent reads the newest n lines of a room of 100 000 (a join's replay is 20, the
// most /history shows 1000), and of a room of 1000 lines scattered among the 100 000.
func BenchmarkRecent(b *testing.B) {
	s, _ := historyOf100k(b)
	for _, bc := range []struct {
		room string
		n    int
	}{{"#big", 20}, {"#big", 1000}, {"#small", 20}, {"#small", 1000}} {
		b.Run(fmt.Sprintf("%s/%d", bc.room[1:], bc.n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if msgs, err := s.Recent(bc.room, bc.n); err != nil || len(msgs) != bc.n {
					b.Fatalf("Recent = %d, %v", len(msgs), err)
				}
			}
		})
	}
}

// BenchmarkHistory reads 50 lines before and after a time in the middle of a room of 100 000
// lines: a web client scrolling back, and catching up.
func BenchmarkHistory(b *testing.B) {
	s, base := historyOf100k(b)
	mid := base.Add(50_000 * time.Millisecond)
	for _, bc := range []struct {
		name string
		r    chat.HistoryRange
	}{
		{"before", chat.HistoryRange{Before: mid, Limit: 50}},
		{"after", chat.HistoryRange{After: mid, Limit: 50}},
		{"after the last", chat.HistoryRange{After: base.Add(time.Hour), Limit: 50}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.History("#big", bc.r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLogin is what a key login costs the store, as in store/sqlite: a first login claims
// its name, and every login reads the identity twice.
func BenchmarkLogin(b *testing.B) {
	srv := natstest.Start(b)
	s, _ := openStore(b, srv.URL(), Config{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("user%d", i)
		if _, ok, err := s.Identity(name); err != nil || ok {
			b.Fatal(ok, err)
		}
		if _, claimed, err := s.Claim(name, testKey(i)); err != nil || !claimed {
			b.Fatal(claimed, err)
		}
		if _, ok, err := s.Identity(name); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkClaim is a claim of a free name alone: a read, the key index's compare-and-set and
// the identity's create.
func BenchmarkClaim(b *testing.B) {
	srv := natstest.Start(b)
	benchmarkClaim(b, srv.URL(), Config{})
}

// BenchmarkClaimCluster is BenchmarkClaim on a cluster of three servers, replicas 3.
func BenchmarkClaimCluster(b *testing.B) {
	c := natstest.StartCluster(b, 3)
	benchmarkClaim(b, "", Config{URLs: c.URLs(), Replicas: 3})
}

func benchmarkClaim(b *testing.B, url string, cfg Config) {
	s, _ := openStore(b, url, cfg)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, claimed, err := s.Claim(fmt.Sprintf("user%d", i), testKey(i)); err != nil || !claimed {
			b.Fatal(claimed, err)
		}
	}
}
