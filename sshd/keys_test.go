package sshd

import (
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

func TestParseAuthorizedKeys(t *testing.T) {
	a, b := newSigner(t).PublicKey(), newSigner(t).PublicKey()
	line := func(pk gossh.PublicKey) string { return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk))) }
	data := "# operators\n\n" + line(a) + " alice@laptop\n" + `no-pty,command="x" ` + line(b) + "\n"
	keys, err := ParseAuthorizedKeys([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !keys[gossh.FingerprintSHA256(a)] || !keys[gossh.FingerprintSHA256(b)] {
		t.Errorf("got %v", keys)
	}
	_, err = ParseAuthorizedKeys([]byte(line(a) + "\nssh-ed25519 not-base64\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "line 2: not a public key") {
		t.Errorf("bad line: %v", err)
	}
}

func FuzzParseAuthorizedKeys(f *testing.F) {
	f.Add([]byte("# comment\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGBhYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3 x\n"))
	f.Add([]byte("no-pty ssh-rsa AAAA\n"))
	f.Add([]byte("\x00\xff\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseAuthorizedKeys(data)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\x00\x1b") {
				t.Fatalf("error echoes control bytes: %q", err)
			}
			return
		}
		for fp := range keys {
			if !strings.HasPrefix(fp, "SHA256:") {
				t.Fatalf("fingerprint %q", fp)
			}
		}
	})
}
