// Command chatd is the chat server: people join with the SSH client they already have
// (ssh -p 2222 alice@host), over a plain TCP line protocol, or in a browser. This file only reads
// the configuration, wires the parts together and handles signals.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/charmbracelet/log"
	"github.com/coreos/go-systemd/v22/daemon"
	gossh "golang.org/x/crypto/ssh"

	"chatd/chat"
	"chatd/connlimit"
	"chatd/datadir"
	"chatd/hostkeys"
	"chatd/internal/buildinfo"
	"chatd/metrics"
	"chatd/room"
	"chatd/sshd"
	"chatd/store/sqlite"
	"chatd/tcp"
	"chatd/web"
)

func main() {
	// Collect garbage at 50 % heap growth rather than Go's 100 %: a chat server's heap is mostly
	// its many idle sessions, and the default's headroom would take 10 000 sessions past 1 GiB.
	// GOGC in the environment still decides when set.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	cfg, rest, err := parseConfig(args, lookupEnv, stdout, stderr)
	if errors.Is(err, errHelp) {
		return 0
	}
	if errors.Is(err, errVersion) {
		fmt.Fprintln(stdout, buildinfo.Line("chatd"))
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "chatd: %v\n", err)
		return 2
	}
	if len(rest) > 0 {
		switch rest[0] {
		case "hostkeys":
			return runHostkeys(rest[1:], cfg, stdout, stderr)
		case "migrate": // from a single node's chat.db into the cluster that --nats names
			return runAdmin(ctx, rest[0], rest[1:], cfg, stdout, stderr)
		case "backup", "restore", "names", "export", "check":
			if cfg.NATS != "" {
				return refuseAdminInCluster(rest[0], stderr)
			}
			return runAdmin(ctx, rest[0], rest[1:], cfg, stdout, stderr)
		default:
			fmt.Fprintf(stderr, "chatd: unknown command %q (chatd --help lists the options and commands)\n", rest[0])
			return 2
		}
	}
	logger := newLogger(cfg, stderr, underJournal(lookupEnv, stderr))
	if cfg.NATS != "" {
		// Every line a node logs says which node: the cluster's logs are read side by side.
		logger = logger.With("node", cfg.Node)
	}
	logger.Info("chatd starting", buildinfo.Read().KeyVals()...)
	if err := serve(ctx, cfg, logger); err != nil {
		logger.Error("chatd stopped", "err", err)
		return 1
	}
	return 0
}

// A graceful stop takes at most roomGrace for members to get the goodbye, then serversGrace
// for the connections left, then the store's last commit: the process is gone well within the
// 5 s the README promises.
const (
	roomGrace    = 2 * time.Second
	serversGrace = time.Second
)

