package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"chatd/hostkeys"
)

// hkRun runs runHostkeys and returns its exit code and output. It also
// fails the test if the working directory gained any files.
func hkRun(t *testing.T, dataDir, sshAddr string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	before := hkDirNames(t, ".")
	var out, errOut bytes.Buffer
	cfg := defaultConfig()
	cfg.DataDir, cfg.SSHAddr = dataDir, sshAddr
	code = runHostkeys(args, cfg, &out, &errOut)
	for _, name := range hkDirNames(t, ".") {
		if !slices.Contains(before, name) {
			t.Errorf("hostkeys %q created %q in the working directory", args, name)
		}
	}
	return code, out.String(), errOut.String()
}

func hkDirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// hkKeygen runs ssh-keygen, skipping the test if it is not installed.
func hkKeygen(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatal("ssh-keygen is required (apt-get install openssh-client)")
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// hkFingerprint returns the fingerprint ssh-keygen -l prints for path.
func hkFingerprint(t *testing.T, path string) string {
	t.Helper()
	f := strings.Fields(hkKeygen(t, "-l", "-f", path))
	if len(f) < 2 {
		t.Fatalf("unexpected ssh-keygen -l output %q", f)
	}
	return f[1]
}

func TestHostkeysUsage(t *testing.T) {
	dataDir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  []string
	}{
		{"no command", nil, 2, []string{"usage: chatd hostkeys", "generate", "list", "known-hosts", "sshfp"}},
		{"unknown command", []string{"rotate"}, 2, []string{`unknown command "rotate"`, "usage: chatd hostkeys"}},
		{"help", []string{"help"}, 0, []string{"usage: chatd hostkeys"}},
		{"-h", []string{"-h"}, 0, []string{"usage: chatd hostkeys"}},
		{"generate -h", []string{"generate", "-h"}, 0, []string{"usage: chatd hostkeys generate", "-type", "-bits", "-force"}},
		{"list --help", []string{"list", "--help"}, 0, []string{"usage: chatd hostkeys list", "-json"}},
		{"bad flag", []string{"list", "--yaml"}, 2, []string{"flag provided but not defined: -yaml", "usage: chatd hostkeys list"}},
		{"generate extra arg", []string{"generate", "rsa"}, 2, []string{`unexpected argument "rsa"`}},
		{"list extra arg", []string{"list", "x"}, 2, []string{`unexpected argument "x"`}},
		{"known-hosts two hosts", []string{"known-hosts", "a", "b"}, 2, []string{`unexpected argument "b"`}},
		{"sshfp without host", []string{"sshfp"}, 2, []string{"missing argument", "usage: chatd hostkeys sshfp HOST"}},
		{"leading hostkeys is skipped", []string{"hostkeys"}, 2, []string{"usage: chatd hostkeys"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := hkRun(t, dataDir, ":2222", tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d", code, tt.wantCode)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr does not contain %q:\n%s", want, stderr)
				}
			}
		})
	}
	if names := hkDirNames(t, dataDir); len(names) != 0 {
		t.Errorf("usage errors created %q in the data dir", names)
	}
	if code, _, stderr := hkRun(t, "", ":2222", "list"); code != 2 || !strings.Contains(stderr, "--data-dir") {
		t.Errorf("empty data dir: code %d, stderr %q", code, stderr)
	}
	if code, _, stderr := hkRun(t, "", ":2222", "rotate"); code != 2 || !strings.Contains(stderr, `unknown command "rotate"`) {
		t.Errorf("unknown command, empty data dir: code %d, stderr %q", code, stderr)
	}
}

func TestHostkeysNoKeys(t *testing.T) {
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "hostkeys")
	for _, args := range [][]string{{"list"}, {"list", "--json"}, {"known-hosts"}, {"sshfp", "chat.example.com"}} {
		code, stdout, stderr := hkRun(t, dataDir, ":2222", args...)
		want := "no host keys in " + dir + "; one is generated on first start, or run chatd hostkeys generate\n"
		if code != 1 || stdout != "" || stderr != want {
			t.Errorf("%q: code %d, stdout %q, stderr %q; want 1, nothing, %q", args, code, stdout, stderr, want)
		}
	}
	if names := hkDirNames(t, dataDir); len(names) != 0 {
		t.Errorf("read-only commands created %q", names)
	}
}

