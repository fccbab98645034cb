// Command chatbench is a load generator for chatd: point it at a running server, and it connects
// many SSH clients (each with its own ed25519 key, a PTY and a shell, like a person at a terminal),
// TCP clients and/or WebSocket clients (the web transport's, as guests) into the room, makes some
// of them send at a steady rate, and reports how fast everyone got in, what every message's
// delivery took, and whether anything was lost.
//
//	chatbench [flags]
//
// Flags:
//
//	-ssh ADDR             SSH address (default 127.0.0.1:2222); empty for no SSH clients
//	-tcp ADDR             TCP address (default 127.0.0.1:2323); empty for no TCP clients
//	-ws ADDR              the web listener's address (default 127.0.0.1:8080): WebSocket clients
//	                      connect to ws://ADDR/ws?name=NAME
//	                      Each of -ssh, -tcp and -ws may name several nodes of a cluster,
//	                      ADDR,ADDR,...: the k-th address of each is node k's (see below)
//	-clients N            SSH clients (default 100)
//	-tcp-clients M        TCP clients (default 0)
//	-ws-clients W         WebSocket clients (default 0)
//	-senders S            how many of the clients send (default 2; at most all of them),
//	                      SSH, TCP and WebSocket clients in turn while there are several kinds
//	-rate R               messages per second per sender (default 0.5)
//	-duration D           measurement time once everyone is in the room (default 10s)
//	-drain D              after the last send, how long to wait for deliveries still in flight
//	                      before counting what is missing as lost (default 5s)
//	-settle D             once everyone is in, wait D before the after-connect sample and the
//	                      first send (default 0): a join storm's gathered notices go out up to a
//	                      second after the last join, and the first message waits behind them
//	-connect-workers K    parallel dialers (default 8)
//	-connect-timeout D    per client, from its dial to its join notice (default 30s)
//	-size B               message length in bytes, padded (default 64; at most 1000)
//	-rooms N              spread the clients over N rooms of their own, client i in room i mod N
//	                      (default 0: everyone stays in the default room)
//	-pty                  SSH sessions request a PTY (default true; -pty=false for plain sessions)
//	-pid PID              the server's process id: report its CPU time and RSS, from /proc;
//	                      PID,PID,... for several processes (a cluster's nodes): the server
//	                      figures are their sums, and each one's are reported too
//	-name-prefix P        client names are P-s0, P-s1, ... (SSH), P-t0, ... (TCP) and P-w0, ...
//	                      (WebSocket); default
//	                      "bench" and 4 random characters, new every run (chatd pins a name to
//	                      the first key that uses it, so names cannot be reused with new keys)
//	-hold                 connect, then hold the sessions for -duration without sending
//	-json                 print the report as one JSON object on stdout
//	-q                    no progress lines on stderr
//
// How it works. The clients connect through -connect-workers dialers; a client is in the room
// when its welcome line ("* welcome to chatd, NAME! ...") arrives. The connect rate is the clients in the
// room divided by the time from the first dial to the last join. The senders then send on fixed
// schedules (no drift, no jitter), staggered evenly over one period; a schedule slot missed by
// more than a period, because a write blocked, is skipped and counted. Every message carries a
// token, "~RUN.S.Q.T~" (the run's id, the sender's index, the message's sequence number and the
// time it was sent, in Unix nanoseconds), padded with '.' to -size bytes; SSH PTY sessions end
// it with CR, as a terminal does, the others with LF. A WebSocket client sends each line as
// {"type":"say","text":LINE} and reads the server's JSON events (one or more JSON lines a
// message) through an adapter that renders them as the plain lines a TCP client gets
// ("NAME: TEXT", "* TEXT", "error: TEXT"; with -rooms, other rooms' lines tagged "#ROOM NAME:
// TEXT"); it connects as a guest with no Origin header, as a bot does. Every client has one
// reader that finds the
// tokens in the raw byte stream, so latency is the time of the read minus the time in the token
// (one machine, one clock). Latencies go into a log-linear histogram (1.6% buckets above 128 µs,
// exact below), not a list of samples.
//
// With -rooms N, each client, once in, sends "/join #RUN-rK" for its room K = i mod N (named
// with the run's id, so that runs never mix) and is in when a join notice of that room arrives
// ("* NAME joined #RUN-rK (10 online)", or gathered with others'); the connect phase ends when
// every client is in its room. Senders then send to their room. A client stays in the default
// room too, whose lines reach it tagged ("#lobby NAME: ...") and are not counted; a token whose
// line is tagged with another of the run's rooms, or whose sender is in another room, should
// never arrive: it is counted as foreign. The figures are computed room by room and summed.
//
// Every message should reach every other client in its room; PTY SSH senders and WebSocket
// senders also get their own messages back, counted as echoes and not as deliveries. Once the senders stop, chatbench waits
// up to -drain for everything to arrive, then counts, per sender and receiver, what never came
// (lost), what came twice (duplicates) and what came after a later message (out of order). A
// client the server disconnects during the run is reported as dropped, with how its connection
// ended, the last line the server sent it and, when another client saw one, the room's notice
// about it (e.g. "NAME left (too slow)"); from then on nothing more is expected of it (what it
// did not get from each sender after the last message it got is put down to the drop, not
// counted as lost). With -pid, the server's CPU time (utime+stime in /proc/PID/stat) and
// resident memory (VmRSS in /proc/PID/status) are sampled before and after the connect phase
// (after -settle, when given) and at the end of the run; RSS per session is (after connect -
// before) / clients connected.
//
// Several nodes. Given ADDR,ADDR,... (-ssh, -tcp, -ws: every transport with clients names the
// same nodes, in the same order), chatbench deals the clients to the nodes in turn (client i to
// node i mod N; with -rooms, each room's members in turn, so every room spans the nodes) and takes
// the senders from the nodes in turn (2 senders on 2 nodes: one on each). Latency is still from
// the send to each receipt; the report gives it over every delivery and split by where the
// delivery was received: on the sender's node (same_node) or on another (cross_node, the
// cluster's relay in its path), each with its expected, received and lost deliveries.
//
// The load generator costs CPU too; on a machine it shares with the server, its own use is in
// the report (bench_cpu_*). Each SSH client holds a few goroutines and buffers in chatbench;
// each receiver keeps 8 bytes per sender. It raises its open-file limit to the hard limit.
//
// chatd's abuse limits are meant for strangers, not for a load generator: start the server for a
// load test with --limit-exempt 127.0.0.1 (the address chatbench connects from; otherwise only
// 16 connections, and 30 a minute, get in), --msg-rate 0 (or senders faster than 2 lines a
// second are slowed down: rate_limit_lines counts the server's "slow down" lines), for
// thousands of clients, --max-conns 0 and a longer --handshake-timeout, and for -rooms,
// --rooms-per-hour 0 (one address may create only 10 rooms an hour) and, past 1000 rooms,
// --max-rooms 0.
//
// Security: chatbench does not verify the server's host key (ssh.InsecureIgnoreHostKey): it is a
// benchmark, meant to be pointed by an operator at their own server. Every run registers its
// client names (and keys) in the server's database, and its messages go into the history.
//
// The report goes to stdout, progress lines (once a second) to stderr. Ctrl-C stops the run:
// sending stops, deliveries in flight get up to a second, the sessions are closed and the
// report covers what was measured; a second Ctrl-C exits at once. Exit status: 0 after a run
// (losses included: read the report), 1 when no client connected or the run failed, 2 for bad
// flags.
//
// With -json the report is one object with these keys; durations are in seconds (_s), memory
// in KiB (_kib), latencies in milliseconds (_ms); the server_* figures are null without -pid:
//
//	run_id, name_prefix           the run's token id and the clients' name prefix
//	ssh_addr, tcp_addr, ws_addr, clients_ssh, clients_tcp, clients_ws, pty, senders, rate, size,
//	rooms, duration_s, settle_s, hold
//	                              the settings (senders: how many actually sent; rooms: -rooms)
//	interrupted                   true when Ctrl-C cut the run short
//	clients_connected             clients that got into the room
//	clients_failed                clients that did not
//	connect_errors                [{error, count}]: why they did not, most frequent first (10 at most)
//	connect_seconds, connect_rate first dial to last join; clients connected per second
//	server_pid                    -pid (0 without; its first with several)
//	server_pids                   every -pid ([] without)
//	server_cpu_connect_s          server CPU time during the connect phase (and -settle)
//	server_cpu_run_s              server CPU time from the end of the connect phase to the end of
//	                              the drain (or of the hold)
//	server_rss_before_kib, server_rss_after_connect_kib, server_rss_end_kib
//	                              server RSS before and after connecting (after -settle), and at
//	                              the end
//	server_rss_per_session_kib    (after connect - before) / clients connected
//	                              (with several -pid, every server_* figure is their sum)
//	server_error                  why the server could not be sampled, "" when it could
//	servers                       one object per -pid: pid, cpu_connect_s, cpu_run_s,
//	                              rss_before_kib, rss_after_connect_kib, rss_end_kib
//	bench_cpu_connect_s, bench_cpu_run_s   chatbench's own CPU time in the same two phases
//	messages_sent                 messages written by all senders
//	sends_skipped                 schedule slots skipped because a sender's write blocked
//	rate_limit_lines              "slow down" lines the server's rate limiter (--msg-rate) sent to
//	                              senders: their lines were delayed or refused
//	deliveries_expected, deliveries_received, deliveries_lost
//	                              messages to other clients: expected = received + lost
//	deliveries_foreign            messages that reached a client in another room (should be 0)
//	duplicates, out_of_order      deliveries seen twice; deliveries that came after a later one
//	echoes, echoes_expected       PTY and WebSocket senders' own messages that came back; messages
//	                              they sent
//	window_seconds                the measurement window: first send slot to the end of -duration
//	deliveries_in_window, deliveries_per_sec   deliveries received within the window, and per second
//	latency_p50_ms, latency_p90_ms, latency_p99_ms, latency_max_ms   over every delivery
//	clients_dropped               clients the server disconnected during the run
//	drops                         [{name, transport, at_s, error, last_line, notice}], at most 100:
//	                              transport is ssh, tcp or ws; at_s is seconds since the first dial
//	room_figures                  with -rooms, one object per room: room (its name), clients
//	                              (connected), senders, messages_sent, deliveries_expected,
//	                              deliveries_received, deliveries_lost, deliveries_foreign,
//	                              latency_p50_ms, latency_p99_ms, latency_max_ms; [] without
//	nodes, node_clients           how many nodes the clients were spread over (1 for one server);
//	                              clients connected to each
//	same_node, cross_node         the deliveries received on the sender's node and on another:
//	                              deliveries_expected, deliveries_received, deliveries_lost,
//	                              latency_p50_ms, latency_p90_ms, latency_p99_ms, latency_max_ms
//	                              (with one node, cross_node is all zeros)
//
// Scenarios (see README, "Load testing"):
//
//	chatbench -clients 1000 -senders 0 -duration 1s -pid PID      # connect rate and CPU
//	chatbench -clients 1000 -hold -duration 20s -pid PID          # RSS per idle session
//	chatbench -clients 1000 -senders 2 -rate 0.5 -duration 60s    # latency
//	chatbench -clients 500 -senders 500 -rate 0.5 -duration 30s   # saturation
//	chatbench -clients 1000 -rooms 100 -senders 1000 -rate 0.5 -duration 30s   # 100 rooms of 10
//	chatbench -ssh '' -ws 127.0.0.1:8080 -ws-clients 1000 -hold -duration 20s -pid PID   # web sessions
//	chatbench -ssh 127.0.0.1:2222,127.0.0.1:3222 -clients 1000 -senders 2 -rate 0.5 -pid P1,P2   # two nodes
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "chatbench: stopping (Ctrl-C again to quit at once)")
		cancel()
		<-sigs
		os.Exit(130)
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, asJSON, quiet, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "chatbench: %v\n", err)
		return 2
	}
	if !quiet {
		cfg.Progress = stderr
	}
	if lim, err := raiseNoFile(); err != nil {
		fmt.Fprintf(stderr, "chatbench: cannot raise the open-file limit: %v\n", err)
	} else if n := cfg.SSHClients + cfg.TCPClients + cfg.WSClients; uint64(n+64) > lim {
		fmt.Fprintf(stderr, "chatbench: warning: the open-file limit is %d, and %d clients need about %d (ulimit -Hn)\n", lim, n, n+64)
	}
	rep, err := Run(ctx, cfg)
	if rep == nil {
		fmt.Fprintf(stderr, "chatbench: %v\n", err)
		return 1
	}
	write := rep.WriteText
	if asJSON {
		write = rep.WriteJSON
	}
	if werr := write(stdout); werr != nil {
		fmt.Fprintf(stderr, "chatbench: %v\n", werr)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "chatbench: %v\n", err)
		return 1
	}
	return 0
}

