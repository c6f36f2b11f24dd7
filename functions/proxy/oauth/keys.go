package oauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Keys are the Ed25519 keys access tokens are signed with. The first
// signs; every key verifies and is published in the JWKS, so a key is
// rotated with an overlap: put a new key first, keep the old one for
// longer than an access token lives, then drop it.
type Keys struct {
	ids    []string
	signer ed25519.PrivateKey
	public map[string]ed25519.PublicKey
	jwks   []byte
	macKey []byte // signs sign-in state (signin.go)
}

// ErrNoKeys is the error of an empty key specification.
var ErrNoKeys = errors.New("no OAuth signing key (set OAUTH_SIGNING_KEYS, or OAUTH_SIGNING_KEYS_FILE, to keyid:base64 of a 32-byte Ed25519 seed)")

// ParseKeys reads a key specification: a comma-separated list of
// keyid:base64 (standard or URL alphabet) of 32-byte Ed25519 seeds, the
// first of which signs.
func ParseKeys(spec string) (*Keys, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, ErrNoKeys
	}
	k := &Keys{public: map[string]ed25519.PublicKey{}}
	var jwks struct {
		Keys []map[string]string `json:"keys"`
	}
	for i, entry := range strings.Split(spec, ",") {
		id, b64, found := strings.Cut(strings.TrimSpace(entry), ":")
		if !found || id == "" || len(id) > 64 || strings.ContainsAny(id, "\"\\") {
			return nil, fmt.Errorf("OAuth signing key %d: want keyid:base64 with a key id of 1 to 64 characters", i+1)
		}
		if _, dup := k.public[id]; dup {
			return nil, fmt.Errorf("OAuth signing key %d: key id %q appears twice", i+1, id)
		}
		seed, err := decodeB64(b64)
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("OAuth signing key %d (%s): want base64 of %d bytes", i+1, id, ed25519.SeedSize)
		}
		priv := ed25519.NewKeyFromSeed(seed)
		if i == 0 {
			k.signer, k.macKey = priv, macKey(priv)
		}
		pub := priv.Public().(ed25519.PublicKey)
		k.ids = append(k.ids, id)
		k.public[id] = pub
		jwks.Keys = append(jwks.Keys, map[string]string{"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
			"kid": id, "x": base64.RawURLEncoding.EncodeToString(pub)})
	}
	k.jwks, _ = json.Marshal(jwks)
	return k, nil
}

// NewKeySpec makes a specification of one new random key with the given
// ID, for make dev and the tests.
func NewKeySpec(id string) string {
	seed := make([]byte, ed25519.SeedSize)
	rand.Read(seed)
	return id + ":" + base64.StdEncoding.EncodeToString(seed)
}

// JWKS is the public keys as a JSON Web Key Set (RFC 7517, RFC 8037).
func (k *Keys) JWKS() []byte { return k.jwks }

func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}
