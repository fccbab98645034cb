// Package hostkeys generates, loads and fingerprints the SSH server's host keys.
package hostkeys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	gossh "golang.org/x/crypto/ssh"
)

// Key is a loaded (or freshly generated) host key.
type Key struct {
	Path        string       // private key file
	Signer      gossh.Signer // signer to hand to the SSH server
	Type        string       // "ed25519", "ecdsa" or "rsa"
	Bits        int          // 256 for ed25519, 256/384/521 for ecdsa, modulus bits for rsa
	Fingerprint string       // "SHA256:" + unpadded base64, as printed by ssh-keygen -l
}

// AuthorizedKey returns the public key in authorized_keys form
// ("ssh-ed25519 AAAA..."), without a comment or trailing newline.
func (k Key) AuthorizedKey() string {
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k.Signer.PublicKey())))
}

const (
	// filePattern matches private host key file names; the public halves
	// (*.pub) do not match.
	filePattern = filePrefix + "*" + fileSuffix
	filePrefix  = "ssh_host_"
	fileSuffix  = "_key"

	// minLoadRSABits is the smallest RSA host key that is loaded at all;
	// OpenSSH clients refuse smaller keys (RequiredRSASize defaults to 1024).
	minLoadRSABits = 1024
	// minGenRSABits and maxGenRSABits bound the RSA keys Generate creates.
	minGenRSABits     = 2048
	defaultGenRSABits = 3072
	maxGenRSABits     = 16384

	keyComment = "chatd host key"
)

// keyFiles returns the private host key files in dir, sorted by name.
// A missing dir yields no files and no error.
func keyFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read host key dir: %w", err)
	}
	var paths []string
	for _, e := range entries {
		if ok, _ := filepath.Match(filePattern, e.Name()); !ok || e.IsDir() {
			continue
		}
		paths = append(paths, filepath.Join(dir, e.Name()))
	}
	return paths, nil // os.ReadDir sorts by name
}

// LoadDir loads every private host key in dir (files named ssh_host_*_key;
// *.pub and other files are ignored). When dir holds no key, it creates dir
// (mode 0700) if needed and generates an ed25519 key there
// (ssh_host_ed25519_key, mode 0600, plus its .pub); generated reports
// whether that happened. It never writes outside dir.
func LoadDir(dir string) (keys []Key, generated bool, err error) {
	if dir == "" {
		return nil, false, errors.New("load host keys: no directory given")
	}
	paths, err := keyFiles(dir)
	if err != nil {
		return nil, false, err
	}
	if len(paths) > 0 {
		keys, err := LoadFiles(paths)
		return keys, false, err
	}
	k, err := Generate(dir, "ed25519", 0, false)
	if errors.Is(err, fs.ErrExist) {
		// Another process generated the key meanwhile: use that one.
		keys, err := loadDirFiles(dir)
		return keys, false, err
	}
	if err != nil {
		return nil, false, err
	}
	return []Key{k}, true, nil
}

func loadDirFiles(dir string) ([]Key, error) {
	paths, err := keyFiles(dir)
	if err != nil {
		return nil, err
	}
	return LoadFiles(paths)
}

// LoadFiles loads the given private key files (for example
// /etc/ssh/ssh_host_ed25519_key). It never generates or writes anything.
// It refuses files that others can access, encrypted keys, public keys and
// anything it cannot parse, naming the file and the fix in the error.
func LoadFiles(paths []string) ([]Key, error) {
	if len(paths) == 0 {
		return nil, errors.New("load host keys: no key files given")
	}
	keys := make([]Key, 0, len(paths))
	byType := make(map[string]string, len(paths))
	for _, p := range paths {
		k, err := loadFile(p)
		if err != nil {
			return nil, err
		}
		// An SSH server offers one key per algorithm: a second one would silently replace the
		// first, and clients pinned to it would be told the host key changed.
		algo := k.Signer.PublicKey().Type()
		if other, dup := byType[algo]; dup {
			return nil, fmt.Errorf("host keys %s and %s are both %s: a server serves one key per type; remove or move one of them", other, p, k.Type)
		}
		byType[algo] = p
		keys = append(keys, k)
	}
	return keys, nil
}

func loadFile(path string) (Key, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Key{}, &hintError{
			msg: fmt.Sprintf("host key %s does not exist: check the path, or create it with ssh-keygen -t ed25519 -N '' -f %s", path, path),
			err: fs.ErrNotExist,
		}
	case err != nil:
		return Key{}, fmt.Errorf("host key %s: %w", path, err)
	case fi.IsDir():
		return Key{}, fmt.Errorf("host key %s is a directory, not a private key file", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("host key %s: %w", path, err)
	}

	// Check for a public key before the permission check: a .pub file is
	// normally 0644, and "chmod 600" would be the wrong advice for it.
	if isPublicKey(data) {
		hint := "point at the private key file instead (usually the same name without .pub)"
		if priv, ok := strings.CutSuffix(path, ".pub"); ok {
			hint = "use the private key " + priv + " instead"
		}
		return Key{}, fmt.Errorf("host key %s is a public key, not a private key: %s", path, hint)
	}

	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return Key{}, fmt.Errorf("host key %s is accessible by others (mode %04o): run chmod 600 %s",
			path, fi.Mode().Perm(), path)
	}

	raw, err := parsePrivateKey(data)
	var missing *gossh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return Key{}, fmt.Errorf("host key %s is encrypted (passphrase-protected), which is not supported for host keys: decrypt it with ssh-keygen -p -f %s and an empty new passphrase",
			path, path)
	case err != nil:
		if t := openSSHKeyType(data); t != "" && !supportedKeyType(t) {
			return Key{}, fmt.Errorf("host key %s: unsupported key type %s: use an ed25519, ecdsa or rsa key", path, t)
		}
		return Key{}, fmt.Errorf("host key %s: not a valid private key: %w", path, err)
	}
	k, err := newKey(path, raw)
	if err != nil {
		return Key{}, fmt.Errorf("host key %s: %w", path, err)
	}
	return k, nil
}