// pidsFlag is -pid: process ids separated by commas (0 alone: none, as before there were nodes).
type pidsFlag []int

func (f *pidsFlag) String() string {
	if f == nil {
		return ""
	}
	s := make([]string, len(*f))
	for i, pid := range *f {
		s[i] = strconv.Itoa(pid)
	}
	return strings.Join(s, ",")
}

func (f *pidsFlag) Set(v string) error {
	var pids []int
	for p := range strings.SplitSeq(v, ",") {
		pid, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("not a process id: %q", p)
		}
		pids = append(pids, pid)
	}
	if len(pids) == 1 && pids[0] == 0 {
		pids = nil
	}
	*f = pids
	return nil
}

// parseFlags reads the command line. Its error is flag.ErrHelp after -h.
func parseFlags(args []string, stderr io.Writer) (cfg Config, asJSON, quiet bool, err error) {
	cfg = DefaultConfig()
	fs := flag.NewFlagSet("chatbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.SSHAddr, "ssh", cfg.SSHAddr, "chatd's SSH `address`, or several nodes' ADDR,ADDR,...; empty for no SSH clients")
	fs.StringVar(&cfg.TCPAddr, "tcp", cfg.TCPAddr, "chatd's TCP `address`, or several nodes' ADDR,ADDR,...; empty for no TCP clients")
	fs.StringVar(&cfg.WSAddr, "ws", cfg.WSAddr, "chatd's web `address` (--http-addr), or several nodes' ADDR,ADDR,...: WebSocket clients open ws://ADDR/ws")
	fs.IntVar(&cfg.SSHClients, "clients", cfg.SSHClients, "`N` SSH clients, each with its own ed25519 key")
	fs.IntVar(&cfg.TCPClients, "tcp-clients", cfg.TCPClients, "`M` TCP clients")
	fs.IntVar(&cfg.WSClients, "ws-clients", cfg.WSClients, "`W` WebSocket clients, guests with no Origin (as bots)")
	fs.IntVar(&cfg.Senders, "senders", cfg.Senders, "how many of the clients send (`S`), SSH, TCP and WebSocket in turn")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "messages per second per sender (`R`)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measurement time once everyone is connected")
	fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "after the last send, how long to wait for deliveries in flight")
	fs.DurationVar(&cfg.Settle, "settle", cfg.Settle, "once everyone is in, wait this long before the after-connect sample and the first send")
	fs.IntVar(&cfg.ConnectWorkers, "connect-workers", cfg.ConnectWorkers, "parallel dialers (`K`)")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", cfg.ConnectTimeout, "per client, from its dial to its join notice")
	fs.IntVar(&cfg.Size, "size", cfg.Size, "message length in `bytes`, padded (at most 1000)")
	fs.IntVar(&cfg.Rooms, "rooms", cfg.Rooms, "spread the clients over `N` rooms, client i joining #RUN-r(i mod N); 0: all in the default room")
	fs.BoolVar(&cfg.PTY, "pty", cfg.PTY, "SSH sessions request a PTY, like a terminal (-pty=false: plain sessions)")
	fs.Var((*pidsFlag)(&cfg.PIDs), "pid", "the server's `PID`, or the nodes' PID,PID,...: report their CPU time and RSS, from /proc")
	fs.StringVar(&cfg.NamePrefix, "name-prefix", "", "client names are `P`-s0... (SSH), P-t0... (TCP) and P-w0... (WebSocket) (default \"bench\" + 4 random characters)")
	fs.BoolVar(&cfg.Hold, "hold", false, "connect, then hold the sessions for -duration without sending")
	fs.BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	fs.BoolVar(&quiet, "q", false, "no progress lines")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: chatbench [flags]

