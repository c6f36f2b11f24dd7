package oauth

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// Access tokens are JWTs (RFC 9068) signed with EdDSA (Ed25519). They are
// made and checked here by hand rather than with a JOSE library: the
// proxy both signs and verifies, with one algorithm and one header shape,
// so there is nothing to negotiate, and a token whose header is not
// exactly that shape is refused before any key is used (no "alg"
// confusion, no "none").

// Claims are what an access token says.
type Claims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"` // the user
	Audience  string `json:"aud"` // the resource URL (RFC 8707)
	ExpiresAt int64  `json:"exp"` // unix seconds
	IssuedAt  int64  `json:"iat"` // unix seconds
	ID        string `json:"jti"` // random
	ClientID  string `json:"client_id"`
	Scope     string `json:"scope"`
	Grant     string `json:"grant_id"` // the grant, whose status the proxy checks
}

type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

// maxTokenBytes bounds a token before it is decoded.
const maxTokenBytes = 4096

// Sign makes a token of claims with the signing key.
func (k *Keys) Sign(c *Claims) string {
	h, _ := json.Marshal(header{Alg: "EdDSA", Typ: "at+jwt", Kid: k.ids[0]})
	p, _ := json.Marshal(c)
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	return signed + "." + enc.EncodeToString(ed25519.Sign(k.signer, []byte(signed)))
}

// Errors of Verify.
var (
	ErrMalformed = errors.New("not an access token of this server")
	ErrSignature = errors.New("access token signature does not verify")
)

// Verify checks a token's header and signature and returns its claims;
// what the claims say is the caller's to check.
func (k *Keys) Verify(token string) (*Claims, error) {
	if len(token) > maxTokenBytes {
		return nil, ErrMalformed
	}
	h64, rest, ok1 := strings.Cut(token, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return nil, ErrMalformed
	}
	// Strict: one token text per signed token, so that no variant of a
	// token (other unused bits in its last characters) verifies too.
	enc := base64.RawURLEncoding.Strict()
	hb, err := enc.DecodeString(h64)
	if err != nil {
		return nil, ErrMalformed
	}
	var h header
	dec := json.NewDecoder(bytes.NewReader(hb))
	dec.DisallowUnknownFields()
	if dec.Decode(&h) != nil || h.Alg != "EdDSA" || h.Typ != "at+jwt" {
		return nil, ErrMalformed
	}
	pub, ok := k.public[h.Kid]
	if !ok {
		return nil, ErrSignature
	}
	sig, err := enc.DecodeString(s64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, ErrMalformed
	}
	if !ed25519.Verify(pub, []byte(token[:len(h64)+1+len(p64)]), sig) {
		return nil, ErrSignature
	}
	pb, err := enc.DecodeString(p64)
	if err != nil {
		return nil, ErrMalformed
	}
	var c Claims
	if json.Unmarshal(pb, &c) != nil {
		return nil, ErrMalformed
	}
	return &c, nil
}

// LooksLikeJWT reports whether a bearer credential has a JWT's shape: the
// proxy's API keys never do.
func LooksLikeJWT(s string) bool {
	return strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2
}
