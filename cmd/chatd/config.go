package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/charmbracelet/log"
)

// config is everything chatd can be told: built-in defaults, then CHAT_* environment variables,
// then flags, each overriding the one before.
type config struct {
	SSHAddr   string
	TCPAddr   string // empty: no TCP
	MaxConns  int
	DataDir   string
	HostKeys  []string
	History   int
	LogLevel  string
	LogFormat string

	logLevel log.Level // parsed LogLevel
}

func defaultConfig() config {
	return config{
		SSHAddr:   ":2222",
		TCPAddr:   ":2323",
		MaxConns:  10000,
		DataDir:   "./data",
		History:   20,
		LogLevel:  "info",
		LogFormat: "text",
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
		{"max-conns", "CHAT_MAX_CONNS", "N", "most TCP connections open at once, 0 for no limit", (*intValue)(&c.MaxConns)},
		{"data-dir", "CHAT_DATA_DIR", "DIR", "directory for host keys and the database, chat.db (created if missing)", (*stringValue)(&c.DataDir)},
		{"history", "CHAT_HISTORY", "N", "earlier messages shown to someone joining, 0 for none (at most 1000)", (*intValue)(&c.History)},
		{"hostkey", "CHAT_HOSTKEYS", "PATH", "serve this host key instead of <data-dir>/hostkeys; repeatable (env: comma-separated)", &listValue{list: &c.HostKeys}},
		{"log-level", "CHAT_LOG_LEVEL", "LEVEL", "debug, info, warn or error", (*stringValue)(&c.LogLevel)},
		{"log-format", "CHAT_LOG_FORMAT", "FORMAT", "text or json", (*stringValue)(&c.LogFormat)},
	}
}

// errHelp means --help was asked for and printed.
var errHelp = errors.New("help requested")

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
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, opts, defaults)
			return c, nil, errHelp
		}
		fmt.Fprintln(stderr, "run chatd --help for the options")
		return c, nil, err
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
	if c.MaxConns < 0 {
		return fmt.Errorf("--max-conns %d: want 0 (no limit) or more", c.MaxConns)
	}
	if c.DataDir == "" {
		return errors.New("--data-dir must not be empty")
	}
	if c.History < 0 || c.History > 1000 {
		return fmt.Errorf("--history %d: want 0 to 1000", c.History)
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
	fmt.Fprint(w, `chatd is a chat server people join with ssh (ssh -p 2222 NAME@HOST) or over plain TCP
(chat -addr HOST:2323, or nc HOST 2323).

Usage:
  chatd [flags]                     run the server (SSH on :2222, TCP on :2323)
  chatd [flags] hostkeys COMMAND    manage host keys (chatd hostkeys help)

Flags (each may also be set by its environment variable; a flag overrides the environment):
`)
	for _, o := range opts {
		fmt.Fprintf(w, "  --%s %s\n        %s", o.flag, o.arg, o.usage)
		if d := defaults[o.flag]; d != "" {
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
