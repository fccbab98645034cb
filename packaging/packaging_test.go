package packaging_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"chatd/internal/roomtest"
)

// The packages, built once (amd64 only: the script's other architecture only adds time).
var built struct {
	once     sync.Once
	dir      string   // dist directory, removed at the end
	deb, rpm string   // their paths
	root     string   // the .deb extracted
	commits  []string // HEAD before and after the build: others may commit meanwhile
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// repoRoot is the repository, the tests' working directory's parent.
const repoRoot = ".."

func gitHead() string {
	out, err := exec.Command("git", "-C", repoRoot, "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// packages runs packaging/package as `just package` does, for amd64, and extracts the .deb.
func packages(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: building the packages takes a minute")
	}
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "chatd-dist-")
		if built.err != nil {
			return
		}
		built.commits = append(built.commits, gitHead())
		cmd := exec.Command("bash", "package")
		cmd.Env = append(os.Environ(), "ARCHES=amd64", "FORMATS=deb rpm", "DIST="+built.dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("packaging/package: %v\n%s", err, out)
			return
		}
		built.commits = append(built.commits, gitHead())
		for pattern, path := range map[string]*string{"chatd_*_amd64.deb": &built.deb, "chatd-*.x86_64.rpm": &built.rpm} {
			m, _ := filepath.Glob(filepath.Join(built.dir, pattern))
			if len(m) != 1 {
				built.err = fmt.Errorf("want one %s in dist, got %v; the script said:\n%s", pattern, m, out)
				return
			}
			*path = m[0]
		}
		if _, err := exec.LookPath("dpkg-deb"); err == nil {
			built.root = filepath.Join(built.dir, "root")
			if out, err := exec.Command("dpkg-deb", "-x", built.deb, built.root).CombinedOutput(); err != nil {
				built.err = fmt.Errorf("dpkg-deb -x: %v\n%s", err, out)
			}
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
}

func needTool(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("needs %s (Debian package %s)", tool, pkg)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDeb inspects the .deb as dpkg sees it: its control fields, the files with their modes and
// owners, the conffile, the scripts, and the binaries' version.
func TestDeb(t *testing.T) {
	needTool(t, "dpkg-deb", "dpkg")
	packages(t)
	if fi, err := os.Stat(built.rpm); err != nil || fi.Size() == 0 {
		t.Errorf("no .rpm: %v", err)
	}

	info := run(t, "dpkg-deb", "-I", built.deb)
	for _, want := range []string{"Package: chatd", "Architecture: amd64", "Depends: passwd"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
		}
	}
	// The maintainer scripts are there and executable.
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		if !regexp.MustCompile(`(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*\s+` + script + `\s`).MatchString(info) {
			t.Errorf("no executable %s in:\n%s", script, info)
		}
	}
	if got := strings.TrimSpace(run(t, "dpkg-deb", "-I", built.deb, "conffiles")); got != "/etc/default/chatd" {
		t.Errorf("conffiles %q, want /etc/default/chatd only", got)
	}

	// Every file, with its mode and owner; nothing else but the directories leading to them.
	want := map[string]string{
		"./usr/bin/chatd":                        "-rwxr-xr-x root/root",
		"./usr/bin/chat":                         "-rwxr-xr-x root/root",
		"./usr/lib/systemd/system/chatd.service": "-rw-r--r-- root/root",
		"./etc/default/chatd":                    "-rw-r--r-- root/root",
		"./usr/share/doc/chatd/README.md":        "-rw-r--r-- root/root",
	}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", built.deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Errorf("dpkg-deb -c line %q", line)
			continue
		}
		mode, owner, path := f[0], f[1], f[len(f)-1]
		if strings.HasPrefix(mode, "d") {
			if mode != "drwxr-xr-x" || owner != "root/root" {
				t.Errorf("directory %s: %s %s", path, mode, owner)
			}
			continue
		}
		w, ok := want[path]
		if !ok {
			t.Errorf("unexpected file %s", path)
			continue
		}
		if got := mode + " " + owner; got != w {
			t.Errorf("%s: %s, want %s", path, got, w)
		}
		delete(want, path)
	}
	for path := range want {
		t.Errorf("%s is not in the package", path)
	}

	// The files are the repository's.
	for src, dst := range map[string]string{"chatd.service": "usr/lib/systemd/system/chatd.service", "chatd.default": "etc/default/chatd"} {
		if readFile(t, src) != readFile(t, filepath.Join(built.root, dst)) {
			t.Errorf("/%s differs from packaging/%s", dst, src)
		}
	}

	// The binaries say the package's version and the commit they were built from.
	version := strings.TrimSpace(run(t, "dpkg-deb", "-f", built.deb, "Version"))
	version = strings.TrimSuffix(version, "-1") // nfpm's release
	for _, bin := range []string{"chatd", "chat"} {
		out := run(t, filepath.Join(built.root, "usr/bin", bin), "--version")
		if !strings.HasPrefix(out, bin+" "+version+", commit ") {
			t.Errorf("%s --version = %q, want version %s", bin, out, version)
		}
		if slices.Contains(built.commits, "") {
			t.Logf("not a git checkout: the commit is not checked")
		} else if !strings.Contains(out, built.commits[0]) && !strings.Contains(out, built.commits[1]) {
			t.Errorf("%s --version = %q, want commit %s", bin, out, built.commits[1])
		}
	}
	// Static (no cgo): no interpreter, so it runs on any Linux of its architecture.
	for _, bin := range []string{"chatd", "chat"} {
		f, err := elf.Open(filepath.Join(built.root, "usr/bin", bin))
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != elf.EM_X86_64 {
			t.Errorf("%s is for %v, want x86-64", bin, f.Machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked: built with cgo?", bin)
			}
		}
		f.Close()
	}
}

