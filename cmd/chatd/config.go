package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/log"

	"chatd/chat"
	"chatd/connlimit"
	"chatd/store/sqlite"
)

// config is everything chatd can be told: built-in defaults, then CHAT_* environment variables,
// then flags, each overriding the one before.
type config struct {
	SSHAddr     string
	TCPAddr     string // empty: no TCP
	DataDir     string
	HostKeys    []string
	History     int
	HistoryKeep string // what the store keeps: sqlite.ParseKeep reads it
	LogLevel    string
	LogFormat   string
	MetricsAddr string
	Pprof       bool

	// The web page and its WebSocket.
	HTTPAddr       string // empty: no web
	PublicURL      string // where people reach the page: /weblogin links, the WebSocket's origin
	TLSCert        string // with TLSKey: serve HTTPS directly
	TLSKey         string
	TrustedProxies string // reverse proxies whose X-Forwarded-For is believed; empty: none

	// Rooms.
	DefaultRoom       string // where newcomers and /part land
	MaxRooms          int    // 0: no limit
	MaxRoomsPerPerson int    // rooms one person may be in at once; 0: no limit
	RoomsPerHour      int    // rooms one person or address may create an hour; 0: no limit

	// Abuse limits; 0 disables each.
	MsgRate          float64
	MsgBurst         int
	MaxConns         int
	MaxConnsPerIP    int
	ConnRatePerIP    int
	LimitExempt      string
	ProxyProtocol    string // addresses of load balancers that send a PROXY header; empty: none
	HandshakeTimeout time.Duration
	NameTimeout      time.Duration
	IdleTimeout      time.Duration

	// Operators and access.
	Ops          string // authorized_keys file of operators
	Motd         string // file with the message of the day
	Allow        string // authorized_keys file: only these keys may log in
	AllowKeyless bool
	AllowTCP     bool

	// Cluster mode (cluster.go): with NATS set, this process is one node of a cluster whose
	// rooms, people and history are in NATS JetStream.
	NATS         string // comma-separated nats:// or tls:// URLs; empty: a single node on SQLite
	NATSCreds    string // NATS credentials file
	NATSCA       string // PEM file of the CAs that sign the NATS servers' certificates
	NATSReplicas int    // copies of every stream and bucket: 1-5
	Node         string // this node's name; empty: the host name (resolved by validate)

	logLevel log.Level // parsed LogLevel
}

func defaultConfig() config {
	return config{
		SSHAddr:  ":2222",
		TCPAddr:  ":2323",
		HTTPAddr: ":8080",
		MaxConns: 10000,
		DataDir:  "./data",
		History:  20,
		// The history of a community server: a year, and at most 100 000 messages (≈ 100 MB at
		// the longest messages), so that no flood can fill the disk.
		HistoryKeep: sqlite.FormatKeep(sqlite.DefaultKeepMessages, sqlite.DefaultKeepFor),

		MsgRate:          2,
		MsgBurst:         10,
		MaxConnsPerIP:    16,
		ConnRatePerIP:    30,
		HandshakeTimeout: 10 * time.Second,
		NameTimeout:      60 * time.Second,
		LogLevel:         "info",
		LogFormat:        "text",

		DefaultRoom:       "#lobby",
		MaxRooms:          1000,
		MaxRoomsPerPerson: 50,
		RoomsPerHour:      10,

		// What a browser on the same machine opens; a public server sets its own.
		PublicURL: "http://localhost:8080",

		NATSReplicas: 1,
	}
}

// option is one setting: its flag, its environment variable and where it is stored.
type option struct {
	flag, env, arg, usage string
	value                 flag.Value
}