func TestHostkeysGenerate(t *testing.T) {
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "hostkeys")
	edPath := filepath.Join(dir, "ssh_host_ed25519_key")

	code, stdout, stderr := hkRun(t, dataDir, ":2222", "generate")
	if code != 0 || stderr != "" {
		t.Fatalf("generate: code %d, stderr %q", code, stderr)
	}
	fp := hkFingerprint(t, edPath)
	for _, want := range []string{"ed25519", "256 bits", "path:        " + edPath + "\n", "fingerprint: " + fp + "\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("generate output does not contain %q:\n%s", want, stdout)
		}
	}

	code, stdout, stderr = hkRun(t, dataDir, ":2222", "generate", "--type", "ed25519")
	if code != 1 || stdout != "" || !strings.Contains(stderr, edPath) || !strings.Contains(stderr, "--force") {
		t.Errorf("generate over existing key: code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got := hkFingerprint(t, edPath); got != fp {
		t.Errorf("refused generate changed the key")
	}

	code, stdout, _ = hkRun(t, dataDir, ":2222", "generate", "--force")
	if code != 0 || hkFingerprint(t, edPath) == fp || !strings.Contains(stdout, hkFingerprint(t, edPath)) {
		t.Errorf("generate --force: code %d, output %q", code, stdout)
	}

	tests := []struct {
		args     []string
		wantCode int
		wantOut  string // in stdout
		wantErr  string // in stderr
	}{
		{[]string{"--type", "ecdsa", "--bits", "384"}, 0, "generated ecdsa host key (384 bits)", ""},
		{[]string{"--type=rsa", "--bits=2048"}, 0, "generated rsa host key (2048 bits)", ""},
		{[]string{"--type", "rsa", "--bits", "1024", "--force"}, 1, "", "at least 2048"},
		{[]string{"--type", "dsa"}, 1, "", `unknown key type "dsa"`},
		{[]string{"--bits", "abc"}, 2, "", `invalid value "abc" for flag -bits`},
	}
	for _, tt := range tests {
		code, stdout, stderr := hkRun(t, dataDir, ":2222", append([]string{"generate"}, tt.args...)...)
		if code != tt.wantCode || !strings.Contains(stdout, tt.wantOut) || !strings.Contains(stderr, tt.wantErr) {
			t.Errorf("generate %q: code %d, stdout %q, stderr %q; want %d, %q, %q",
				tt.args, code, stdout, stderr, tt.wantCode, tt.wantOut, tt.wantErr)
		}
	}
	want := []string{"ssh_host_ecdsa_key", "ssh_host_ecdsa_key.pub", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "ssh_host_rsa_key", "ssh_host_rsa_key.pub"}
	if names := hkDirNames(t, dir); !slices.Equal(names, want) {
		t.Errorf("key dir holds %q, want %q", names, want)
	}
}

