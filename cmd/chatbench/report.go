package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Report is what a run measured. Its JSON keys are documented in the package comment; keep them
// stable.
type Report struct {
	RunID       string  `json:"run_id"`
	NamePrefix  string  `json:"name_prefix"`
	SSHAddr     string  `json:"ssh_addr"`
	TCPAddr     string  `json:"tcp_addr"`
	WSAddr      string  `json:"ws_addr"`
	ClientsSSH  int     `json:"clients_ssh"`
	ClientsTCP  int     `json:"clients_tcp"`
	ClientsWS   int     `json:"clients_ws"`
	PTY         bool    `json:"pty"`
	Senders     int     `json:"senders"`
	Rate        float64 `json:"rate"`
	Size        int     `json:"size"`
	Rooms       int     `json:"rooms"`
	Duration    float64 `json:"duration_s"`
	Settle      float64 `json:"settle_s"`
	Hold        bool    `json:"hold"`
	Interrupted bool    `json:"interrupted"`

	Connected      int          `json:"clients_connected"`
	Failed         int          `json:"clients_failed"`
	ConnectErrors  []ErrorCount `json:"connect_errors"`
	ConnectSeconds float64      `json:"connect_seconds"`
	ConnectRate    float64      `json:"connect_rate"`

	ServerPID             int      `json:"server_pid"`
	ServerPIDs            []int    `json:"server_pids"`
	ServerCPUConnect      *float64 `json:"server_cpu_connect_s"`
	ServerCPURun          *float64 `json:"server_cpu_run_s"`
	ServerRSSBefore       *int64   `json:"server_rss_before_kib"`
	ServerRSSAfterConnect *int64   `json:"server_rss_after_connect_kib"`
	ServerRSSEnd          *int64   `json:"server_rss_end_kib"`
	ServerRSSPerSession   *float64 `json:"server_rss_per_session_kib"`
	ServerError           string   `json:"server_error"`
	Servers               []Server `json:"servers"`
	BenchCPUConnect       float64  `json:"bench_cpu_connect_s"`
	BenchCPURun           float64  `json:"bench_cpu_run_s"`
	MessagesSent          int64    `json:"messages_sent"`
	SendsSkipped          int64    `json:"sends_skipped"`
	RateLimitLines        int64    `json:"rate_limit_lines"`
	Expected              int64    `json:"deliveries_expected"`
	Received              int64    `json:"deliveries_received"`
	Lost                  int64    `json:"deliveries_lost"`
	Duplicates            int64    `json:"duplicates"`
	OutOfOrder            int64    `json:"out_of_order"`
	Echoes                int64    `json:"echoes"`
	EchoesExpected        int64    `json:"echoes_expected"`
	WindowSeconds         float64  `json:"window_seconds"`
	DeliveredInWindow     int64    `json:"deliveries_in_window"`
	DeliveriesPerSec      float64  `json:"deliveries_per_sec"`
	LatencyP50            float64  `json:"latency_p50_ms"`
	LatencyP90            float64  `json:"latency_p90_ms"`
	LatencyP99            float64  `json:"latency_p99_ms"`
	LatencyMax            float64  `json:"latency_max_ms"`
	Dropped               int      `json:"clients_dropped"`
	Drops                 []Drop   `json:"drops"`

	Foreign     int64         `json:"deliveries_foreign"`
	RoomFigures []RoomFigures `json:"room_figures"`

	Nodes       int       `json:"nodes"`
	NodeClients []int     `json:"node_clients"`
	SameNode    NodeSplit `json:"same_node"`
	CrossNode   NodeSplit `json:"cross_node"`
}

// NodeSplit is the share of the delivery figures received on the sender's node (same_node) or
// on another (cross_node).
type NodeSplit struct {
	Expected   int64   `json:"deliveries_expected"`
	Received   int64   `json:"deliveries_received"`
	Lost       int64   `json:"deliveries_lost"`
	LatencyP50 float64 `json:"latency_p50_ms"`
	LatencyP90 float64 `json:"latency_p90_ms"`
	LatencyP99 float64 `json:"latency_p99_ms"`
	LatencyMax float64 `json:"latency_max_ms"`
}