func (c *config) options() []option {
	return []option{
		{"ssh-addr", "CHAT_SSH_ADDR", "ADDR", "SSH listen address", (*stringValue)(&c.SSHAddr)},
		{"tcp-addr", "CHAT_TCP_ADDR", "ADDR", "TCP line-protocol listen address; empty disables TCP", (*stringValue)(&c.TCPAddr)},
		{"data-dir", "CHAT_DATA_DIR", "DIR", "directory for host keys and the database, chat.db (created if missing)", (*stringValue)(&c.DataDir)},
		{"history", "CHAT_HISTORY", "N", "earlier messages shown to someone joining, 0 for none (at most 1000)", (*intValue)(&c.History)},
		{"history-keep", "CHAT_HISTORY_KEEP", "N,AGE", "history kept: the newest N messages, none older than AGE (e.g. 100000,365d; 30d; all)", (*stringValue)(&c.HistoryKeep)},
		{"default-room", "CHAT_DEFAULT_ROOM", "#ROOM", "the room everyone is in on first joining, and the one /part falls back to", (*stringValue)(&c.DefaultRoom)},
		{"max-rooms", "CHAT_MAX_ROOMS", "N", "most rooms the server holds; 0 for no limit", (*intValue)(&c.MaxRooms)},
		{"max-rooms-per-person", "CHAT_MAX_ROOMS_PER_PERSON", "N", "most rooms one person may be in at once; 0 for no limit", (*intValue)(&c.MaxRoomsPerPerson)},
		{"rooms-per-hour", "CHAT_ROOMS_PER_HOUR", "N", "most rooms one person, or one address, may create an hour; 0 for no limit", (*intValue)(&c.RoomsPerHour)},
		{"hostkey", "CHAT_HOSTKEYS", "PATH", "serve this host key instead of <data-dir>/hostkeys; repeatable (env: comma-separated)", &listValue{list: &c.HostKeys}},
		{"msg-rate", "CHAT_MSG_RATE", "N", "lines a second one person may send (over it, lines wait); 0 for no limit", (*floatValue)(&c.MsgRate)},
		{"msg-burst", "CHAT_MSG_BURST", "N", "lines one person may send at once before the rate applies", (*intValue)(&c.MsgBurst)},
		{"max-conns", "CHAT_MAX_CONNS", "N", "most connections open at once, SSH, TCP and web together; 0 for no limit", (*intValue)(&c.MaxConns)},
		{"max-conns-per-ip", "CHAT_MAX_CONNS_PER_IP", "N", "most connections open at once from one address; 0 for no limit", (*intValue)(&c.MaxConnsPerIP)},
		{"conn-rate-per-ip", "CHAT_CONN_RATE_PER_IP", "N", "most new connections a minute from one address; 0 for no limit", (*intValue)(&c.ConnRatePerIP)},
		{"limit-exempt", "CHAT_LIMIT_EXEMPT", "CIDR,...", "addresses the per-address limits do not apply to, e.g. 10.0.0.0/8,192.0.2.7", (*stringValue)(&c.LimitExempt)},
		{"proxy-protocol", "CHAT_PROXY_PROTOCOL", "CIDR,...", "load balancers (HAProxy send-proxy, send-proxy-v2) whose PROXY header names the client on the SSH and TCP listeners; from these a header is required, from others refused", (*stringValue)(&c.ProxyProtocol)},
		{"handshake-timeout", "CHAT_HANDSHAKE_TIMEOUT", "DURATION", "time an SSH connection has to log in and start a session", (*durationValue)(&c.HandshakeTimeout)},
		{"name-timeout", "CHAT_NAME_TIMEOUT", "DURATION", "time a TCP connection has to give its name", (*durationValue)(&c.NameTimeout)},
		{"idle-timeout", "CHAT_IDLE_TIMEOUT", "DURATION", "disconnect sessions that send nothing for this long; 0 never does", (*durationValue)(&c.IdleTimeout)},
		{"ops", "CHAT_OPS", "FILE", "authorized_keys file: whoever logs in with one of these keys is an operator", (*stringValue)(&c.Ops)},
		{"motd", "CHAT_MOTD", "FILE", "message of the day, shown on joining (operators may change it with /motd)", (*stringValue)(&c.Motd)},
		{"allow", "CHAT_ALLOW", "FILE", "authorized_keys file: only these keys may log in over SSH; keyless and TCP logins are then refused", (*stringValue)(&c.Allow)},
		{"allow-keyless", "CHAT_ALLOW_KEYLESS", "", "with --allow: let people without a key in over SSH too", (*boolValue)(&c.AllowKeyless)},
		{"allow-tcp", "CHAT_ALLOW_TCP", "", "with --allow: keep the TCP protocol open to anyone", (*boolValue)(&c.AllowTCP)},
		{"http-addr", "CHAT_HTTP_ADDR", "ADDR", "web page and WebSocket listen address; empty disables the web", (*stringValue)(&c.HTTPAddr)},
		{"public-url", "CHAT_PUBLIC_URL", "URL", "where people reach the web page, e.g. https://chat.example.org: the links /weblogin prints, and the only origin whose pages may open the WebSocket", (*stringValue)(&c.PublicURL)},
		{"tls-cert", "CHAT_TLS_CERT", "FILE", "with --tls-key: serve HTTPS on --http-addr with this certificate (PEM, the chain after it; reloaded when the file changes)", (*stringValue)(&c.TLSCert)},
		{"tls-key", "CHAT_TLS_KEY", "FILE", "the private key of --tls-cert (PEM)", (*stringValue)(&c.TLSKey)},
		{"trusted-proxies", "CHAT_TRUSTED_PROXIES", "CIDR,...", "reverse proxies in front of the web (e.g. Caddy on 127.0.0.1) whose X-Forwarded-For or Forwarded header names the client", (*stringValue)(&c.TrustedProxies)},
		{"nats", "CHAT_NATS", "URL,...", "run as one node of a cluster on these NATS servers (nats://HOST:4222 or tls://HOST:4222, comma-separated, JetStream on): rooms, people and history are kept there, not in <data-dir>/chat.db", (*stringValue)(&c.NATS)},
		{"nats-creds", "CHAT_NATS_CREDS", "FILE", "with --nats: a NATS credentials file (JWT and NKey seed), for servers that ask for one", (*stringValue)(&c.NATSCreds)},
		{"nats-ca", "CHAT_NATS_CA", "FILE", "with --nats: PEM file of the CAs that sign the NATS servers' certificates (TLS is then required)", (*stringValue)(&c.NATSCA)},
		{"nats-replicas", "CHAT_NATS_REPLICAS", "N", "with --nats: NATS servers that keep a copy of every stream and bucket, 1 to 5 (3 on a 3-server NATS cluster)", (*intValue)(&c.NATSReplicas)},
		{"node", "CHAT_NODE", "NAME", "with --nats: this node's name in logs, metrics and /whois, 1-64 of A-Z a-z 0-9 _ - . (default: the host name, cleaned to fit)", (*stringValue)(&c.Node)},
		{"metrics-addr", "CHAT_METRICS_ADDR", "ADDR", "serve Prometheus metrics (/metrics) and /healthz here, e.g. 127.0.0.1:9222; empty: off", (*stringValue)(&c.MetricsAddr)},
		{"pprof", "CHAT_PPROF", "", "with --metrics-addr: also serve Go profiles at /debug/pprof/ (keep that address private)", (*boolValue)(&c.Pprof)},
		{"log-level", "CHAT_LOG_LEVEL", "LEVEL", "debug, info, warn or error", (*stringValue)(&c.LogLevel)},
		{"log-format", "CHAT_LOG_FORMAT", "FORMAT", "text or json", (*stringValue)(&c.LogFormat)},
	}
}

