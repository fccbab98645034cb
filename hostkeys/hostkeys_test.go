package hostkeys

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// TestMain fails the run if any test leaves files in the working directory.
func TestMain(m *testing.M) {
	before, err := dirNames(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	after, err := dirNames(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, name := range after {
		if !slices.Contains(before, name) {
			fmt.Fprintf(os.Stderr, "FAIL: tests created %q in the working directory\n", name)
			code = 1
		}
	}
	os.Exit(code)
}

func dirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// run runs an OpenSSH tool (in a scratch directory) and returns its
// combined output; it skips the test when the tool is not installed.
func run(t *testing.T, tool string, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s is required (apt-get install openssh-client)", tool)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, tool string, args ...string) string {
	t.Helper()
	out, err := run(t, tool, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return out
}

// keygenList returns the bits, fingerprint and type that ssh-keygen -l
// prints for path, e.g. "256", "SHA256:...", "ED25519".
func keygenList(t *testing.T, path string) (bits int, fp, typ string) {
	t.Helper()
	out := strings.TrimSpace(mustRun(t, "ssh-keygen", "-l", "-E", "sha256", "-f", path))
	f := strings.Fields(out)
	if len(f) < 3 {
		t.Fatalf("unexpected ssh-keygen -l output %q", out)
	}
	bits, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatalf("unexpected ssh-keygen -l output %q", out)
	}
	return bits, f[1], strings.Trim(f[len(f)-1], "()")
}

func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// keygen creates a key with ssh-keygen in a new temporary directory and
// returns the private key path. extra is appended to the arguments.
func keygen(t *testing.T, typ string, extra ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ssh_host_"+typ+"_key")
	args := append([]string{"-q", "-t", typ, "-N", "", "-C", "test", "-f", path}, extra...)
	mustRun(t, "ssh-keygen", args...)
	return path
}

func TestGenerateMatchesSSHKeygen(t *testing.T) {
	tests := []struct {
		typ      string
		bits     int
		wantBits int
		wantType string // as ssh-keygen -l prints it
	}{
		{"", 0, 256, "ED25519"},
		{"ed25519", 256, 256, "ED25519"},
		{"ecdsa", 0, 256, "ECDSA"},
		{"ecdsa", 384, 384, "ECDSA"},
		{"ecdsa", 521, 521, "ECDSA"},
		{"rsa", 2048, 2048, "RSA"},
		{"rsa", 0, 3072, "RSA"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s-%d", tt.typ, tt.bits), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "hostkeys")
			k, err := Generate(dir, tt.typ, tt.bits, false)
			if err != nil {
				t.Fatal(err)
			}
			typ := tt.typ
			if typ == "" {
				typ = "ed25519"
			}
			wantPath := filepath.Join(dir, "ssh_host_"+typ+"_key")
			if k.Path != wantPath || k.Type != typ || k.Bits != tt.wantBits {
				t.Errorf("got path %q type %q bits %d, want %q %q %d", k.Path, k.Type, k.Bits, wantPath, typ, tt.wantBits)
			}
			if m := fileMode(t, k.Path); m != 0o600 {
				t.Errorf("private key mode %04o, want 0600", m)
			}
			if m := fileMode(t, k.Path+".pub"); m != 0o644 {
				t.Errorf("public key mode %04o, want 0644", m)
			}
			if m := fileMode(t, dir); m != 0o700 {
				t.Errorf("dir mode %04o, want 0700", m)
			}
			if names, _ := dirNames(dir); !slices.Equal(names, []string{"ssh_host_" + typ + "_key", "ssh_host_" + typ + "_key.pub"}) {
				t.Errorf("dir holds %q, want just the key and its .pub", names)
			}

			// ssh-keygen agrees on both halves.
			for _, p := range []string{k.Path, k.Path + ".pub"} {
				bits, fp, kt := keygenList(t, p)
				if fp != k.Fingerprint || bits != k.Bits || kt != tt.wantType {
					t.Errorf("ssh-keygen -l %s: %d %s %s; Key has %d %s %s", p, bits, fp, kt, k.Bits, k.Fingerprint, k.Type)
				}
			}
			// ssh-keygen can read the private key and derives the same public key.
			pub := strings.Fields(mustRun(t, "ssh-keygen", "-y", "-f", k.Path))
			if got := strings.Join(pub[:2], " "); got != k.AuthorizedKey() {
				t.Errorf("ssh-keygen -y: %q, AuthorizedKey: %q", got, k.AuthorizedKey())
			}
			pubFile, err := os.ReadFile(k.Path + ".pub")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(pubFile), k.AuthorizedKey()+" ") {
				t.Errorf(".pub = %q, want it to start with %q", pubFile, k.AuthorizedKey())
			}

			// Reloading gives the same key.
			keys, generated, err := LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if generated || len(keys) != 1 || keys[0].Fingerprint != k.Fingerprint ||
				keys[0].Bits != k.Bits || keys[0].Type != k.Type || keys[0].Path != k.Path {
				t.Errorf("LoadDir = %+v, generated %v; want just %+v", keys, generated, k)
			}
		})
	}
}