// TestUnitVerifies runs systemd-analyze on the packaged unit: verify (syntax, every setting
// known, the binary executable), and the offline security review.
func TestUnitVerifies(t *testing.T) {
	needTool(t, "systemd-analyze", "systemd")
	needTool(t, "dpkg-deb", "dpkg")
	packages(t)
	// The unit as installed, pointing at the binary extracted from the package.
	unit := readFile(t, filepath.Join(built.root, "usr/lib/systemd/system/chatd.service"))
	execStart := "ExecStart=/usr/bin/chatd\n"
	if !strings.Contains(unit, execStart) {
		t.Fatalf("the unit has no %q", execStart)
	}
	unit = strings.Replace(unit, execStart, "ExecStart="+filepath.Join(built.root, "usr/bin/chatd")+"\n", 1)
	path := filepath.Join(t.TempDir(), "chatd.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := run(t, "systemd-analyze", "verify", path); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify said:\n%s", out)
	}
	// 0 is a service that can do nothing, 10 one that can do anything; chatd's is about 1.4.
	// The threshold counts tenths.
	cmd := exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=30", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze security: %v\n%s", err, out)
	} else {
		t.Log(lastLine(string(out)))
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestDefaultsFile checks /etc/default/chatd against chatd: every CHAT_ variable its code
// reads is there, commented out, at the default chatd --help shows; nothing else is.
func TestDefaultsFile(t *testing.T) {
	// What the code reads.
	code := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(repoRoot, "cmd/chatd/*.go"))
	envRE := regexp.MustCompile(`"(CHAT_[A-Z0-9_]+)"`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		for _, m := range envRE.FindAllStringSubmatch(readFile(t, f), -1) {
			code[m[1]] = true
		}
	}
	if len(code) < 20 {
		t.Fatalf("found only %d CHAT_ variables in cmd/chatd: %v", len(code), code)
	}

	// Their defaults, as --help shows them.
	bin := filepath.Join(t.TempDir(), "chatd")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/chatd").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	help := run(t, bin, "--help")
	defaults := map[string]string{}
	optRE := regexp.MustCompile(`(?m)^        (.*)\n        env (CHAT_[A-Z0-9_]+)$`)
	defRE := regexp.MustCompile(`\(default ("(?:[^"\\]|\\.)*")\)$`)
	for _, m := range optRE.FindAllStringSubmatch(help, -1) {
		d := ""
		if dm := defRE.FindStringSubmatch(m[1]); dm != nil {
			var err error
			if d, err = strconv.Unquote(dm[1]); err != nil {
				t.Fatal(err)
			}
		}
		defaults[m[2]] = d
	}
	for name := range code {
		if _, ok := defaults[name]; !ok {
			t.Errorf("--help does not show %s", name)
		}
	}

	unitEnv := unitSettings(t, readFile(t, "chatd.service"))["Environment"]
	file := map[string]string{}
	for i, line := range strings.Split(readFile(t, "chatd.default"), "\n") {
		m := regexp.MustCompile(`^(#?)(CHAT_[A-Z0-9_]+)=(.*)$`).FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[1] != "#" {
			t.Errorf("line %d: %s is set: the shipped file only shows the defaults", i+1, m[2])
		}
		if _, dup := file[m[2]]; dup {
			t.Errorf("line %d: %s again", i+1, m[2])
		}
		file[m[2]] = m[3]
	}
	for name := range code {
		v, ok := file[name]
		if !ok {
			t.Errorf("packaging/chatd.default lacks %s", name)
			continue
		}
		want := defaults[name]
		// The unit's own settings are the defaults that matter there.
		for _, e := range unitEnv {
			if n, uv, _ := strings.Cut(e, "="); n == name {
				want = uv
			}
		}
		if want == "" && (v == "false" || v == "0s") {
			continue // --help leaves out such defaults
		}
		if v != want {
			t.Errorf("packaging/chatd.default: %s=%s, but the default is %q", name, v, want)
		}
	}
	for name := range file {
		if !code[name] {
			t.Errorf("packaging/chatd.default has %s, which chatd does not read", name)
		}
	}
}

