package tenant

import (
	"errors"
	"time"
)

// Grant is an OAuth grant as the proxy resolves an access token's: what a
// user allowed a client, and whether that still stands. Its Key is the
// caller the proxy serves for the grant's tokens.
type Grant struct {
	ID       string
	ClientID string
	// Key is the grant's identity on the request path: its ID is the
	// grant's (requests in flight are tracked by it), its user,
	// organization and instance the grant's. It is no API key.
	Key Key
	// APIKeyID is the key a grant made by pasting a key is bound to, ""
	// for one made by signing in.
	APIKeyID     string
	Revoked      bool
	KeyActive    bool       // of the bound key; true without one
	KeyExpiresAt *time.Time // of the bound key
}

// Errors that make a grant unusable; Check returns one of them.
var (
	ErrGrantRevoked = errors.New("the grant was revoked")
	ErrGrantKey     = errors.New("the api key the grant is bound to is revoked or expired")
	// ErrReused is the error of an authorization code or a replaced
	// refresh token presented again; its grant is revoked.
	ErrReused = errors.New("used before; the grant is revoked")
)

// Check tells whether the grant's tokens may be used at now.
func (g *Grant) Check(now time.Time) error {
	switch {
	case g.Revoked:
		return ErrGrantRevoked
	case !g.KeyActive || g.KeyExpiresAt != nil && !now.Before(*g.KeyExpiresAt):
		return ErrGrantKey
	case g.Key.InstanceGone:
		return ErrInstanceDeleted
	}
	return nil
}