// errHelp means --help was asked for and printed.
var errHelp = errors.New("help requested")

// errVersion means --version was asked for: run prints it.
var errVersion = errors.New("version requested")

// parseConfig reads the environment and the flags. It returns the arguments after the flags
// (a subcommand, if any).
// --help goes to stdout: it is output the user asked for.
// An environment variable set to "" counts as set: CHAT_TCP_ADDR= disables TCP.
func parseConfig(args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) (config, []string, error) {
	c := defaultConfig()
	defaults := usageDefaults(c)
	opts := c.options()
	fs := flag.NewFlagSet("chatd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	for _, o := range opts {
		if v, ok := lookupEnv(o.env); ok {
			if err := o.value.Set(v); err != nil {
				return c, nil, fmt.Errorf("%s=%q: %w", o.env, v, err)
			}
		}
		if lv, ok := o.value.(*listValue); ok {
			lv.fromEnv = true // the first --hostkey flag replaces the environment's list
		}
		fs.Var(o.value, o.flag, o.usage)
	}
	// Not a setting (no environment variable): it only asks a question.
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, opts, defaults)
			return c, nil, errHelp
		}
		fmt.Fprintln(stderr, "run chatd --help for the options")
		return c, nil, err
	}
	if *version {
		return c, nil, errVersion
	}
	if err := c.validate(); err != nil {
		return c, nil, err
	}
	return c, fs.Args(), nil
}