// unitSettings reads a unit's [Service] section: each key's values in order.
func unitSettings(t *testing.T, unit string) map[string][]string {
	t.Helper()
	s := map[string][]string{}
	section := ""
	for _, line := range strings.Split(unit, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if section != "[Service]" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("unit line %q", line)
		}
		if k == "Environment" {
			s[k] = append(s[k], strings.Fields(v)...)
		} else {
			s[k] = append(s[k], v)
		}
	}
	return s
}

// TestInstall installs the .deb on this machine as an operator would, runs the installed chatd
// as the unit says (its user, directory, environment and environment file), talks to it with
// OpenSSH and the packaged chat client, then removes and purges the package. It changes the
// system, so it runs only as root on Debian with CHATD_PACKAGE_TEST=1 (.ci/run sets it), and
// never where chatd is installed or /var/lib/chatd exists; it purges the package even when it
// fails.
func TestInstall(t *testing.T) {
	if os.Getenv("CHATD_PACKAGE_TEST") != "1" {
		t.Skip("installs the chatd package on this machine: set CHATD_PACKAGE_TEST=1 to run it (CI does)")
	}
	if os.Geteuid() != 0 {
		t.Skip("installing a package needs root")
	}
	if _, err := os.Stat("/etc/debian_version"); err != nil {
		t.Skip("needs Debian (dpkg)")
	}
	needTool(t, "dpkg", "dpkg")
	needTool(t, "ssh", "openssh-client")
	needTool(t, "ssh-keygen", "openssh-client")
	if exec.Command("dpkg", "-s", "chatd").Run() == nil {
		t.Skip("a chatd package is installed here already: not touching it")
	}
	if _, err := os.Lstat("/var/lib/chatd"); err == nil {
		t.Skip("/var/lib/chatd exists: not touching it")
	}
	packages(t)
	_, userErr := user.Lookup("chatd")
	hadUser := userErr == nil
	_, groupErr := user.LookupGroup("chatd")
	hadGroup := groupErr == nil
	t.Cleanup(func() {
		// Whatever happened: the package, its data and the user it made go.
		if out, err := exec.Command("dpkg", "-P", "chatd").CombinedOutput(); err != nil {
			t.Logf("cleanup: dpkg -P chatd: %v\n%s", err, out)
		}
		_ = os.RemoveAll("/var/lib/chatd")
		if !hadUser {
			_ = exec.Command("userdel", "chatd").Run()
		}
		if !hadGroup {
			_ = exec.Command("groupdel", "chatd").Run()
		}
	})

	run(t, "dpkg", "-i", built.deb)

	// The system user and its directory.
	u, err := user.Lookup("chatd")
	if err != nil {
		t.Fatalf("no user chatd after install: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid >= 1000 || uid == 0 {
		t.Errorf("chatd's uid is %d, want a system uid", uid)
	}
	passwd := strings.TrimSpace(run(t, "getent", "passwd", "chatd"))
	if !strings.HasSuffix(passwd, ":/var/lib/chatd:/usr/sbin/nologin") {
		t.Errorf("passwd entry %q, want home /var/lib/chatd and no login shell", passwd)
	}
	checkOwnDir(t, "/var/lib/chatd", uid, gid)
	if readFile(t, "/etc/default/chatd") != readFile(t, "chatd.default") {
		t.Error("/etc/default/chatd is not packaging/chatd.default")
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		// Installed, the unit's binary is where it says.
		if out := run(t, "systemd-analyze", "verify", "/usr/lib/systemd/system/chatd.service"); strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify of the installed unit:\n%s", out)
		}
	}

	// Run it as the unit would, with the environment file's settings and loopback ports.
	// An operator's edit to the environment file: kept across a reinstall, and read.
	edited := readFile(t, "/etc/default/chatd") + "\nCHAT_DEFAULT_ROOM=#packaged\n"
	if err := os.WriteFile("/etc/default/chatd", []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startInstalled(t, uid, gid)
	key := filepath.Join(t.TempDir(), "id_ed25519")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
	// The host keys the operator publishes, from the installed command.
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	kh := runEnv(t, srv.env, "/usr/bin/chatd", "hostkeys", "known-hosts", srv.sshAddr)
	if err := os.WriteFile(knownHosts, []byte(kh), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(srv.sshAddr, ":")
	ssh := startProc(t, "ssh", "-F", "/dev/null", "-p", port, "-i", key, "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile="+knownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-o", "LogLevel=ERROR", "-T", "alice@127.0.0.1")
	ssh.out.WaitLine(t, "* alice joined #packaged (1 online)")
	chat := startProc(t, "/usr/bin/chat", "-addr", srv.tcpAddr, "-name", "bob")
	ssh.out.WaitLine(t, "* bob joined #packaged (2 online)")
	ssh.send(t, "hello from the package")
	chat.out.WaitLine(t, "alice: hello from the package")
	// The web page, from the packaged binary's embedded files.
	resp, err := http.Get("http://" + srv.webAddr + "/")
	if err != nil {
		t.Fatalf("the web page: %v", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(page, []byte("<html")) {
		t.Errorf("the web page: %s\n%.200s", resp.Status, page)
	}
	ssh.send(t, "bye")
	chat.send(t, "bye")
	if code := srv.stop(t); code != 0 {
		t.Errorf("chatd exited %d after SIGTERM\n%s", code, srv.logs.Text())
	}
	for _, p := range []string{"/var/lib/chatd/chat.db", "/var/lib/chatd/hostkeys"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("after a run: %v", err)
			continue
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
			t.Errorf("%s belongs to uid %d, want chatd (%d)", p, st.Uid, uid)
		}
	}

	// A reinstall (as an upgrade runs the scripts) keeps the edited settings and the data.
	run(t, "dpkg", "-i", built.deb)
	if readFile(t, "/etc/default/chatd") != edited {
		t.Error("reinstalling replaced the edited /etc/default/chatd")
	}
	checkOwnDir(t, "/var/lib/chatd", uid, gid)

	// Remove: the programs go, the data and the settings stay.
	run(t, "dpkg", "-r", "chatd")
	for _, gone := range []string{"/usr/bin/chatd", "/usr/bin/chat", "/usr/lib/systemd/system/chatd.service"} {
		if _, err := os.Stat(gone); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after dpkg -r: %v", gone, err)
		}
	}
	for _, kept := range []string{"/var/lib/chatd/chat.db", "/var/lib/chatd/hostkeys", "/etc/default/chatd"} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("dpkg -r removed it: %v", err)
		}
	}
	// Purge: the data and the settings go too.
	run(t, "dpkg", "-P", "chatd")
	for _, gone := range []string{"/var/lib/chatd", "/etc/default/chatd"} {
		if _, err := os.Stat(gone); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after dpkg -P: %v", gone, err)
		}
	}
}