chatbench connects SSH clients (own ed25519 key each, PTY and shell), TCP clients and/or
WebSocket clients (-ws-clients, guests of the web listener at -ws) to a running chatd, makes
-senders of them send -rate messages a second for -duration, and reports the connect rate,
delivery latency (p50/p90/p99/max), losses, duplicates, dropped clients and, with -pid, the
server's CPU time and memory. The report goes to stdout (-json: one object), progress to stderr.
Exit status: 0 after a run, 1 if nothing connected or the run failed, 2 for bad flags. Ctrl-C
stops the run and still reports.

-ssh, -tcp and -ws each take ADDR,ADDR,... for the nodes of a cluster (node k: the k-th of each
list). The clients are dealt to the nodes in turn, the senders taken from the nodes in turn, and
latency and losses are reported overall and split into same-node and cross-node receipts. -pid
takes the nodes' PID,PID,...: the server figures are their sums, each one's listed too.

With -rooms N the clients are spread over N rooms of the run's own, client i joining #RUN-rK
for K = i mod N once it is in; senders send to their room, the figures are counted room by room
and summed, and a message that reaches a client in another room is counted as foreign.

The server's SSH host key is NOT verified: point chatbench only at a server you run. Each run
registers its client names and keys in the server's database and fills its history. Start chatd
with --limit-exempt 127.0.0.1 --msg-rate 0 (and --max-conns 0 for thousands of clients,
--rooms-per-hour 0 for -rooms over 10), or its abuse limits refuse the clients and slow the
senders down.

Flags:
`)
		fs.PrintDefaults()
	}
	if err = fs.Parse(args); err != nil {
		return cfg, false, false, err
	}
	if fs.NArg() > 0 {
		return cfg, false, false, fmt.Errorf("unexpected argument %q (chatbench -h lists the flags)", fs.Arg(0))
	}
	return cfg, asJSON, quiet, cfg.Validate()
}