func TestLoadFilesSSHKeygenKeys(t *testing.T) {
	tests := []struct {
		name     string
		typ      string
		args     []string
		wantType string
		header   string // first line of the private key file
	}{
		{"ed25519", "ed25519", nil, "ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----"},
		{"ecdsa-256", "ecdsa", []string{"-b", "256"}, "ecdsa", "-----BEGIN OPENSSH PRIVATE KEY-----"},
		{"ecdsa-384", "ecdsa", []string{"-b", "384"}, "ecdsa", "-----BEGIN OPENSSH PRIVATE KEY-----"},
		{"ecdsa-521", "ecdsa", []string{"-b", "521"}, "ecdsa", "-----BEGIN OPENSSH PRIVATE KEY-----"},
		{"rsa-3072", "rsa", nil, "rsa", "-----BEGIN OPENSSH PRIVATE KEY-----"},
		{"rsa-pkcs1", "rsa", []string{"-b", "2048", "-m", "PEM"}, "rsa", "-----BEGIN RSA PRIVATE KEY-----"},
		{"rsa-pkcs8", "rsa", []string{"-b", "2048", "-m", "PKCS8"}, "rsa", "-----BEGIN PRIVATE KEY-----"},
		{"ecdsa-sec1", "ecdsa", []string{"-m", "PEM"}, "ecdsa", "-----BEGIN EC PRIVATE KEY-----"},
		{"ecdsa-pkcs8", "ecdsa", []string{"-b", "384", "-m", "PKCS8"}, "ecdsa", "-----BEGIN PRIVATE KEY-----"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := keygen(t, tt.typ, tt.args...)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if first, _, _ := strings.Cut(string(data), "\n"); first != tt.header {
				t.Fatalf("ssh-keygen wrote %q, test expects %q", first, tt.header)
			}
			keys, err := LoadFiles([]string{path})
			if err != nil {
				t.Fatal(err)
			}
			k := keys[0]
			bits, fp, _ := keygenList(t, path)
			if k.Fingerprint != fp || k.Bits != bits || k.Type != tt.wantType || k.Path != path {
				t.Errorf("got %s %d %s %s, ssh-keygen says %s %d %s %s",
					k.Type, k.Bits, k.Fingerprint, k.Path, tt.wantType, bits, fp, path)
			}
			pub, err := os.ReadFile(path + ".pub")
			if err != nil {
				t.Fatal(err)
			}
			if f := strings.Fields(string(pub)); strings.Join(f[:2], " ") != k.AuthorizedKey() {
				t.Errorf("AuthorizedKey() = %q, .pub has %q", k.AuthorizedKey(), pub)
			}
		})
	}
}

