package natsjs

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"chatd/room"
	"chatd/store/natsjs/natstest"

	"github.com/nats-io/nuid"
)

// arrivals is a member's Output that notes when each line "name: <n>" arrives.
type arrivals struct {
	mu   sync.Mutex
	at   []time.Time // by n
	n    int         // how many have arrived
	want int
	done chan struct{} // closed when want lines have arrived
	each chan int      // every n, if not nil
}

func newArrivals(want int, each bool) *arrivals {
	a := &arrivals{at: make([]time.Time, want), want: want, done: make(chan struct{})}
	if each {
		a.each = make(chan int, want)
	}
	return a
}

func (a *arrivals) Write(p []byte) (int, error) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for l := range bytes.Lines(p) {
		_, num, ok := bytes.Cut(bytes.TrimSpace(l), []byte(": "))
		if !ok {
			continue
		}
		n, err := strconv.Atoi(string(num))
		if err != nil || n < 0 || n >= len(a.at) || !a.at[n].IsZero() {
			continue
		}
		a.at[n] = now
		a.n++
		if a.each != nil {
			a.each <- n
		}
		if a.n == a.want {
			close(a.done)
		}
	}
	return len(p), nil
}

func (a *arrivals) Close() error { return nil }

// reportLatency reports the median and 99th percentile of ds.
func reportLatency(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRelayLatency measures one line's way from one node to the other on one embedded
// NATS server (one process, loopback, two cores), one line at a time: "relays" from Publish on
// A's relay to B's relay handing it on ("relays-cluster3": on a 3-server cluster, replicas 3,
// A and B on different servers); "hubs" from a member's Handle on hub A to the line's
// Write to a member of hub B (the room's fan-out and writer included, no write gap).
func BenchmarkRelayLatency(b *testing.B) {
	b.Run("relays", func(b *testing.B) {
		srv := natstest.Start(b)
		benchmarkRelayLatency(b, []string{srv.URL()}, []string{srv.URL()}, 1)
	})
	// Three servers in this process, every line kept three times; A and B on different
	// servers.
	b.Run("relays-cluster3", func(b *testing.B) {
		urls := natstest.StartCluster(b, 3).URLs()
		benchmarkRelayLatency(b, urls[:1], urls[1:2], 3)
	})
	b.Run("hubs", func(b *testing.B) {
		srv := natstest.Start(b)
		prefix := "t" + nuid.Next()
		rcfg := room.Config{MsgRate: -1, WriteGap: -1, OutboxSize: 1 << 16}
		a := startNodeWith(b, []string{srv.URL()}, prefix, Config{}, rcfg)
		nb := startNodeWith(b, []string{srv.URL()}, prefix, Config{}, rcfg)
		alice, _ := a.join(b, "alice", room.JoinOptions{})
		out := newArrivals(b.N, true)
		if _, err := nb.hub.Join("bob", out, room.JoinOptions{}); err != nil {
			b.Fatal(err)
		}
		ds := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			start := time.Now()
			alice.Handle(strconv.Itoa(i))
			<-out.each
			ds = append(ds, time.Since(start))
		}
		b.StopTimer()
		reportLatency(b, ds)
	})
}

// benchmarkRelayLatency: from Publish on a relay connected to urlsA to delivery by one
// connected to urlsB, one line at a time.
func benchmarkRelayLatency(b *testing.B, urlsA, urlsB []string, replicas int) {
	prefix := "t" + nuid.Next()
	sa, _ := openStore(b, "", Config{URLs: urlsA, Prefix: prefix, Replicas: replicas})
	sb, _ := openStore(b, "", Config{URLs: urlsB, Prefix: prefix, Replicas: replicas})
	saveRoom(b, sa, "#lobby")
	ra := benchRelay(b, sa, func(room.Line) {})
	got := make(chan struct{}, 1)
	benchRelay(b, sb, func(room.Line) { got <- struct{}{} })
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if err := ra.Publish(room.Line{Room: "#lobby", Kind: room.LineMessage, From: "alice", Text: strconv.Itoa(i)}); err != nil {
			b.Fatal(err)
		}
		<-got
		ds = append(ds, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, ds)
}

// benchRelay makes a relay on s that hands lines to deliver, closed when the benchmark ends.
func benchRelay(b *testing.B, s *Store, deliver func(room.Line)) *Relay {
	b.Helper()
	r, err := NewRelay(context.Background(), s, RelayConfig{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	r.Receive(deliver)
	return r
}

// BenchmarkRelayThroughput: members spread over two hubs on one embedded NATS server say b.N
// lines as fast as their lines are acknowledged (each waits for its line's acknowledgement, as
// a member's Handle does); a listener on each hub gets them all. lines/s is lines delivered to
// both listeners per second; the latencies are from a line's Handle to its arrival at B's
// listener, under that load.
func BenchmarkRelayThroughput(b *testing.B) {
	for _, senders := range []int{16, 64} {
		b.Run(fmt.Sprint("senders=", senders), func(b *testing.B) { benchmarkRelayThroughput(b, senders) })
	}
}

func benchmarkRelayThroughput(b *testing.B, senders int) {
	srv := natstest.Start(b)
	prefix := "t" + nuid.Next()
	rcfg := room.Config{MsgRate: -1, WriteGap: -1, OutboxSize: 1 << 20}
	nodes := []*chatNode{
		startNodeWith(b, []string{srv.URL()}, prefix, Config{}, rcfg),
		startNodeWith(b, []string{srv.URL()}, prefix, Config{}, rcfg),
	}
	var outs []*arrivals
	for i, n := range nodes {
		out := newArrivals(b.N, false)
		if _, err := n.hub.Join(fmt.Sprint("listener", i), out, room.JoinOptions{}); err != nil {
			b.Fatal(err)
		}
		outs = append(outs, out)
	}
	var members []*room.Member
	for i := range senders {
		m, _ := nodes[i%2].join(b, fmt.Sprint("s", i), room.JoinOptions{})
		members = append(members, m)
	}
	sent := make([]time.Time, b.N)
	b.ResetTimer()
	var wg sync.WaitGroup
	for s, m := range members {
		wg.Go(func() {
			for n := s; n < b.N; n += senders {
				sent[n] = time.Now()
				m.Handle(strconv.Itoa(n))
			}
		})
	}
	wg.Wait()
	for _, out := range outs {
		<-out.done
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	ds := make([]time.Duration, b.N)
	outs[1].mu.Lock()
	for n := range ds {
		ds[n] = outs[1].at[n].Sub(sent[n])
	}
	outs[1].mu.Unlock()
	reportLatency(b, ds)
}