// checkOwnDir checks that dir belongs to uid:gid with mode 0700.
func checkOwnDir(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s: %v uid %d gid %d, want a directory 0700 of %d:%d", dir, fi.Mode(), st.Uid, st.Gid, uid, gid)
	}
}

// installed is the packaged chatd, running.
type installed struct {
	cmd                       *exec.Cmd
	env                       []string
	logs                      *roomtest.Stream
	sshAddr, tcpAddr, webAddr string
	exited                    chan struct{}
}

// startInstalled starts the unit's ExecStart as its User, in its WorkingDirectory, with its
// Environment= and then the EnvironmentFile's settings (as systemd orders them), the listen
// addresses moved to loopback ports.
func startInstalled(t *testing.T, uid, gid int) *installed {
	t.Helper()
	unit := unitSettings(t, readFile(t, "/usr/lib/systemd/system/chatd.service"))
	one := func(k string) string {
		if len(unit[k]) != 1 {
			t.Fatalf("the unit has %d %s=", len(unit[k]), k)
		}
		return unit[k][0]
	}
	if one("User") != "chatd" {
		t.Fatalf("User=%s", one("User"))
	}
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "NO_COLOR=1"}
	env = append(env, unit["Environment"]...)
	envFile := strings.TrimPrefix(one("EnvironmentFile"), "-")
	for _, line := range strings.Split(readFile(t, envFile), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			env = append(env, line)
		}
	}
	env = append(env, "CHAT_SSH_ADDR=127.0.0.1:0", "CHAT_TCP_ADDR=127.0.0.1:0", "CHAT_HTTP_ADDR=127.0.0.1:0")
	args := strings.Fields(one("ExecStart"))
	s := &installed{env: env, exited: make(chan struct{})}
	s.cmd = exec.Command(args[0], args[1:]...)
	s.cmd.Env = env
	s.cmd.Dir = one("WorkingDirectory")
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.logs = roomtest.NewStream(stderr)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { <-s.logs.Done(); _ = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() { _ = s.cmd.Process.Kill(); <-s.exited })
	re := regexp.MustCompile(`(sshd|tcp|web): listening addr=(\S+)`)
	s.logs.Wait(t, "chatd listening", func() bool {
		for _, m := range re.FindAllStringSubmatch(s.logs.Text(), -1) {
			*map[string]*string{"sshd": &s.sshAddr, "tcp": &s.tcpAddr, "web": &s.webAddr}[m[1]] = m[2]
		}
		return s.sshAddr != "" && s.tcpAddr != "" && s.webAddr != "" || s.logs.Closed()
	})
	if s.sshAddr == "" || s.tcpAddr == "" || s.webAddr == "" {
		t.Fatalf("the installed chatd did not start:\n%s", s.logs.Text())
	}
	return s
}

func (s *installed) stop(t *testing.T) int {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.exited:
	case <-time.After(roomtest.HangGuard):
		t.Fatal("chatd did not exit after SIGTERM")
	}
	return s.cmd.ProcessState.ExitCode()
}

func runEnv(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

// proc is a client whose stdin the test writes and whose stdout it reads.
type proc struct {
	in  io.WriteCloser
	out *roomtest.Stream
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{in: in, out: roomtest.NewStream(bufio.NewReader(out))}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { <-p.out.Done(); _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("%s said on stderr:\n%s", name, stderr.String())
		}
	})
	return p
}

func (p *proc) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		t.Fatalf("send %q: %v", line, err)
	}
}