// TestLoadECParameters loads a SEC1 key preceded by an "EC PARAMETERS"
// block, as openssl ecparam -genkey writes it.
func TestLoadECParameters(t *testing.T) {
	path := keygen(t, "ecdsa", "-m", "PEM")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	params := "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
	if err := os.WriteFile(path, append([]byte(params), data...), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := LoadFiles([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	if _, fp, _ := keygenList(t, path+".pub"); keys[0].Fingerprint != fp {
		t.Errorf("fingerprint %s, ssh-keygen says %s", keys[0].Fingerprint, fp)
	}
}

func TestLoadFilesRefusals(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) string // returns the path to load
		want  func(path string) []string
	}{
		{
			name: "world readable",
			setup: func(t *testing.T) string {
				p := keygen(t, "ed25519")
				if err := os.Chmod(p, 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			},
			want: func(p string) []string {
				return []string{"host key " + p + " is accessible by others (mode 0644): run chmod 600 " + p}
			},
		},
		{
			name: "group readable",
			setup: func(t *testing.T) string {
				p := keygen(t, "ecdsa")
				if err := os.Chmod(p, 0o640); err != nil {
					t.Fatal(err)
				}
				return p
			},
			want: func(p string) []string { return []string{p, "(mode 0640)", "chmod 600 " + p} },
		},
		{
			name:  "encrypted openssh",
			setup: func(t *testing.T) string { return encryptedKey(t, "ed25519") },
			want: func(p string) []string {
				return []string{"host key " + p + " is encrypted", "not supported", "ssh-keygen -p -f " + p}
			},
		},
		{
			name:  "encrypted pkcs1",
			setup: func(t *testing.T) string { return encryptedKey(t, "rsa", "-b", "2048", "-m", "PEM") },
			want:  func(p string) []string { return []string{p, "encrypted", "ssh-keygen -p -f " + p} },
		},
		{
			name:  "encrypted pkcs8",
			setup: func(t *testing.T) string { return encryptedKey(t, "rsa", "-b", "2048", "-m", "PKCS8") },
			want:  func(p string) []string { return []string{p, "encrypted", "ssh-keygen -p -f " + p} },
		},
		{
			name: "garbage",
			setup: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "ssh_host_ed25519_key")
				if err := os.WriteFile(p, []byte("this is not a key\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			},
			want: func(p string) []string { return []string{"host key " + p + ": not a valid private key: "} },
		},
		{
			name: "empty",
			setup: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "ssh_host_ed25519_key")
				if err := os.WriteFile(p, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			},
			want: func(p string) []string { return []string{"host key " + p + ": not a valid private key: "} },
		},
		{
			name: "truncated",
			setup: func(t *testing.T) string {
				p := keygen(t, "ed25519")
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				lines := strings.SplitAfter(string(data), "\n")
				// Drop a body line: the PEM still decodes, the key does not.
				broken := strings.Join(append(lines[:2:2], lines[3:]...), "")
				if err := os.WriteFile(p, []byte(broken), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			},
			want: func(p string) []string { return []string{"host key " + p + ": not a valid private key: "} },
		},
		{
			name:  "public key as private",
			setup: func(t *testing.T) string { return keygen(t, "ed25519") + ".pub" },
			want: func(p string) []string {
				return []string{"host key " + p + " is a public key", "use the private key " + strings.TrimSuffix(p, ".pub") + " instead"}
			},
		},
		{
			name: "public key without .pub name",
			setup: func(t *testing.T) string {
				p := keygen(t, "rsa", "-b", "2048")
				if err := os.Rename(p+".pub", p+"_public"); err != nil {
					t.Fatal(err)
				}
				return p + "_public"
			},
			want: func(p string) []string { return []string{"host key " + p + " is a public key", "private key"} },
		},
		{
			name: "public key in RFC 4716 form",
			setup: func(t *testing.T) string {
				p := keygen(t, "ed25519")
				out := mustRun(t, "ssh-keygen", "-e", "-f", p+".pub")
				if err := os.WriteFile(p, []byte(out), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			},
			want: func(p string) []string { return []string{"host key " + p + " is a public key"} },
		},
		{
			name: "public key in PEM form",
			setup: func(t *testing.T) string {
				p := keygen(t, "ecdsa")
				out := mustRun(t, "ssh-keygen", "-e", "-m", "PKCS8", "-f", p+".pub")
				if err := os.WriteFile(p, []byte(out), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			},
			want: func(p string) []string { return []string{"host key " + p + " is a public key"} },
		},
		{
			name: "rsa below 1024 bits",
			setup: func(t *testing.T) string {
				t.Setenv("GODEBUG", "rsa1024min=0") // let Go generate it
				priv, err := rsa.GenerateKey(rand.Reader, 768)
				if err != nil {
					t.Fatal(err)
				}
				block, err := gossh.MarshalPrivateKey(priv, "")
				if err != nil {
					t.Fatal(err)
				}
				p := filepath.Join(t.TempDir(), "ssh_host_rsa_key")
				if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			},
			want: func(p string) []string {
				return []string{"host key " + p + ": rsa key is only 768 bits", "generate a new key"}
			},
		},
		{
			name:  "missing",
			setup: func(t *testing.T) string { return filepath.Join(t.TempDir(), "ssh_host_ed25519_key") },
			want: func(p string) []string {
				return []string{"host key " + p + " does not exist", "ssh-keygen -t ed25519 -N '' -f " + p}
			},
		},
		{
			name:  "directory",
			setup: func(t *testing.T) string { return t.TempDir() },
			want:  func(p string) []string { return []string{"host key " + p + " is a directory"} },
		},
		{
			name:  "dsa",
			setup: func(t *testing.T) string { return keygen(t, "dsa") },
			want: func(p string) []string {
				return []string{"host key " + p + ": unsupported key type ssh-dss", "ed25519"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t)
			keys, err := LoadFiles([]string{path})
			if err == nil {
				t.Fatalf("LoadFiles(%s) = %v, want an error", path, keys)
			}
			for _, want := range tt.want(path) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\ndoes not contain %q", err, want)
				}
			}
			// LoadDir refuses the same way and does not generate a
			// replacement next to the bad key.
			if filepath.Base(path) == "ssh_host_ed25519_key" && tt.name != "missing" {
				dir := filepath.Dir(path)
				before, _ := dirNames(dir)
				if _, gen, err := LoadDir(dir); err == nil || gen {
					t.Errorf("LoadDir: err %v, generated %v; want the same error", err, gen)
				}
				if after, _ := dirNames(dir); !slices.Equal(before, after) {
					t.Errorf("LoadDir changed %s: %q -> %q", dir, before, after)
				}
			}
		})
	}
	t.Run("missing wraps fs.ErrNotExist", func(t *testing.T) {
		_, err := LoadFiles([]string{filepath.Join(t.TempDir(), "nope")})
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("no files", func(t *testing.T) {
		if _, err := LoadFiles(nil); err == nil {
			t.Error("LoadFiles(nil) succeeded")
		}
	})
}

func encryptedKey(t *testing.T, typ string, extra ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ssh_host_"+typ+"_key")
	args := append([]string{"-q", "-t", typ, "-N", "secret", "-f", path}, extra...)
	mustRun(t, "ssh-keygen", args...)
	return path
}

func TestGenerateRefusals(t *testing.T) {
	tests := []struct {
		typ  string
		bits int
		want []string
	}{
		{"rsa", 1024, []string{"rsa key size 1024 is too small", "at least 2048"}},
		{"rsa", 2047, []string{"too small", "at least 2048"}},
		{"rsa", 16385, []string{"too large", "16384"}},
		{"rsa", -1, []string{"too small"}},
		{"ecdsa", 255, []string{"invalid ecdsa key size 255", "256, 384 or 521"}},
		{"ed25519", 4096, []string{"ed25519 keys are always 256 bits"}},
		{"dsa", 0, []string{`unknown key type "dsa"`, "ed25519, ecdsa or rsa"}},
		{"ED25519", 0, []string{`unknown key type "ED25519"`}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s-%d", tt.typ, tt.bits), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "hostkeys")
			_, err := Generate(dir, tt.typ, tt.bits, false)
			if err == nil {
				t.Fatal("Generate succeeded")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\ndoes not contain %q", err, want)
				}
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Generate created %s despite failing", dir)
			}
		})
	}
	if _, err := Generate("", "ed25519", 0, false); err == nil {
		t.Error(`Generate("") succeeded`)
	}
}

func TestGenerateOverwrite(t *testing.T) {
	dir := t.TempDir()
	old, err := Generate(dir, "ecdsa", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	oldData, _ := os.ReadFile(old.Path)

	_, err = Generate(dir, "ecdsa", 384, false)
	if err == nil {
		t.Fatal("second Generate without force succeeded")
	}
	for _, want := range []string{old.Path, "already exists", "--force"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("error %v does not wrap fs.ErrExist", err)
	}
	if data, _ := os.ReadFile(old.Path); !bytes.Equal(data, oldData) {
		t.Error("refused Generate changed the key file")
	}

	// A different type is a different file and is fine.
	if _, err := Generate(dir, "ed25519", 0, false); err != nil {
		t.Fatal(err)
	}

	k, err := Generate(dir, "ecdsa", 384, true)
	if err != nil {
		t.Fatal(err)
	}
	if k.Fingerprint == old.Fingerprint || k.Bits != 384 {
		t.Errorf("forced Generate: %+v, old %+v", k, old)
	}
	if m := fileMode(t, k.Path); m != 0o600 {
		t.Errorf("mode %04o after --force, want 0600", m)
	}
	if _, fp, _ := keygenList(t, k.Path+".pub"); fp != k.Fingerprint {
		t.Errorf(".pub not replaced: ssh-keygen says %s, key is %s", fp, k.Fingerprint)
	}
	keys, generated, err := LoadDir(dir)
	if err != nil || generated || len(keys) != 2 {
		t.Fatalf("LoadDir = %v, %v, %v; want 2 keys", keys, generated, err)
	}
	if keys[0].Fingerprint != k.Fingerprint || keys[1].Type != "ed25519" {
		t.Errorf("LoadDir = %+v", keys)
	}
	names, _ := dirNames(dir)
	if len(names) != 4 {
		t.Errorf("dir holds %q, want two keys and their .pub files", names)
	}
}

func TestLoadDirGeneratesOnce(t *testing.T) {
	for _, sub := range []string{"", "data/hostkeys"} { // existing empty dir; missing dirs
		t.Run("dir="+sub, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), sub)
			keys, generated, err := LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !generated || len(keys) != 1 || keys[0].Type != "ed25519" || keys[0].Bits != 256 {
				t.Fatalf("LoadDir = %+v, generated %v; want one new ed25519 key", keys, generated)
			}
			k := keys[0]
			if want := filepath.Join(dir, "ssh_host_ed25519_key"); k.Path != want {
				t.Errorf("path %s, want %s", k.Path, want)
			}
			if m := fileMode(t, k.Path); m != 0o600 {
				t.Errorf("mode %04o, want 0600", m)
			}
			if sub != "" {
				if m := fileMode(t, dir); m != 0o700 {
					t.Errorf("created dir mode %04o, want 0700", m)
				}
			}
			if names, _ := dirNames(dir); !slices.Equal(names, []string{"ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"}) {
				t.Errorf("dir holds %q", names)
			}
			if _, fp, _ := keygenList(t, k.Path); fp != k.Fingerprint {
				t.Errorf("ssh-keygen fingerprint %s, LoadDir %s", fp, k.Fingerprint)
			}

			// "Restart": the same key comes back.
			again, generated, err := LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if generated || len(again) != 1 || again[0].Fingerprint != k.Fingerprint {
				t.Errorf("second LoadDir = %+v, generated %v; want the same key", again, generated)
			}
		})
	}
	if _, _, err := LoadDir(""); err == nil {
		t.Error(`LoadDir("") succeeded`)
	}
}

func TestLoadDirConcurrentFirstStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hostkeys")
	const n = 4
	var wg sync.WaitGroup
	fps := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			keys, _, err := LoadDir(dir)
			errs[i] = err
			if err == nil && len(keys) == 1 {
				fps[i] = keys[0].Fingerprint
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || fps[i] == "" || fps[i] != fps[0] {
			t.Errorf("LoadDir #%d: fingerprint %q, err %v; want all the same key", i, fps[i], errs[i])
		}
	}
	if names, _ := dirNames(dir); len(names) != 2 {
		t.Errorf("dir holds %q, want one key and its .pub", names)
	}
}