func (s *NodeSplit) setLatency(h *histogram) {
	s.LatencyP50 = ms(h.percentile(50))
	s.LatencyP90 = ms(h.percentile(90))
	s.LatencyP99 = ms(h.percentile(99))
	s.LatencyMax = ms(h.percentile(100))
}

// Server is one -pid's figures; the report's server_* figures are their sums.
type Server struct {
	PID             int      `json:"pid"`
	CPUConnect      *float64 `json:"cpu_connect_s"`
	CPURun          *float64 `json:"cpu_run_s"`
	RSSBefore       *int64   `json:"rss_before_kib"`
	RSSAfterConnect *int64   `json:"rss_after_connect_kib"`
	RSSEnd          *int64   `json:"rss_end_kib"`
}

// RoomFigures is one room's share of the delivery figures (with -rooms); the run's are their sums.
type RoomFigures struct {
	Room         string  `json:"room"`
	Clients      int     `json:"clients"` // connected
	Senders      int     `json:"senders"`
	MessagesSent int64   `json:"messages_sent"`
	Expected     int64   `json:"deliveries_expected"`
	Received     int64   `json:"deliveries_received"`
	Lost         int64   `json:"deliveries_lost"`
	Foreign      int64   `json:"deliveries_foreign"`
	LatencyP50   float64 `json:"latency_p50_ms"`
	LatencyP99   float64 `json:"latency_p99_ms"`
	LatencyMax   float64 `json:"latency_max_ms"`
}

// ErrorCount is one kind of connect failure and how many clients it hit.
type ErrorCount struct {
	Error string `json:"error"`
	Count int    `json:"count"`
}

// Drop is a client the server disconnected during the run.
type Drop struct {
	Name      string  `json:"name"`
	Transport string  `json:"transport"` // "ssh", "tcp" or "ws"
	AtSeconds float64 `json:"at_s"`      // since the first dial
	Error     string  `json:"error"`     // how the connection ended, as the client saw it
	LastLine  string  `json:"last_line"` // the last line the server sent it, escape codes removed
	Notice    string  `json:"notice"`    // what the room told the others ("NAME left (too slow)"), if seen
}

func (b *bench) newReport() *Report {
	c := b.cfg
	return &Report{
		RunID:         b.runID,
		NamePrefix:    c.NamePrefix,
		SSHAddr:       c.SSHAddr,
		TCPAddr:       c.TCPAddr,
		WSAddr:        c.WSAddr,
		ClientsSSH:    c.SSHClients,
		ClientsTCP:    c.TCPClients,
		ClientsWS:     c.WSClients,
		PTY:           c.PTY,
		Rate:          c.Rate,
		Size:          c.Size,
		Rooms:         c.Rooms,
		Duration:      c.Duration.Seconds(),
		Settle:        c.Settle.Seconds(),
		Hold:          c.Hold,
		ServerPID:     firstOr0(c.PIDs),
		ServerPIDs:    slices.Clone(c.PIDs),
		Servers:       []Server{},
		ConnectErrors: []ErrorCount{},
		Drops:         []Drop{},
		RoomFigures:   []RoomFigures{},
		Nodes:         max(b.nNodes, 1),
		NodeClients:   []int{},
	}
}

