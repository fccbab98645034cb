package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"chatd/hostkeys"
)

const hostkeysUsage = `usage: chatd hostkeys <command> [arguments]

Manage the SSH host keys kept in <data-dir>/hostkeys (see --data-dir).

Commands:
  generate [--type ed25519|ecdsa|rsa] [--bits N] [--force]
        create a new host key (default ed25519)
  list [--json]
        show the type, size, fingerprint and file of each host key
  known-hosts [HOST[:PORT]]
        print ~/.ssh/known_hosts lines for the host keys
        (default host localhost, default port from --ssh-addr)
  sshfp HOST
        print DNS SSHFP records (SHA-256) for HOST

Run "chatd hostkeys <command> -h" for details on a command.
`

// runHostkeys runs "chatd hostkeys ...". args are the arguments after
// "hostkeys" (a leading "hostkeys" is tolerated and skipped); cfg holds the
// server's resolved configuration, whose --data-dir, --ssh-addr and --hostkey
// may also be given after the subcommand. Keys live in <data-dir>/hostkeys,
// or are the --hostkey files when any are given. It returns the process exit
// code: 0 on success, 1 when the command failed, 2 for usage errors.
func runHostkeys(args []string, cfg config, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "hostkeys" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, hostkeysUsage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stderr, hostkeysUsage)
		return 0
	case "generate", "list", "known-hosts", "sshfp":
	default:
		fmt.Fprintf(stderr, "chatd hostkeys: unknown command %q\n\n%s", cmd, hostkeysUsage)
		return 2
	}
	switch cmd {
	case "generate":
		return hostkeysGenerate(rest, &cfg, stdout, stderr)
	case "list":
		return hostkeysList(rest, &cfg, stdout, stderr)
	case "known-hosts":
		return hostkeysKnownHosts(rest, &cfg, stdout, stderr)
	default: // "sshfp"
		return hostkeysSSHFP(rest, &cfg, stdout, stderr)
	}
}

// newHostkeysFlagSet returns a FlagSet for "chatd hostkeys <name>" that
// reports to stderr and prints synopsis and description as its usage. It
// also takes the server flags that say where the keys are, into cfg.
func newHostkeysFlagSet(name, synopsis, description string, cfg *config, stderr io.Writer) *flag.FlagSet {
	fset := flag.NewFlagSet("chatd hostkeys "+name, flag.ContinueOnError)
	fset.SetOutput(stderr)
	for _, o := range cfg.options() {
		switch o.flag {
		case "data-dir", "ssh-addr", "hostkey":
			fset.Var(o.value, o.flag, o.usage+" (`"+o.arg+"`)")
		}
	}
	fset.Usage = func() {
		fmt.Fprintf(stderr, "usage: chatd hostkeys %s %s\n\n%s", name, synopsis, description)
		hasFlags := false
		fset.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(stderr, "\nFlags:\n")
			fset.PrintDefaults()
		}
	}
	return fset
}

// parseHostkeysFlags parses args with fset and checks the number of
// positional arguments. When it returns ok == false, the caller must exit
// with code (0 for -h, 2 for usage errors).
func parseHostkeysFlags(fset *flag.FlagSet, args []string, minArgs, maxArgs int) (code int, ok bool) {
	// Flags may come after the arguments too (known-hosts example.org --data-dir /srv/chat):
	// parse, set the first argument aside, parse the rest, and so on.
	var positional []string
	for {
		if err := fset.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0, false
			}
			return 2, false // the FlagSet already printed the error and usage
		}
		if fset.NArg() == 0 {
			break
		}
		positional = append(positional, fset.Arg(0))
		args = fset.Args()[1:]
	}
	_ = fset.Parse(append([]string{"--"}, positional...)) // so that fset.Args() are the arguments
	if n := fset.NArg(); n < minArgs || n > maxArgs {
		if n < minArgs {
			fmt.Fprintf(fset.Output(), "%s: missing argument\n", fset.Name())
		} else {
			fmt.Fprintf(fset.Output(), "%s: unexpected argument %q\n", fset.Name(), fset.Arg(maxArgs))
		}
		fset.Usage()
		return 2, false
	}
	return 0, true
}

// hostkeysDir is where the server keeps its generated keys.
func hostkeysDir(cfg *config) string { return filepath.Join(cfg.DataDir, "hostkeys") }