// isPublicKey reports whether data looks like a public key in any of the
// usual encodings: authorized_keys / .pub, RFC 4716, or PEM "PUBLIC KEY".
func isPublicKey(data []byte) bool {
	if _, _, _, _, err := gossh.ParseAuthorizedKey(data); err == nil {
		return true
	}
	s := strings.TrimSpace(string(data))
	if strings.HasPrefix(s, "---- BEGIN SSH2 PUBLIC KEY ----") {
		return true
	}
	if block, _ := pem.Decode(data); block != nil && strings.HasSuffix(block.Type, "PUBLIC KEY") {
		return true
	}
	return false
}

// parsePrivateKey parses an unencrypted private key in OpenSSH, PKCS#1,
// PKCS#8 or SEC1 PEM form. Encrypted keys yield *gossh.PassphraseMissingError.
func parsePrivateKey(data []byte) (any, error) {
	// openssl ecparam -genkey puts an "EC PARAMETERS" block before the key;
	// skip it so the key block is the one that gets parsed.
	if block, rest := pem.Decode(data); block != nil && block.Type == "EC PARAMETERS" {
		data = rest
	}
	if block, _ := pem.Decode(data); block != nil && block.Type == "ENCRYPTED PRIVATE KEY" {
		// Encrypted PKCS#8 (ssh-keygen -m PKCS8 with a passphrase).
		return nil, &gossh.PassphraseMissingError{}
	}
	return gossh.ParseRawPrivateKey(data)
}

// openSSHKeyType returns the key type ("ssh-dss", "sk-ssh-ed25519@openssh.com",
// ...) recorded in the unencrypted header of an OpenSSH-format private key,
// or "" if data is not such a key.
func openSSHKeyType(data []byte) string {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "OPENSSH PRIVATE KEY" {
		return ""
	}
	body, ok := bytes.CutPrefix(block.Bytes, []byte("openssh-key-v1\x00"))
	if !ok {
		return ""
	}
	var header struct {
		CipherName, KDFName, KDFOptions string
		NumKeys                         uint32
		PubKey                          []byte
		Rest                            []byte `ssh:"rest"`
	}
	if gossh.Unmarshal(body, &header) != nil {
		return ""
	}
	var pub struct {
		Type string
		Rest []byte `ssh:"rest"`
	}
	if gossh.Unmarshal(header.PubKey, &pub) != nil {
		return ""
	}
	return pub.Type
}

func supportedKeyType(t string) bool {
	return t == gossh.KeyAlgoED25519 || t == gossh.KeyAlgoRSA || strings.HasPrefix(t, "ecdsa-sha2-nistp")
}

// newKey builds a Key from a parsed private key.
func newKey(path string, raw any) (Key, error) {
	var typ string
	var bits int
	switch pk := raw.(type) {
	case *ed25519.PrivateKey:
		return newKey(path, *pk)
	case ed25519.PrivateKey:
		typ, bits = "ed25519", 256
	case *ecdsa.PrivateKey:
		typ, bits = "ecdsa", pk.Curve.Params().BitSize
	case *rsa.PrivateKey:
		typ, bits = "rsa", pk.N.BitLen()
		if bits < minLoadRSABits {
			return Key{}, fmt.Errorf("rsa key is only %d bits, too small to be accepted by ssh clients: generate a new key (chatd hostkeys generate)", bits)
		}
	default:
		return Key{}, fmt.Errorf("unsupported key type %T: use an ed25519, ecdsa or rsa key", raw)
	}
	signer, err := gossh.NewSignerFromKey(raw)
	if err != nil {
		return Key{}, err
	}
	return Key{
		Path:        path,
		Signer:      signer,
		Type:        typ,
		Bits:        bits,
		Fingerprint: gossh.FingerprintSHA256(signer.PublicKey()),
	}, nil
}

// KnownHostsLine returns a known_hosts line for k at host and port:
// "host keytype base64" when port is 22 (or 0), "[host]:port keytype base64"
// otherwise. An IPv6 host may be given with or without brackets.
func KnownHostsLine(host string, port int, k Key) string {
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	entry := host
	if port != 22 && port != 0 {
		entry = "[" + host + "]:" + strconv.Itoa(port)
	}
	return entry + " " + k.AuthorizedKey()
}

// SSHFP returns the DNS SSHFP resource record for k with its SHA-256
// fingerprint, in the format of ssh-keygen -r:
// "HOST IN SSHFP <alg> 2 <hex>" (alg 1 = rsa, 3 = ecdsa, 4 = ed25519).
func SSHFP(host string, k Key) string {
	pub := k.Signer.PublicKey()
	alg := 0 // unknown; not produced for keys this package loads
	switch t := pub.Type(); {
	case t == gossh.KeyAlgoRSA:
		alg = 1
	case strings.HasPrefix(t, "ecdsa-sha2-"):
		alg = 3
	case t == gossh.KeyAlgoED25519:
		alg = 4
	}
	sum := sha256.Sum256(pub.Marshal())
	return fmt.Sprintf("%s IN SSHFP %d 2 %s", host, alg, hex.EncodeToString(sum[:]))
}
