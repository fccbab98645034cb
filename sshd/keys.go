package sshd

import (
	"fmt"
	"os"
	"strings"

	"chatd/chat"

	gossh "golang.org/x/crypto/ssh"
)

// StoreKey describes an SSH public key the way the room's store keeps it.
func StoreKey(pk gossh.PublicKey) chat.Key {
	return chat.Key{
		Fingerprint:   gossh.FingerprintSHA256(pk),
		Type:          pk.Type(),
		AuthorizedKey: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk))),
	}
}

// ParseAuthorizedKey reads one authorized_keys line ("ssh-ed25519 AAAA... comment"), for the
// room's /keys add. Options and the comment are ignored.
func ParseAuthorizedKey(line string) (chat.Key, error) {
	pk, _, _, rest, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return chat.Key{}, fmt.Errorf("parse key: %w", err)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return chat.Key{}, fmt.Errorf("parse key: one key per line")
	}
	return StoreKey(pk), nil
}

// ParseAuthorizedKeys reads a file in authorized_keys format (one key a line; blank lines and
// # comments skipped; options before the key allowed and ignored) into the set of its keys'
// fingerprints. An unreadable line is an error naming its number.
func ParseAuthorizedKeys(data []byte) (map[string]bool, error) {
	keys := make(map[string]bool)
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("line %d: not a public key: %s", n+1, strings.TrimPrefix(err.Error(), "ssh: "))
		}
		keys[gossh.FingerprintSHA256(pk)] = true
	}
	return keys, nil
}

// LoadAuthorizedKeys reads an authorized_keys file (for --ops and --allow).
func LoadAuthorizedKeys(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	keys, err := ParseAuthorizedKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}