// serve runs the servers until ctx is cancelled (a signal) or one of them fails.
func serve(ctx context.Context, cfg config, logger *log.Logger) error {
	// First: a second chatd on the same directory would not see the first one's bans, and a
	// directory chatd cannot write is better said in words than by SQLite's error codes.
	dirLock, err := datadir.Acquire(cfg.DataDir)
	if err != nil {
		return err
	}
	defer func() {
		if err := dirLock.Unlock(); err != nil {
			logger.Error("data directory", "err", err)
		}
	}()
	signers, err := loadHostKeys(cfg, logger.WithPrefix("hostkeys"))
	if err != nil {
		return err
	}
	access, err := loadAccess(cfg, logger)
	if err != nil {
		return err
	}
	mx := metrics.New()
	var (
		st      room.Store
		relay   room.Relay   // nil: this process is the only node
		cluster room.Cluster // nil: likewise
	)
	if cfg.NATS != "" {
		node, err := openClusterNode(ctx, cfg, mx, logger)
		if err != nil {
			return err
		}
		// Closed last, once the room has shut down: see clusterNode.close for the order.
		defer node.close()
		st, relay, cluster = node.store, node.relay, node.cluster
	} else {
		stCfg := sqlite.DefaultConfig()
		stCfg.Path = filepath.Join(cfg.DataDir, "chat.db")
		stCfg.KeepMessages, stCfg.KeepFor, _ = sqlite.ParseKeep(cfg.HistoryKeep) // checked by validate
		db, err := sqlite.Open(stCfg, logger.WithPrefix("store"))
		if err != nil {
			return err
		}
		// Closed last: everything said until the room shut down is written before the process exits.
		defer func() {
			if err := db.Close(); err != nil {
				logger.Error("store close", "err", err)
			}
		}()
		st = db
	}

	rm, err := room.New(room.Config{
		Metrics:           mx,
		Store:             st,
		Relay:             relay,
		Cluster:           cluster,
		HistoryOnJoin:     off(cfg.History),
		ParseKey:          sshd.ParseAuthorizedKey,
		MsgRate:           off(cfg.MsgRate),
		MsgBurst:          cfg.MsgBurst,
		IdleTimeout:       cfg.IdleTimeout,
		Motd:              access.motd,
		DefaultRoom:       cfg.DefaultRoom,
		MaxRooms:          off(cfg.MaxRooms),
		MaxRoomsPerPerson: off(cfg.MaxRoomsPerPerson),
		RoomsPerHour:      off(cfg.RoomsPerHour),
		PublicURL:         cfg.PublicURL,
	}, logger.WithPrefix("room"))
	if err != nil {
		return err
	}
	exempt, _ := connlimit.ParsePrefixes(cfg.LimitExempt) // checked by validate
	// One limiter for every server: the caps hold for the server as a whole.
	limiter := connlimit.New(connlimit.Config{MaxConns: cfg.MaxConns, MaxPerIP: cfg.MaxConnsPerIP, RatePerIP: cfg.ConnRatePerIP, Exempt: exempt})
	gate := &connlimit.Gate{
		Limiter: limiter,
		Banned:  func(ip netip.Addr) error { return rm.Banned(ip, "", "") },
		Refused: mx.Refused,
	}
	sshCfg := sshd.DefaultConfig()
	sshCfg.Addr = cfg.SSHAddr
	sshCfg.HostSigners = signers
	sshCfg.Gate = gate
	sshCfg.HandshakeTimeout = cfg.HandshakeTimeout
	sshCfg.Operators = access.ops
	sshCfg.Allow = access.allow
	sshCfg.AllowKeyless = cfg.AllowKeyless
	sshCfg.Metrics = mx
	sshSrv, err := sshd.New(sshCfg, rm, logger.WithPrefix("sshd"))
	if err != nil {
		return err
	}
	sshLn, err := listenChat("ssh", cfg.SSHAddr, cfg, mx.Refused, logger)
	if err != nil {
		return err
	}
	servers := []server{{"ssh", sshSrv, sshLn}}
	if cfg.TCPAddr != "" {
		tcpCfg := tcp.DefaultConfig()
		tcpCfg.Addr = cfg.TCPAddr
		tcpCfg.MaxConns = 0 // the shared limiter counts TCP and SSH together
		tcpCfg.Gate = gate
		tcpCfg.NameTimeout = cfg.NameTimeout
		tcpCfg.Metrics = mx
		if access.allow != nil && !cfg.AllowTCP {
			tcpCfg.Refuse = "this server only admits SSH users with an invited key"
		}
		tcpSrv, err := tcp.New(tcpCfg, rm, logger.WithPrefix("tcp"))
		if err != nil {
			sshLn.Close()
			return err
		}
		tcpLn, err := listenChat("tcp", cfg.TCPAddr, cfg, mx.Refused, logger)
		if err != nil {
			sshLn.Close()
			return err
		}
		servers = append(servers, server{"tcp", tcpSrv, tcpLn})
	}
	if cfg.HTTPAddr != "" {
		webSrv, err := web.New(cfg.webConfig(), rm, gate, logger.WithPrefix("web"), mx)
		if err == nil {
			var webLn net.Listener
			if webLn, err = listenChat("web", cfg.HTTPAddr, cfg, mx.Refused, logger); err == nil {
				servers = append(servers, server{"web", webSrv, webLn})
			}
		}
		if err != nil {
			for _, s := range servers {
				s.ln.Close()
			}
			return err
		}
	}

	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			for _, s := range servers {
				s.ln.Close()
			}
			return fmt.Errorf("listen metrics: %w", err)
		}
		handler := mx.Handler()
		if cfg.Pprof {
			mux := http.NewServeMux()
			mux.Handle("/", handler)
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
			handler = mux
		}
		servers = append(servers, server{"metrics", &httpServer{srv: &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}, log: logger.WithPrefix("metrics")}, mln})
	}

	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() {
			if err := s.srv.Serve(s.ln); err != nil {
				errc <- fmt.Errorf("serve %s: %w", s.name, err)
			}
		}()
	}
	// Every listener is bound (the kernel queues connections from Listen on), so clients can
	// connect: systemd may start what waits for chatd. Listeners added above are covered.
	notifyReady(servers, cfg.Node, logger)

	var serveErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "signal", context.Cause(ctx))
	case serveErr = <-errc:
	}
	notify(logger, daemon.SdNotifyStopping)

	// The room first: it tells everyone and ends their sessions, which lets the servers' own
	// graceful shutdown finish instead of waiting for chats that never end. What is left then
	// (handshakes, commands, sessions that never started) gets a moment, all servers at once,
	// and is closed.
	roomCtx, cancelRoom := context.WithTimeout(context.Background(), roomGrace)
	defer cancelRoom()
	if err := rm.Shutdown(roomCtx); err != nil {
		logger.Warn("room shutdown", "err", err)
	}
	serversCtx, cancelServers := context.WithTimeout(context.Background(), serversGrace)
	defer cancelServers()
	var stopped sync.WaitGroup
	for _, s := range servers {
		stopped.Go(func() {
			if err := s.srv.Shutdown(serversCtx); err != nil {
				logger.Warn("shutdown incomplete, closing", "server", s.name, "err", err)
				_ = s.srv.Close()
			}
		})
	}
	stopped.Wait()
	logger.Info("stopped")
	return serveErr
}

