package oauth

import (
	"errors"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Verifier checks the access tokens a resource server is given. A token
// whose signature verified is kept by its text, so that a warm request
// spends no signature check; its claims are checked on every use.
type Verifier struct {
	keys   *Keys
	tokens *lru.Cache[string, *Claims]
}

// NewVerifier makes a verifier that keeps up to size verified tokens.
func NewVerifier(keys *Keys, size int) *Verifier {
	c, err := lru.New[string, *Claims](max(size, 1))
	if err != nil {
		panic(err) // only for a non-positive size, excluded
	}
	return &Verifier{keys: keys, tokens: c}
}

// Errors of Check about a token that verified.
var (
	ErrExpired  = errors.New("access token expired")
	ErrIssuer   = errors.New("access token of another issuer")
	ErrAudience = errors.New("access token for another resource")
	ErrScope    = errors.New("access token without the mcp scope")
)

// Check verifies token and that it is valid at now, from issuer, for the
// resource issuer+path, with the mcp scope.
func (v *Verifier) Check(token, issuer, path string, now time.Time) (*Claims, error) {
	c, ok := v.tokens.Get(token)
	if !ok {
		var err error
		if c, err = v.keys.Verify(token); err != nil {
			return nil, err
		}
		v.tokens.Add(token, c)
	}
	switch {
	case now.Unix() >= c.ExpiresAt:
		v.tokens.Remove(token)
		return nil, ErrExpired
	case c.Issuer != issuer:
		return nil, ErrIssuer
	case len(c.Audience) != len(issuer)+len(path) || !strings.HasPrefix(c.Audience, issuer) || !strings.HasSuffix(c.Audience, path):
		return nil, ErrAudience
	case !hasScope(c.Scope, Scope):
		return nil, ErrScope
	}
	return c, nil
}

// Scope is the one scope the proxy knows: use the instance's tools,
// prompts and resources.
const Scope = "mcp"

func hasScope(scopes, want string) bool {
	for s := range strings.FieldsSeq(scopes) {
		if s == want {
			return true
		}
	}
	return false
}
