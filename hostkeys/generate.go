package hostkeys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	gossh "golang.org/x/crypto/ssh"
)

// Generate writes a new host key of type typ into dir as ssh_host_<typ>_key
// (OpenSSH private key format, mode 0600) plus ssh_host_<typ>_key.pub, and
// returns it. dir is created (mode 0700) if missing.
//
// typ is "ed25519" (the default when empty), "ecdsa" or "rsa". bits 0 picks
// the default size: ecdsa takes 256 (default), 384 or 521; rsa takes 2048 to
// 16384 (default 3072); ed25519 is always 256.
//
// Generate refuses to replace an existing key unless force is true; that
// error matches fs.ErrExist (errors.Is). Files are written to a temporary name and then
// moved into place, so a key file is never left half-written.
func Generate(dir, typ string, bits int, force bool) (Key, error) {
	if dir == "" {
		return Key{}, errors.New("generate host key: no directory given")
	}
	if typ == "" {
		typ = "ed25519"
	}
	newPriv, _, err := keyGenerator(typ, bits)
	if err != nil {
		return Key{}, fmt.Errorf("generate host key: %w", err)
	}

	path := filepath.Join(dir, filePrefix+typ+fileSuffix)
	// Fail before the (for big rsa keys, slow) key generation.
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return Key{}, existsError(path)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Key{}, fmt.Errorf("create host key dir: %w", err)
	}

	priv, err := newPriv()
	if err != nil {
		return Key{}, fmt.Errorf("generate %s host key: %w", typ, err)
	}
	k, err := newKey(path, priv)
	if err != nil {
		return Key{}, fmt.Errorf("generate %s host key: %w", typ, err)
	}
	block, err := gossh.MarshalPrivateKey(priv, keyComment)
	if err != nil {
		return Key{}, fmt.Errorf("encode %s host key: %w", typ, err)
	}
	privPEM := pem.EncodeToMemory(block)
	pub := []byte(k.AuthorizedKey() + " " + keyComment + "\n")
	if err := writeKeyFiles(path, privPEM, pub, force); err != nil {
		return Key{}, err
	}
	return k, nil
}

// keyGenerator validates typ and bits and returns a function generating
// such a key, along with the effective bit size.
func keyGenerator(typ string, bits int) (func() (crypto.Signer, error), int, error) {
	switch typ {
	case "ed25519":
		if bits != 0 && bits != 256 {
			return nil, 0, fmt.Errorf("ed25519 keys are always 256 bits, not %d: leave --bits unset", bits)
		}
		return func() (crypto.Signer, error) {
			_, pk, err := ed25519.GenerateKey(rand.Reader)
			return pk, err
		}, 256, nil
	case "ecdsa":
		var curve elliptic.Curve
		switch bits {
		case 0, 256:
			curve, bits = elliptic.P256(), 256
		case 384:
			curve = elliptic.P384()
		case 521:
			curve = elliptic.P521()
		default:
			return nil, 0, fmt.Errorf("invalid ecdsa key size %d: use 256, 384 or 521", bits)
		}
		return func() (crypto.Signer, error) {
			return ecdsa.GenerateKey(curve, rand.Reader)
		}, bits, nil
	case "rsa":
		switch {
		case bits == 0:
			bits = defaultGenRSABits
		case bits < minGenRSABits:
			return nil, 0, fmt.Errorf("rsa key size %d is too small: use at least %d bits (%d recommended)",
				bits, minGenRSABits, defaultGenRSABits)
		case bits > maxGenRSABits:
			return nil, 0, fmt.Errorf("rsa key size %d is too large: the maximum is %d bits", bits, maxGenRSABits)
		}
		return func() (crypto.Signer, error) {
			return rsa.GenerateKey(rand.Reader, bits)
		}, bits, nil
	default:
		return nil, 0, fmt.Errorf("unknown key type %q: use ed25519, ecdsa or rsa", typ)
	}
}

func existsError(path string) error {
	return &hintError{
		msg: fmt.Sprintf("host key %s already exists: use --force to overwrite it (clients that trusted the old key will then warn that the host key changed)", path),
		err: fs.ErrExist,
	}
}

// hintError is an error whose message already says everything (file and
// fix) but which still matches a sentinel such as fs.ErrExist with errors.Is.
type hintError struct {
	msg string
	err error
}

func (e *hintError) Error() string { return e.msg }
func (e *hintError) Unwrap() error { return e.err }

// writeKeyFiles atomically installs priv at path (mode 0600) and pub at
// path+".pub" (mode 0644). Without force an existing path is never replaced,
// even if it appears while the key is being written.
func writeKeyFiles(path string, priv, pub []byte, force bool) error {
	dir := filepath.Dir(path)
	privTmp, err := writeTemp(dir, priv, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(privTmp) // after Link the temporary name must go too
	pubTmp, err := writeTemp(dir, pub, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(pubTmp)

	if force {
		if err := os.Rename(privTmp, path); err != nil {
			return fmt.Errorf("write host key: %w", err)
		}
	} else if err := os.Link(privTmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return existsError(path)
		}
		// No hard links on this file system: fall back to check-then-rename.
		if _, err := os.Lstat(path); err == nil {
			return existsError(path)
		}
		if err := os.Rename(privTmp, path); err != nil {
			return fmt.Errorf("write host key: %w", err)
		}
	}
	if err := os.Rename(pubTmp, path+".pub"); err != nil {
		return fmt.Errorf("write host public key: %w", err)
	}
	syncDir(dir)
	return nil
}

// writeTemp writes data to a new hidden temporary file in dir (a name that
// LoadDir ignores) with the given mode, syncs it and returns its name.
func writeTemp(dir string, data []byte, mode fs.FileMode) (name string, err error) {
	f, err := os.CreateTemp(dir, ".ssh_host_tmp_*")
	if err != nil {
		return "", fmt.Errorf("write host key: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return "", fmt.Errorf("write host key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("write host key: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("write host key: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write host key: %w", err)
	}
	return f.Name(), nil
}

// syncDir makes the new directory entries durable, so a crash right after
// generation does not lose the key (and change the server's identity).
// Errors are ignored: some systems cannot sync directories.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