func firstOr0(v []int) int {
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

// setServer fills the server figures from the samples, each of every -pid, taken before and
// after the connect phase and at the end of the run; a sample that could not be taken (nil)
// leaves its figures null. The server_* figures are the pids' sums: with one pid per node, the
// whole cluster's (RSS per session is the cluster's growth over all the clients).
func (r *Report) setServer(before, afterConnect, end []procSample) {
	sum := func(s []procSample) *procSample {
		if s == nil {
			return nil
		}
		var t procSample
		for _, p := range s {
			t.cpu += p.cpu
			t.rssKiB += p.rssKiB
		}
		return &t
	}
	at := func(s []procSample, i int) *procSample {
		if s == nil {
			return nil
		}
		return &s[i]
	}
	tb, ta, te := sum(before), sum(afterConnect), sum(end)
	r.ServerRSSBefore, r.ServerRSSAfterConnect, r.ServerRSSEnd, r.ServerCPUConnect, r.ServerCPURun = serverFigures(tb, ta, te)
	if tb != nil && ta != nil && r.Connected > 0 {
		per := round3(float64(ta.rssKiB-tb.rssKiB) / float64(r.Connected))
		r.ServerRSSPerSession = &per
	}
	for i, pid := range r.ServerPIDs {
		s := Server{PID: pid}
		s.RSSBefore, s.RSSAfterConnect, s.RSSEnd, s.CPUConnect, s.CPURun = serverFigures(at(before, i), at(afterConnect, i), at(end, i))
		r.Servers = append(r.Servers, s)
	}
}

// serverFigures are the RSS of each sample and the CPU time between them, nil where a sample is missing.
func serverFigures(before, afterConnect, end *procSample) (rssBefore, rssAfterConnect, rssEnd *int64, cpuConnect, cpuRun *float64) {
	if before != nil {
		rssBefore = &before.rssKiB
	}
	if afterConnect != nil {
		rssAfterConnect = &afterConnect.rssKiB
	}
	if end != nil {
		rssEnd = &end.rssKiB
	}
	if before != nil && afterConnect != nil {
		cpu := round3(afterConnect.cpu - before.cpu)
		cpuConnect = &cpu
	}
	if afterConnect != nil && end != nil {
		cpu := round3(end.cpu - afterConnect.cpu)
		cpuRun = &cpu
	}
	return
}

// WriteJSON writes the report as one JSON object on one line.
func (r *Report) WriteJSON(w io.Writer) error {
	return json.NewEncoder(w).Encode(r)
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) error {
	var sb strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	kinds := []string{}
	if r.ClientsSSH > 0 {
		mode := "pty"
		if !r.PTY {
			mode = "no pty"
		}
		kinds = append(kinds, fmt.Sprintf("%d ssh (%s) at %s", r.ClientsSSH, mode, r.SSHAddr))
	}
	if r.ClientsTCP > 0 {
		kinds = append(kinds, fmt.Sprintf("%d tcp at %s", r.ClientsTCP, r.TCPAddr))
	}
	if r.ClientsWS > 0 {
		kinds = append(kinds, fmt.Sprintf("%d websocket at %s", r.ClientsWS, r.WSAddr))
	}
	p("chatbench run %s: %s; names %s-*\n", r.RunID, strings.Join(kinds, " + "), r.NamePrefix)
	if r.Interrupted {
		p("interrupted: the figures cover what was measured until then\n")
	}
	p("clients      %d connected, %d failed", r.Connected, r.Failed)
	if r.Dropped > 0 {
		p(", %d dropped by the server during the run", r.Dropped)
	}
	p("\n")
	limited, roomLimited := false, false
	for _, e := range r.ConnectErrors {
		p("  failed     %d× %s\n", e.Count, e.Error)
		limited = limited || strings.Contains(e.Error, "from your address")
		roomLimited = roomLimited || strings.Contains(e.Error, "room limit")
	}
	if limited {
		p("  hint       chatd limits connections per address: for a load test start it with\n" +
			"             --limit-exempt 127.0.0.1 (the address chatbench connects from)\n")
	}
	if roomLimited {
		p("  hint       chatd limits the rooms one address may create (10 an hour) and holds: for\n" +
			"             -rooms start it with --rooms-per-hour 0 (and --max-rooms 0 past 1000 rooms)\n")
	}
	if r.Nodes > 1 {
		p("nodes        %d, clients connected to each: %s\n", r.Nodes, strings.Trim(fmt.Sprint(r.NodeClients), "[]"))
	}
	p("connect      %.3f s from the first dial to the last join: %.1f conn/s\n", r.ConnectSeconds, r.ConnectRate)
	if r.Settle > 0 {
		p("settle       %s after the last join before the after-connect sample and the first send\n", dur(r.Settle))
	}
	phase := "run"
	if r.Hold {
		phase = "hold"
	}
	if len(r.ServerPIDs) == 0 {
		p("server       (no -pid: CPU and RSS not measured)\n")
	} else {
		summed := ""
		if len(r.ServerPIDs) > 1 {
			summed = fmt.Sprintf(" (%d processes, summed)", len(r.ServerPIDs))
		}
		p("server cpu   %s s during connect, %s s during the %s%s\n", opt(r.ServerCPUConnect, "%.2f"), opt(r.ServerCPURun, "%.2f"), phase, summed)
		p("server rss   %s KiB before, %s KiB after connect, %s KiB at the end; %s KiB per session\n",
			opt(r.ServerRSSBefore, "%d"), opt(r.ServerRSSAfterConnect, "%d"), opt(r.ServerRSSEnd, "%d"), opt(r.ServerRSSPerSession, "%.1f"))
		if len(r.Servers) > 1 {
			for _, s := range r.Servers {
				p("  pid %-8d cpu %s s during connect, %s s during the %s; rss %s, %s, %s KiB\n", s.PID,
					opt(s.CPUConnect, "%.2f"), opt(s.CPURun, "%.2f"), phase, opt(s.RSSBefore, "%d"), opt(s.RSSAfterConnect, "%d"), opt(s.RSSEnd, "%d"))
			}
		}
		if r.ServerError != "" {
			p("server       %s could not be sampled: %s\n", pidList(r.ServerPIDs), r.ServerError)
		}
	}
	p("chatbench    %.2f s CPU during connect, %.2f s during the %s (its own use)\n", r.BenchCPUConnect, r.BenchCPURun, phase)
	if r.Hold {
		p("held         %d sessions for %s, sending nothing\n", r.Connected, dur(r.Duration))
	} else {
		p("messages     %d sent by %d senders at %g/s each, %d bytes, over %s", r.MessagesSent, r.Senders, r.Rate, r.Size, dur(r.WindowSeconds))
		if r.SendsSkipped > 0 {
			p(" (%d send slots skipped: writes blocked)", r.SendsSkipped)
		}
		p("\n")
		if r.RateLimitLines > 0 {
			p("rate limit   the server told senders to slow down %d times: its --msg-rate delays (or refuses)\n"+
				"             their lines, which shows in latency and losses; use --msg-rate 0 for load tests\n", r.RateLimitLines)
		}
		p("deliveries   %d expected, %d received, %d lost, %d duplicates, %d out of order\n", r.Expected, r.Received, r.Lost, r.Duplicates, r.OutOfOrder)
		if r.EchoesExpected > 0 || r.Echoes > 0 {
			p("echoes       %d of %d (PTY and WebSocket senders' own messages, not counted as deliveries)\n", r.Echoes, r.EchoesExpected)
		}
		p("throughput   %.0f deliveries/s over the %s window\n", r.DeliveriesPerSec, dur(r.WindowSeconds))
		p("latency      p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms\n", r.LatencyP50, r.LatencyP90, r.LatencyP99, r.LatencyMax)
		if r.Nodes > 1 {
			for _, s := range []struct {
				what string
				f    NodeSplit
			}{{"same node ", r.SameNode}, {"cross node", r.CrossNode}} {
				p("%s   %d expected, %d received, %d lost; p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms\n",
					s.what, s.f.Expected, s.f.Received, s.f.Lost, s.f.LatencyP50, s.f.LatencyP90, s.f.LatencyP99, s.f.LatencyMax)
			}
		}
	}
	r.writeRooms(p)
	if r.Dropped > 0 {
		p("dropped      %d\n", r.Dropped)
		for i, d := range r.Drops {
			if i == 20 {
				p("  ... %d more (-json lists up to %d)\n", r.Dropped-20, maxDropsListed)
				break
			}
			p("  %s (%s) at %.1f s: %s", d.Name, d.Transport, d.AtSeconds, d.Error)
			if d.Notice != "" {
				p("; room: %q", "* "+d.Notice)
			}
			if d.LastLine != "" {
				p("; last line: %q", d.LastLine)
			}
			p("\n")
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

// writeRooms writes the rooms' lines: how the clients were spread, the deliveries from other
// rooms (there should be none), and the rooms' spread of p99 and losses.
func (r *Report) writeRooms(p func(format string, args ...any)) {
	if r.Rooms == 0 {
		if r.Foreign > 0 {
			p("foreign      %d deliveries tagged with another of the run's rooms\n", r.Foreign)
		}
		return
	}
	if len(r.RoomFigures) == 0 {
		p("rooms        %d\n", r.Rooms)
		return
	}
	rf := r.RoomFigures
	least, most := rf[0].Clients, rf[0].Clients
	for _, f := range rf {
		least, most = min(least, f.Clients), max(most, f.Clients)
	}
	each := strconv.Itoa(least)
	if most != least {
		each += "-" + strconv.Itoa(most)
	}
	p("rooms        %d of %s clients (%s to %s)\n", r.Rooms, each, rf[0].Room, rf[len(rf)-1].Room)
	if r.Hold {
		return
	}
	p("foreign      %d deliveries from other rooms (should be 0)\n", r.Foreign)
	fast, slow := -1, -1 // among the rooms that got something
	var lossy []string
	for i, f := range rf {
		if f.Received > 0 && (fast < 0 || f.LatencyP99 < rf[fast].LatencyP99) {
			fast = i
		}
		if f.Received > 0 && (slow < 0 || f.LatencyP99 > rf[slow].LatencyP99) {
			slow = i
		}
		if f.Lost > 0 {
			lossy = append(lossy, fmt.Sprintf("%s (%d)", f.Room, f.Lost))
		}
	}
	p("by room      ")
	if fast >= 0 {
		p("p99 from %.3f ms (%s) to %.3f ms (%s); ", rf[fast].LatencyP99, rf[fast].Room, rf[slow].LatencyP99, rf[slow].Room)
	}
	rooms := "rooms"
	if len(lossy) == 1 {
		rooms = "room"
	}
	switch {
	case len(lossy) == 0:
		p("no room lost anything\n")
	case len(lossy) > 10:
		p("losses in %d %s: %s, ... (-json lists them all)\n", len(lossy), rooms, strings.Join(lossy[:10], ", "))
	default:
		p("losses in %d %s: %s\n", len(lossy), rooms, strings.Join(lossy, ", "))
	}
}

// pidList is "pid N" or "pids N, M, ...".
func pidList(pids []int) string {
	if len(pids) == 1 {
		return "pid " + strconv.Itoa(pids[0])
	}
	s := make([]string, len(pids))
	for i, pid := range pids {
		s[i] = strconv.Itoa(pid)
	}
	return "pids " + strings.Join(s, ", ")
}

// opt formats *v, or "?" when it was not measured.
func opt[T any](v *T, format string) string {
	if v == nil {
		return "?"
	}
	return fmt.Sprintf(format, *v)
}

func dur(seconds float64) string {
	return time.Duration(seconds * float64(time.Second)).Round(time.Millisecond).String()
}

// startProgress prints a progress line to cfg.Progress once a second, until the returned function
// is called (it may be called more than once).
func (b *bench) startProgress() (stop func()) {
	w := b.cfg.Progress
	if w == nil {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var p progress
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			if line := b.progressLine(&p); line != "" {
				fmt.Fprintln(w, line)
			}
		}
	}()
	var once bool
	return func() {
		if !once {
			once = true
			close(quit)
			<-done
		}
	}
}

// progress is what the progress lines remember from one to the next.
type progress struct {
	hist      histogram
	delivered int64
}

// progressLine describes the run's phase now; during the run, the deliveries and the p99 since
// the previous line.
func (b *bench) progressLine(p *progress) string {
	left := max(time.Until(time.Unix(0, b.deadln.Load())).Round(time.Second), 0)
	switch phase := b.phase.Load(); phase {
	case phaseConnect:
		n := b.connected.Load()
		return fmt.Sprintf("connect  %d/%d in the room, %d failed, %d dropped (%.0f conn/s)",
			n, len(b.clients), b.failed.Load(), b.droppedN.Load(), float64(n)/time.Since(b.t0).Seconds())
	case phaseHold:
		return fmt.Sprintf("hold     %d sessions, %d dropped, %s left", len(b.live), b.droppedN.Load(), left)
	case phaseRun, phaseDrain:
		var cur histogram
		var delivered, sent int64
		for i := range b.shards {
			sh := &b.shards[i]
			sh.mu.Lock()
			for w := range sh.hist {
				cur.merge(&sh.hist[w])
			}
			delivered += sh.delivered
			sh.mu.Unlock()
		}
		for _, c := range b.senders {
			sent += c.sent.Load()
		}
		last := cur.since(&p.hist)
		what := "run  "
		if phase == phaseDrain {
			what = "drain"
		}
		line := fmt.Sprintf("%s    sent %d, delivered %d (%d/s), p99 %.3f ms, %d dropped, %s left",
			what, sent, delivered, delivered-p.delivered, ms(last.percentile(99)), b.droppedN.Load(), left)
		p.hist, p.delivered = cur, delivered
		return line
	}
	return ""
}