func hostkeysGenerate(args []string, cfg *config, stdout, stderr io.Writer) int {
	fset := newHostkeysFlagSet("generate", "[--type ed25519|ecdsa|rsa] [--bits N] [--force]",
		"Generate a new host key in <data-dir>/hostkeys as ssh_host_<type>_key (plus .pub).\n"+
			"chatd loads every key there at startup; restart it to use a new key.\n", cfg, stderr)
	typ := fset.String("type", "ed25519", "key type (`TYPE`): ed25519, ecdsa or rsa")
	bits := fset.Int("bits", 0, "key size in bits (`N`): ecdsa 256 (default), 384 or 521;\nrsa 2048 to 16384 (default 3072); ed25519 is always 256")
	force := fset.Bool("force", false, "replace an existing key of the same type\n(clients that trusted the old key will warn that the host key changed)")
	if code, ok := parseHostkeysFlags(fset, args, 0, 0); !ok {
		return code
	}
	if cfg.DataDir == "" {
		fmt.Fprintln(stderr, "chatd hostkeys generate: no data directory: set --data-dir")
		return 2
	}
	k, err := hostkeys.Generate(hostkeysDir(cfg), *typ, *bits, *force)
	if err != nil {
		fmt.Fprintf(stderr, "chatd hostkeys generate: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "generated %s host key (%d bits)\npath:        %s\nfingerprint: %s\n",
		k.Type, k.Bits, k.Path, k.Fingerprint)
	return 0
}

func hostkeysList(args []string, cfg *config, stdout, stderr io.Writer) int {
	fset := newHostkeysFlagSet("list", "[--json]",
		"List the host keys the server serves: type, size in bits, SHA-256 fingerprint\n"+
			"(as ssh-keygen -l prints it) and private key file.\n", cfg, stderr)
	asJSON := fset.Bool("json", false, "print a JSON array of {type, bits, fingerprint, path}")
	if code, ok := parseHostkeysFlags(fset, args, 0, 0); !ok {
		return code
	}
	keys, code := loadHostkeysForCmd("list", cfg, stderr)
	if code != 0 {
		return code
	}
	if *asJSON {
		type jsonKey struct {
			Type        string `json:"type"`
			Bits        int    `json:"bits"`
			Fingerprint string `json:"fingerprint"`
			Path        string `json:"path"`
		}
		out := make([]jsonKey, 0, len(keys))
		for _, k := range keys {
			out = append(out, jsonKey{Type: k.Type, Bits: k.Bits, Fingerprint: k.Fingerprint, Path: k.Path})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "chatd hostkeys list: %v\n", err)
			return 1
		}
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tBITS\tFINGERPRINT\tPATH")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", k.Type, k.Bits, k.Fingerprint, k.Path)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "chatd hostkeys list: %v\n", err)
		return 1
	}
	return 0
}

func hostkeysKnownHosts(args []string, cfg *config, stdout, stderr io.Writer) int {
	fset := newHostkeysFlagSet("known-hosts", "[HOST[:PORT]]",
		"Print one known_hosts line per host key, e.g. to append to ~/.ssh/known_hosts.\n"+
			"HOST defaults to localhost and PORT to the port of --ssh-addr.\n"+
			"Write IPv6 addresses in brackets when giving a port: [::1]:2222.\n", cfg, stderr)
	if code, ok := parseHostkeysFlags(fset, args, 0, 1); !ok {
		return code
	}
	host, portStr := "localhost", ""
	if fset.NArg() == 1 {
		var err error
		if host, portStr, err = hostkeysSplitHostPort(fset.Arg(0)); err != nil {
			fmt.Fprintf(stderr, "chatd hostkeys known-hosts: %v\n", err)
			return 2
		}
	}
	var port int
	var err error
	if portStr != "" {
		port, err = strconv.Atoi(portStr)
		if err != nil || port < 1 || port > 65535 {
			fmt.Fprintf(stderr, "chatd hostkeys known-hosts: invalid port %q\n", portStr)
			return 2
		}
	} else if port, err = hostkeysPortFromAddr(cfg.SSHAddr); err != nil {
		fmt.Fprintf(stderr, "chatd hostkeys known-hosts: %v\n", err)
		return 1
	}
	keys, code := loadHostkeysForCmd("known-hosts", cfg, stderr)
	if code != 0 {
		return code
	}
	for _, k := range keys {
		fmt.Fprintln(stdout, hostkeys.KnownHostsLine(host, port, k))
	}
	return 0
}