func TestLoadDirSelectsKeyFiles(t *testing.T) {
	dir := t.TempDir()
	rsaKey := filepath.Join(dir, "ssh_host_rsa_key")
	mustRun(t, "ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", rsaKey)
	mustRun(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "id_ed25519"))
	for name, content := range map[string]string{
		"README":                   "not a key",
		"ssh_host_rsa_key.bak":     "not a key",
		".ssh_host_tmp_123":        "not a key",
		"ssh_host_ed25519_key.pub": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDpiuNAusMr5hy5nhqFWTmV5bIKdqSdetUMl3P/USbLo x\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "ssh_host_dir_key"), 0o700); err != nil {
		t.Fatal(err)
	}
	keys, generated, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if generated || len(keys) != 1 || keys[0].Path != rsaKey || keys[0].Type != "rsa" || keys[0].Bits != 2048 {
		t.Errorf("LoadDir = %+v, generated %v; want only %s", keys, generated, rsaKey)
	}
}

func TestKnownHostsLine(t *testing.T) {
	dir := t.TempDir()
	k, err := Generate(dir, "ed25519", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.AuthorizedKey()
	tests := []struct {
		host  string
		port  int
		entry string // host field of the line
		query string // name ssh-keygen -F looks up, as ssh would
	}{
		{"localhost", 22, "localhost", "localhost"},
		{"localhost", 2222, "[localhost]:2222", "[localhost]:2222"},
		{"chat.example.com", 22, "chat.example.com", "chat.example.com"},
		{"192.0.2.7", 2022, "[192.0.2.7]:2022", "[192.0.2.7]:2022"},
		{"::1", 22, "::1", "::1"},
		{"::1", 2222, "[::1]:2222", "[::1]:2222"},
		{"[2001:db8::1]", 2222, "[2001:db8::1]:2222", "[2001:db8::1]:2222"},
		{"[2001:db8::1]", 22, "2001:db8::1", "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.host+":"+strconv.Itoa(tt.port), func(t *testing.T) {
			line := KnownHostsLine(tt.host, tt.port, k)
			if want := tt.entry + " " + pub; line != want {
				t.Errorf("KnownHostsLine = %q, want %q", line, want)
			}
			kh := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(kh, []byte(line+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			out := mustRun(t, "ssh-keygen", "-F", tt.query, "-f", kh)
			if !strings.Contains(out, "found: line 1") {
				t.Errorf("ssh-keygen -F %s did not find %q:\n%s", tt.query, line, out)
			}
		})
	}
}

func TestSSHFP(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		typ string
		alg string
	}{{"ed25519", "4"}, {"ecdsa", "3"}, {"rsa", "1"}} {
		t.Run(tc.typ, func(t *testing.T) {
			bits := 0
			if tc.typ == "rsa" {
				bits = 2048
			}
			k, err := Generate(dir, tc.typ, bits, false)
			if err != nil {
				t.Fatal(err)
			}
			got := SSHFP("chat.example.com", k)
			var want string
			for _, l := range strings.Split(mustRun(t, "ssh-keygen", "-r", "chat.example.com", "-f", k.Path+".pub"), "\n") {
				if f := strings.Fields(l); len(f) == 6 && f[4] == "2" {
					want = l
				}
			}
			if got != want {
				t.Errorf("SSHFP = %q\nssh-keygen -r: %q", got, want)
			}
			if f := strings.Fields(got); len(f) != 6 || f[3] != tc.alg {
				t.Errorf("SSHFP = %q, want algorithm %s", got, tc.alg)
			}
		})
	}
}

// TestOpenSSHClientAcceptsKey serves each key type with x/crypto/ssh and
// checks that the OpenSSH client verifies it against KnownHostsLine (it
// then fails authentication, which is fine), and rejects a different key.
func TestOpenSSHClientAcceptsKey(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatal("ssh is required (apt-get install openssh-client)")
	}
	dir := t.TempDir()
	other, err := Generate(t.TempDir(), "ed25519", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"ed25519", "ecdsa", "rsa"} {
		t.Run(typ, func(t *testing.T) {
			bits := 0
			if typ == "rsa" {
				bits = 2048
			}
			k, err := Generate(dir, typ, bits, false)
			if err != nil {
				t.Fatal(err)
			}
			port := serveOnce(t, k)
			out := sshConnect(t, port, KnownHostsLine("127.0.0.1", port, k))
			if !strings.Contains(out, "Permission denied") || strings.Contains(out, "Host key verification failed") {
				t.Errorf("ssh with the right known_hosts line:\n%s", out)
			}
			// Control: another key in known_hosts must fail verification.
			port = serveOnce(t, k)
			out = sshConnect(t, port, KnownHostsLine("127.0.0.1", port, other))
			if !strings.Contains(out, "Host key verification failed") {
				t.Errorf("ssh with another key in known_hosts:\n%s", out)
			}
		})
	}
}