func (c *config) validate() error {
	if _, _, err := net.SplitHostPort(c.SSHAddr); err != nil {
		return fmt.Errorf("--ssh-addr %q: %w", c.SSHAddr, err)
	}
	if c.TCPAddr != "" {
		if _, _, err := net.SplitHostPort(c.TCPAddr); err != nil {
			return fmt.Errorf("--tcp-addr %q: %w", c.TCPAddr, err)
		}
	}
	for _, n := range []struct {
		flag string
		v    int
	}{{"max-conns", c.MaxConns}, {"max-conns-per-ip", c.MaxConnsPerIP}, {"conn-rate-per-ip", c.ConnRatePerIP}, {"msg-burst", c.MsgBurst},
		{"max-rooms", c.MaxRooms}, {"max-rooms-per-person", c.MaxRoomsPerPerson}, {"rooms-per-hour", c.RoomsPerHour}} {
		if n.v < 0 {
			return fmt.Errorf("--%s %d: want 0 (no limit) or more", n.flag, n.v)
		}
	}
	if c.MsgRate < 0 {
		return fmt.Errorf("--msg-rate %g: want 0 (no limit) or more", c.MsgRate)
	}
	if c.MsgRate > 0 && c.MsgBurst < 1 {
		return fmt.Errorf("--msg-burst %d: want at least 1 with a --msg-rate", c.MsgBurst)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"handshake-timeout", c.HandshakeTimeout}, {"name-timeout", c.NameTimeout}, {"idle-timeout", c.IdleTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("--%s %s: want 0 or more", d.flag, d.v)
		}
	}
	if c.NameTimeout == 0 {
		return errors.New("--name-timeout must be more than 0")
	}
	if _, err := connlimit.ParsePrefixes(c.LimitExempt); err != nil {
		return fmt.Errorf("--limit-exempt: %w", err)
	}
	if _, err := connlimit.ParsePrefixes(c.ProxyProtocol); err != nil {
		return fmt.Errorf("--proxy-protocol: %w", err)
	}
	if err := c.validateWeb(); err != nil {
		return err
	}
	if c.Pprof && c.MetricsAddr == "" {
		return errors.New("--pprof needs --metrics-addr")
	}
	if (c.AllowKeyless || c.AllowTCP) && c.Allow == "" {
		return errors.New("--allow-keyless and --allow-tcp only make sense with --allow FILE")
	}
	if c.DataDir == "" {
		return errors.New("--data-dir must not be empty")
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr %q: %w", c.MetricsAddr, err)
		}
	}
	if c.History < 0 || c.History > 1000 {
		return fmt.Errorf("--history %d: want 0 to 1000", c.History)
	}
	if _, err := chat.ParseRoom(c.DefaultRoom); err != nil {
		return fmt.Errorf("--default-room: %w", err)
	}
	if _, _, err := sqlite.ParseKeep(c.HistoryKeep); err != nil {
		return fmt.Errorf("--history-keep: %w", err)
	}
	if err := c.validateCluster(os.Hostname); err != nil {
		return err
	}
	lvl, err := log.ParseLevel(c.LogLevel)
	if err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	c.logLevel = lvl
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
	}
	return nil
}