func hostkeysSSHFP(args []string, cfg *config, stdout, stderr io.Writer) int {
	fset := newHostkeysFlagSet("sshfp", "HOST",
		"Print a DNS SSHFP record with the SHA-256 fingerprint of each host key,\n"+
			"in the format of ssh-keygen -r HOST. Clients check them with\n"+
			"VerifyHostKeyDNS=yes; without a prompt only if the zone is DNSSEC-signed.\n", cfg, stderr)
	if code, ok := parseHostkeysFlags(fset, args, 1, 1); !ok {
		return code
	}
	host := fset.Arg(0)
	if host == "" || strings.ContainsAny(host, ":[] \t") {
		fmt.Fprintf(stderr, "chatd hostkeys sshfp: %q is not a DNS name (give HOST without a port)\n", host)
		return 2
	}
	keys, code := loadHostkeysForCmd("sshfp", cfg, stderr)
	if code != 0 {
		return code
	}
	for _, k := range keys {
		fmt.Fprintln(stdout, hostkeys.SSHFP(host, k))
	}
	return 0
}

// loadHostkeysForCmd loads the keys the server would serve (the --hostkey
// files, or those in <data-dir>/hostkeys) without ever generating one.
// When code is not 0 it has reported the problem on stderr and the caller
// should exit with code.
func loadHostkeysForCmd(cmd string, cfg *config, stderr io.Writer) (keys []hostkeys.Key, code int) {
	if len(cfg.HostKeys) > 0 {
		keys, err := hostkeys.LoadFiles(cfg.HostKeys)
		if err != nil {
			fmt.Fprintf(stderr, "chatd hostkeys %s: %v\n", cmd, err)
			return nil, 1
		}
		return keys, 0
	}
	if cfg.DataDir == "" {
		fmt.Fprintf(stderr, "chatd hostkeys %s: no data directory: set --data-dir\n", cmd)
		return nil, 2
	}
	dir := hostkeysDir(cfg)
	paths, err := hostkeyFiles(dir)
	if err != nil {
		fmt.Fprintf(stderr, "chatd hostkeys %s: %v\n", cmd, err)
		return nil, 1
	}
	if len(paths) == 0 {
		fmt.Fprintf(stderr, "no host keys in %s; one is generated on first start, or run chatd hostkeys generate\n", dir)
		return nil, 1
	}
	keys, err = hostkeys.LoadFiles(paths)
	if err != nil {
		fmt.Fprintf(stderr, "chatd hostkeys %s: %v\n", cmd, err)
		return nil, 1
	}
	return keys, 0
}

// hostkeyFiles lists the private host key files in dir the way
// hostkeys.LoadDir finds them (ssh_host_*_key), without creating anything.
// A missing dir has no files.
func hostkeyFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, e := range entries {
		if ok, _ := filepath.Match("ssh_host_*_key", e.Name()); ok && !e.IsDir() {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	return paths, nil
}

// hostkeysSplitHostPort splits "host", "host:port", "[v6]", "[v6]:port" or a
// bare IPv6 address into host and (possibly empty) port.
func hostkeysSplitHostPort(s string) (host, port string, err error) {
	switch {
	case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
		host = s[1 : len(s)-1]
	case strings.HasPrefix(s, "["), strings.Count(s, ":") == 1:
		if host, port, err = net.SplitHostPort(s); err != nil || port == "" {
			return "", "", fmt.Errorf("invalid address %q: want HOST, HOST:PORT or [IPv6]:PORT", s)
		}
	default: // no colon, or a bare IPv6 address
		host = s
	}
	if host == "" || strings.ContainsAny(host, "[], \t") {
		return "", "", fmt.Errorf("invalid host in %q", s)
	}
	return host, port, nil
}

// hostkeysPortFromAddr returns the port of a listen address such as ":2222".
func hostkeysPortFromAddr(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("cannot tell the ssh port from --ssh-addr %q (%v): give HOST:PORT", addr, err)
	}
	port, err := net.LookupPort("tcp", p)
	if err != nil {
		return 0, fmt.Errorf("cannot tell the ssh port from --ssh-addr %q (%v): give HOST:PORT", addr, err)
	}
	if port == 0 {
		return 0, fmt.Errorf("--ssh-addr %q listens on a random port: give HOST:PORT", addr)
	}
	return port, nil
}