// off turns a flag's "0: none" into the room's "negative: off" (its zero means the default).
func off[T int | float64](n T) T {
	if n == 0 {
		return -1
	}
	return n
}

// server is what serve needs of the SSH and TCP servers.
type server struct {
	name string
	srv  interface {
		Serve(net.Listener) error
		Shutdown(context.Context) error
		Close() error
	}
	ln net.Listener
}

// httpServer gives the metrics' http.Server the shape of the chat servers.
type httpServer struct {
	srv *http.Server
	log *log.Logger
}

func (h *httpServer) Serve(ln net.Listener) error {
	h.log.Info("listening", "addr", ln.Addr().String())
	err := h.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
func (h *httpServer) Shutdown(ctx context.Context) error { return h.srv.Shutdown(ctx) }
func (h *httpServer) Close() error                       { return h.srv.Close() }

// access is who may do what: operators' and allowed keys, and the message of the day.
type access struct {
	ops   map[string]bool
	allow map[string]bool // nil: anyone
	motd  string
}

// loadAccess reads the --ops, --allow and --motd files.
func loadAccess(cfg config, logger *log.Logger) (access, error) {
	var a access
	var err error
	if cfg.Ops != "" {
		if a.ops, err = sshd.LoadAuthorizedKeys(cfg.Ops); err != nil {
			return a, fmt.Errorf("--ops: %w", err)
		}
		logger.Info("operators", "keys", len(a.ops), "file", cfg.Ops)
	}
	if cfg.Allow != "" {
		if a.allow, err = sshd.LoadAuthorizedKeys(cfg.Allow); err != nil {
			return a, fmt.Errorf("--allow: %w", err)
		}
		logger.Info("allowlist", "keys", len(a.allow), "file", cfg.Allow, "keyless", cfg.AllowKeyless, "tcp", cfg.AllowTCP)
	}
	if cfg.Motd != "" {
		b, err := os.ReadFile(cfg.Motd)
		if err != nil {
			return a, fmt.Errorf("--motd: %w", err)
		}
		// Each line is cleaned on its own: the file may have several.
		lines := strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n")
		for i, l := range lines {
			lines[i] = chat.Sanitize(l)
		}
		a.motd = strings.TrimSpace(strings.Join(lines, "\n"))
	}
	return a, nil
}

// loadHostKeys loads the configured host keys, or those in the data directory (generating one
// on first start), and logs each key's fingerprint for operators to publish.
func loadHostKeys(cfg config, logger *log.Logger) ([]gossh.Signer, error) {
	var keys []hostkeys.Key
	var err error
	if len(cfg.HostKeys) > 0 {
		keys, err = hostkeys.LoadFiles(cfg.HostKeys)
	} else {
		dir := filepath.Join(cfg.DataDir, "hostkeys")
		var generated bool
		keys, generated, err = hostkeys.LoadDir(dir)
		if generated {
			logger.Info("generated a new host key", "dir", dir)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("host keys: %w", err)
	}
	signers := make([]gossh.Signer, len(keys))
	for i, k := range keys {
		logger.Info("host key", "type", k.Type, "bits", k.Bits, "fingerprint", k.Fingerprint, "path", k.Path)
		signers[i] = k.Signer
	}
	return signers, nil
}

// newLogger writes cfg's format to w. In the journal, text lines go without a time of their own:
// the journal stamps every line already. JSON keeps its "time" for whatever reads it.
func newLogger(cfg config, w io.Writer, journal bool) *log.Logger {
	formatter := log.TextFormatter
	if cfg.LogFormat == "json" {
		formatter = log.JSONFormatter
	}
	return log.NewWithOptions(w, log.Options{
		Level:           cfg.logLevel,
		Formatter:       formatter,
		ReportTimestamp: formatter == log.JSONFormatter || !journal,
		TimeFormat:      time.RFC3339,
	})
}
