// Package keyring encrypts upstream credentials at rest with AES-256-GCM.
//
// A keyring holds one or more 32-byte keys, each with an ID. The first key
// encrypts; any key decrypts what was sealed under its ID, so keys can be
// rotated: put the new key first, keep the old one until every value is
// re-encrypted (mcpadmin config reencrypt), then drop it.
//
// A sealed value is: version byte (1), key ID length (1 byte), key ID,
// 12-byte nonce, ciphertext with the GCM tag. The caller's additional data
// (for example the row ID) binds a value to its place, so a ciphertext
// copied to another row does not decrypt.
package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// DefaultKeyID is the ID of a key given without one.
const DefaultKeyID = "default"

const version = 1

// Keyring seals and opens values. The zero value has no key and fails.
type Keyring struct {
	ids   []string
	aeads map[string]cipher.AEAD
	raw   map[string][]byte // for Derive
}

// ErrNoKey is returned when the keyring is empty.
var ErrNoKey = errors.New("no encryption key configured (set MCP_ENCRYPTION_KEY, or MCP_ENCRYPTION_KEY_FILE, to base64 of 32 bytes)")

// Parse reads a key specification: base64 of 32 bytes, or a comma-separated
// list of keyid:base64 where the first entry encrypts. An entry without an
// ID gets DefaultKeyID.
func Parse(spec string) (*Keyring, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, ErrNoKey
	}
	k := &Keyring{aeads: map[string]cipher.AEAD{}, raw: map[string][]byte{}}
	for i, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		id, b64, found := strings.Cut(entry, ":")
		if !found {
			id, b64 = DefaultKeyID, entry
		}
		if id == "" || len(id) > 255 {
			return nil, fmt.Errorf("encryption key %d: key id must be 1 to 255 characters", i+1)
		}
		if _, dup := k.aeads[id]; dup {
			return nil, fmt.Errorf("encryption key %d: key id %q appears twice", i+1, id)
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("encryption key %q: not valid base64", id)
		}
		if len(raw) != 32 {
			return nil, fmt.Errorf("encryption key %q: %d bytes, want 32", id, len(raw))
		}
		aead, err := newAEAD(raw)
		if err != nil {
			return nil, fmt.Errorf("encryption key %q: %w", id, err)
		}
		k.ids = append(k.ids, id)
		k.aeads[id] = aead
		k.raw[id] = raw
	}
	return k, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// PrimaryID is the ID of the key that encrypts.
func (k *Keyring) PrimaryID() string {
	if k == nil || len(k.ids) == 0 {
		return ""
	}
	return k.ids[0]
}

// Seal encrypts plaintext under the primary key, bound to additionalData.
func (k *Keyring) Seal(plaintext, additionalData []byte) ([]byte, error) {
	id := k.PrimaryID()
	if id == "" {
		return nil, ErrNoKey
	}
	if len(plaintext) > 64<<20 {
		return nil, errors.New("seal: value larger than 64 MiB")
	}
	aead := k.aeads[id]
	out := make([]byte, 0, 2+len(id)+aead.NonceSize()+len(plaintext)+aead.Overhead())
	out = append(out, version, byte(len(id)))
	out = append(out, id...)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: read nonce: %w", err)
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plaintext, additionalData), nil
}

// KeyID returns the ID of the key a sealed value was encrypted with.
func KeyID(sealed []byte) (string, error) {
	if len(sealed) < 2 || sealed[0] != version {
		return "", errors.New("not a sealed value of a known version")
	}
	n := int(sealed[1])
	if len(sealed) < 2+n {
		return "", errors.New("sealed value is truncated")
	}
	return string(sealed[2 : 2+n]), nil
}

// Open decrypts a value sealed by Seal with the same additionalData. A value
// sealed under a key the keyring lacks, or under different key bytes with
// the same ID, is an error that says so, never garbage.
func (k *Keyring) Open(sealed, additionalData []byte) ([]byte, error) {
	id, err := KeyID(sealed)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if k == nil {
		return nil, ErrNoKey
	}
	aead, ok := k.aeads[id]
	if !ok {
		return nil, fmt.Errorf("open: value was encrypted with key %q, which is not configured", id)
	}
	rest := sealed[2+len(id):]
	if len(rest) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("open: sealed value is truncated")
	}
	nonce, ciphertext := rest[:aead.NonceSize()], rest[aead.NonceSize():]
	plain, err := aead.Open(nil, nonce, ciphertext, additionalData)
	if err != nil {
		return nil, fmt.Errorf("open: authentication failed with key %q: wrong key, or the value was altered or moved", id)
	}
	return plain, nil
}

// Derive returns a 32-byte key for purpose, made with HKDF-SHA256 from
// the primary key's bytes: a secret the deployment already has serves
// other uses (sealing the proxy's own short-lived tokens) without being
// used for two things at once. A new primary key derives a new key, so
// what was sealed under the old one stops opening.
func (k *Keyring) Derive(purpose string) ([]byte, error) {
	id := k.PrimaryID()
	if id == "" {
		return nil, ErrNoKey
	}
	return hkdf.Key(sha256.New, k.raw[id], []byte("mcp-proxy keyring "+id), purpose, 32)
}
