package tcp

import (
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"chatd/chat"
	"chatd/room"
	"chatd/store/sqlite"
)

// A name registered to an SSH key is not for TCP users; the connection may pick another name.
func TestRegisteredNamesAreRefused(t *testing.T) {
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "chat.db")
	st, err := sqlite.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rm := newRoom(t, room.Config{Store: st})
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := rm.Authorize("alice", chat.Key{Fingerprint: gossh.FingerprintSHA256(pk), Type: pk.Type(), AuthorizedKey: string(gossh.MarshalAuthorizedKey(pk))}); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, testConfig(), rm)

	p := dialRaw(t, srv.addr)
	p.waitLine(greeting)
	p.send("ALICE")
	p.waitLine(`error: name "alice" is registered to a key: log in over SSH with one of its keys`)
	p.send("alice2")
	p.waitLine(welcome("alice2"))
}