// serveOnce accepts one SSH connection presenting k and completes the
// handshake; every authentication attempt is refused.
func serveOnce(t *testing.T, k Key) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &gossh.ServerConfig{
		PublicKeyCallback: func(gossh.ConnMetadata, gossh.PublicKey) (*gossh.Permissions, error) {
			return nil, errors.New("no")
		},
	}
	cfg.AddHostKey(k.Signer)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		defer c.Close()
		gossh.NewServerConn(c, cfg) //nolint:errcheck // the client is expected to give up
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// sshConnect runs the OpenSSH client against 127.0.0.1:port with the given
// known_hosts content and returns its output.
func sshConnect(t *testing.T, port int, knownHosts string) string {
	t.Helper()
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(knownHosts+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := run(t, "ssh", "-F", "/dev/null", "-p", strconv.Itoa(port),
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile="+kh, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "IdentityAgent=none", "-o", "IdentitiesOnly=yes",
		"-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
		"test@127.0.0.1", "true")
	return out
}

func TestLoadFilesRefusesTwoKeysOfOneType(t *testing.T) {
	a, b := keygen(t, "ed25519"), keygen(t, "ed25519")
	_, err := LoadFiles([]string{a, b})
	if err == nil {
		t.Fatal("two ed25519 keys loaded; the server would serve only one of them")
	}
	for _, want := range []string{a, b, "both ed25519", "one key per type"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := LoadFiles([]string{a, keygen(t, "ecdsa"), keygen(t, "rsa")}); err != nil {
		t.Errorf("one key of each type: %v", err)
	}
}