// hkSetup generates an ed25519, an ecdsa and an rsa key in dataDir/hostkeys.
func hkSetup(t *testing.T) (dataDir string, keys []hostkeys.Key) {
	t.Helper()
	dataDir = t.TempDir()
	dir := filepath.Join(dataDir, "hostkeys")
	for _, typ := range []string{"ecdsa", "ed25519", "rsa"} { // sorted like the files
		bits := 0
		if typ == "rsa" {
			bits = 2048
		}
		k, err := hostkeys.Generate(dir, typ, bits, false)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return dataDir, keys
}

func TestHostkeysList(t *testing.T) {
	dataDir, keys := hkSetup(t)

	code, stdout, stderr := hkRun(t, dataDir, ":2222", "list")
	if code != 0 || stderr != "" {
		t.Fatalf("list: code %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 1+len(keys) {
		t.Fatalf("list printed %d lines, want a header and %d keys:\n%s", len(lines), len(keys), stdout)
	}
	if f := strings.Fields(lines[0]); !slices.Equal(f, []string{"TYPE", "BITS", "FINGERPRINT", "PATH"}) {
		t.Errorf("header %q", lines[0])
	}
	fpCol := strings.Index(lines[0], "FINGERPRINT")
	pathCol := strings.Index(lines[0], "PATH")
	for i, k := range keys {
		line := lines[i+1]
		f := strings.Fields(line)
		want := []string{k.Type, map[string]string{"ed25519": "256", "ecdsa": "256", "rsa": "2048"}[k.Type], hkFingerprint(t, k.Path), k.Path}
		if !slices.Equal(f, want) {
			t.Errorf("line %q, want fields %q", line, want)
		}
		if strings.Index(line, "SHA256:") != fpCol || strings.Index(line, k.Path) != pathCol {
			t.Errorf("columns not aligned:\n%s", stdout)
		}
	}

	code, stdout, stderr = hkRun(t, dataDir, ":2222", "list", "--json")
	if code != 0 || stderr != "" {
		t.Fatalf("list --json: code %d, stderr %q", code, stderr)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("list --json output is not JSON: %v\n%s", err, stdout)
	}
	if len(got) != len(keys) {
		t.Fatalf("list --json has %d entries, want %d", len(got), len(keys))
	}
	for i, k := range keys {
		want := map[string]any{"type": k.Type, "bits": float64(k.Bits), "fingerprint": hkFingerprint(t, k.Path), "path": k.Path}
		if len(got[i]) != len(want) {
			t.Errorf("entry %d = %v, want %v", i, got[i], want)
		}
		for field, v := range want {
			if got[i][field] != v {
				t.Errorf("entry %d %s = %v, want %v", i, field, got[i][field], v)
			}
		}
	}

	// A key the server would refuse makes list fail the same way.
	if err := os.Chmod(keys[2].Path, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = hkRun(t, dataDir, ":2222", "list")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "chmod 600 "+keys[2].Path) {
		t.Errorf("list with a 0644 key: code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestHostkeysKnownHosts(t *testing.T) {
	dataDir, keys := hkSetup(t)
	tests := []struct {
		name    string
		sshAddr string
		args    []string
		entry   string // known_hosts host field
	}{
		{"defaults", ":2222", nil, "[localhost]:2222"},
		{"default port 22", "0.0.0.0:22", nil, "localhost"},
		{"host", ":2222", []string{"chat.example.com"}, "[chat.example.com]:2222"},
		{"host and port", ":2222", []string{"chat.example.com:2022"}, "[chat.example.com]:2022"},
		{"host port 22", ":2222", []string{"chat.example.com:22"}, "chat.example.com"},
		{"ipv4", "[::]:2222", []string{"192.0.2.1"}, "[192.0.2.1]:2222"},
		{"ipv6 bracketed with port", ":2222", []string{"[2001:db8::1]:2200"}, "[2001:db8::1]:2200"},
		{"ipv6 bracketed", ":2222", []string{"[::1]"}, "[::1]:2222"},
		{"ipv6 bare", ":2222", []string{"::1"}, "[::1]:2222"},
		{"ipv6 port 22", ":22", []string{"::1"}, "::1"},
		{"explicit port wins over bad ssh-addr", "bogus", []string{"h:2000"}, "[h]:2000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := hkRun(t, dataDir, tt.sshAddr, append([]string{"known-hosts"}, tt.args...)...)
			if code != 0 || stderr != "" {
				t.Fatalf("code %d, stderr %q", code, stderr)
			}
			var want strings.Builder
			for _, k := range keys {
				want.WriteString(tt.entry + " " + k.AuthorizedKey() + "\n")
			}
			if stdout != want.String() {
				t.Errorf("output:\n%s\nwant:\n%s", stdout, want.String())
			}
			// ssh-keygen finds the host in the output as ssh would look it up.
			kh := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(kh, []byte(stdout), 0o600); err != nil {
				t.Fatal(err)
			}
			if out := hkKeygen(t, "-F", tt.entry, "-f", kh); strings.Count(out, "found: line") != len(keys) {
				t.Errorf("ssh-keygen -F %s:\n%s", tt.entry, out)
			}
		})
	}

	errTests := []struct {
		name     string
		sshAddr  string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"port 0", ":2222", []string{"h:0"}, 2, `invalid port "0"`},
		{"port too big", ":2222", []string{"h:65536"}, 2, `invalid port "65536"`},
		{"port not a number", ":2222", []string{"h:ssh2"}, 2, `invalid port "ssh2"`},
		{"empty port", ":2222", []string{"h:"}, 2, "invalid address"},
		{"unclosed bracket", ":2222", []string{"[::1"}, 2, "invalid address"},
		{"empty host", ":2222", []string{":2222"}, 2, "invalid host"},
		{"comma", ":2222", []string{"a,b"}, 2, "invalid host"},
		{"random listen port", ":0", nil, 1, "random port"},
		{"unparsable ssh-addr", "bogus", nil, 1, `--ssh-addr "bogus"`},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := hkRun(t, dataDir, tt.sshAddr, append([]string{"known-hosts"}, tt.args...)...)
			if code != tt.wantCode || stdout != "" || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("code %d, stdout %q, stderr %q; want %d and %q", code, stdout, stderr, tt.wantCode, tt.wantErr)
			}
		})
	}
}

func TestHostkeysSSHFP(t *testing.T) {
	dataDir, keys := hkSetup(t)
	code, stdout, stderr := hkRun(t, dataDir, ":2222", "sshfp", "chat.example.com")
	if code != 0 || stderr != "" {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	var want strings.Builder
	for _, k := range keys {
		for _, line := range strings.Split(hkKeygen(t, "-r", "chat.example.com", "-f", k.Path+".pub"), "\n") {
			if f := strings.Fields(line); len(f) == 6 && f[4] == "2" {
				want.WriteString(line + "\n")
			}
		}
	}
	if stdout != want.String() {
		t.Errorf("sshfp output:\n%s\nssh-keygen -r (SHA-256 lines):\n%s", stdout, want.String())
	}
	for _, bad := range []string{"chat.example.com:2222", "[::1]", ""} {
		code, stdout, stderr := hkRun(t, dataDir, ":2222", "sshfp", bad)
		if code != 2 || stdout != "" || !strings.Contains(stderr, "not a DNS name") {
			t.Errorf("sshfp %q: code %d, stdout %q, stderr %q", bad, code, stdout, stderr)
		}
	}
}

func TestHostkeysFlagsAfterArguments(t *testing.T) {
	dataDir, keys := hkSetup(t)
	code, stdout, stderr := hkRun(t, "/nonexistent", ":2222", "known-hosts", "example.org:2022", "--data-dir", dataDir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got := strings.Count(stdout, "[example.org]:2022 "); got != len(keys) {
		t.Errorf("got %d lines for [example.org]:2022, want %d:\n%s", got, len(keys), stdout)
	}
}
