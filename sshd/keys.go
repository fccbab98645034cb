package sshd

import (
	"fmt"
	"strings"

	gossh "golang.org/x/crypto/ssh"

	"chatd/room/store"
)

// StoreKey describes an SSH public key the way the room's store keeps it.
func StoreKey(pk gossh.PublicKey) store.Key {
	return store.Key{
		Fingerprint:   gossh.FingerprintSHA256(pk),
		Type:          pk.Type(),
		AuthorizedKey: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk))),
	}
}

// ParseAuthorizedKey reads one authorized_keys line ("ssh-ed25519 AAAA... comment"), for the
// room's /keys add. Options and the comment are ignored.
func ParseAuthorizedKey(line string) (store.Key, error) {
	pk, _, _, rest, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return store.Key{}, fmt.Errorf("parse key: %w", err)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return store.Key{}, fmt.Errorf("parse key: one key per line")
	}
	return StoreKey(pk), nil
}