// usageDefaults renders each setting's built-in default for --help.
func usageDefaults(c config) map[string]string {
	d := map[string]string{}
	for _, o := range c.options() {
		d[o.flag] = o.value.String()
	}
	return d
}

func printUsage(w io.Writer, opts []option, defaults map[string]string) {
	fmt.Fprint(w, `chatd is a chat server people join with ssh (ssh -p 2222 NAME@HOST), over plain TCP
(chat -addr HOST:2323, or nc HOST 2323) or in a browser (http://HOST:8080).

Usage:
  chatd [flags]                     run the server (SSH on :2222, TCP on :2323, the web on :8080)
  chatd --nats URL,... [flags]      run it as one node of a cluster on NATS (README: Cluster);
                                    backup, restore, names, export and check then refuse
  chatd [flags] hostkeys COMMAND    manage host keys (chatd hostkeys help)
  chatd [flags] backup FILE         copy the database while the server runs; restore FILE puts it back
  chatd [flags] names list|show|release [NAME]
                                    see the registered names; free one whose owner lost every key
  chatd [flags] export [--room ROOM] [--since TIME]
                                    the history as JSON lines
  chatd [flags] check               check the database and the host keys
  chatd [flags] migrate --from DIR --to nats://HOST:4222[,...]
                                    copy a single node's database into a cluster
                                    (each command: chatd COMMAND -h)
  chatd --version                   print the version, commit and build date

Flags (each may also be set by its environment variable; a flag overrides the environment):
`)
	for _, o := range opts {
		fmt.Fprintf(w, "  --%s %s\n        %s", o.flag, o.arg, o.usage)
		if d := defaults[o.flag]; d != "" && d != "false" && d != "0s" {
			fmt.Fprintf(w, " (default %s)", strconv.Quote(d))
		}
		fmt.Fprintf(w, "\n        env %s\n", o.env)
	}
	fmt.Fprint(w, `
Signals: SIGINT or SIGTERM tells everyone the server is going down and exits within 5 seconds.
`)
}

type stringValue string

func (s *stringValue) String() string     { return string(*s) }
func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }

type floatValue float64

func (f *floatValue) String() string { return strconv.FormatFloat(float64(*f), 'f', -1, 64) }

func (f *floatValue) Set(v string) error {
	x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		return fmt.Errorf("not a number: %q", v)
	}
	*f = floatValue(x)
	return nil
}

type durationValue time.Duration

func (d *durationValue) String() string { return time.Duration(*d).String() }

func (d *durationValue) Set(v string) error {
	x, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("not a duration like 10s, 5m or 1h: %q", v)
	}
	*d = durationValue(x)
	return nil
}

type boolValue bool

func (b *boolValue) String() string   { return strconv.FormatBool(bool(*b)) }
func (b *boolValue) IsBoolFlag() bool { return true }

func (b *boolValue) Set(v string) error {
	x, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("not true or false: %q", v)
	}
	*b = boolValue(x)
	return nil
}

type intValue int

func (n *intValue) String() string { return strconv.Itoa(int(*n)) }

func (n *intValue) Set(v string) error {
	i, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("not a whole number: %q", v)
	}
	*n = intValue(i)
	return nil
}

// listValue is a repeatable flag whose environment variable holds a comma-separated list.
type listValue struct {
	list    *[]string
	fromEnv bool // the list came from the environment: a flag replaces it rather than adding
}

func (l *listValue) String() string {
	if l.list == nil {
		return ""
	}
	return strings.Join(*l.list, ",")
}

func (l *listValue) Set(v string) error {
	if l.fromEnv {
		*l.list, l.fromEnv = nil, false
	}
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l.list = append(*l.list, p)
		}
	}
	return nil
}
