package sqlite

import (
	"fmt"
	"path/filepath"
	"testing"

	"chatd/chat"
)

// BenchmarkAppend measures the history's write throughput: b.N messages appended, then Flush
// waits until they are all committed. msgs/s is committed messages per second.
func BenchmarkAppend(b *testing.B) { benchmarkAppend(b, Config{}) }

// BenchmarkAppendWhilePruning is BenchmarkAppend with a history limit far below b.N: the pruner
// deletes as fast as the writer inserts, taking turns with it for the write lock. msgs/s is
// committed messages per second; compare with BenchmarkAppend for what retention costs.
func BenchmarkAppendWhilePruning(b *testing.B) { benchmarkAppend(b, Config{KeepMessages: 10_000}) }

func benchmarkAppend(b *testing.B, cfg Config) {
	// Append outpaces any disk: make room for the whole burst, so that none of it is dropped.
	path := filepath.Join(b.TempDir(), "chat.db")
	s, _ := openAt(b, path, cfg, options{maxBacklog: max(b.N+1, defaultMaxBacklog)})
	text := "a chat message of a typical length, give or take a few words"
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Append(chat.Message{Room: lobby, Kind: chat.KindMessage, From: "alice", Text: text})
	}
	flush(b, s)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkRecent1000 reads the newest 1000 of 10,000 messages, as a room does when it starts.
func BenchmarkRecent1000(b *testing.B) {
	s, _ := openTest(b, Config{})
	for i := range 10_000 {
		s.Append(chat.Message{Room: lobby, Kind: chat.KindMessage, From: "alice", Text: fmt.Sprintf("message %d of a typical length, give or take a few words", i)})
	}
	flush(b, s)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if msgs, err := s.Recent(lobby, 1000); err != nil || len(msgs) != 1000 {
			b.Fatalf("Recent = %d, %v", len(msgs), err)
		}
	}
}

// BenchmarkLogin is what a key login costs the store: a first login claims its name (a write
// transaction with two look-ups), and every login reads the identity twice (when the key is
// checked and when the session joins).
func BenchmarkLogin(b *testing.B) {
	s, _ := openTest(b, Config{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
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
