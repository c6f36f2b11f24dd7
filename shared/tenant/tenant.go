// Package tenant holds the domain types every function shares: the API key
// a request presents, the instance it opens, the upstream MCP servers
// behind that instance, and the request log entry each request leaves. It
// depends on nothing but the standard library.
package tenant

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"time"
)

// Transport is how the proxy reaches an upstream MCP server. The values are
// the ones stored in Postgres.
type Transport string

const (
	TransportStdio          Transport = "STDIO"
	TransportSSE            Transport = "SSE"
	TransportStreamableHTTP Transport = "STREAMABLE_HTTPS"
)

// ParseTransport accepts the stored value or the CLI spelling
// (stdio, sse, streamable-http).
func ParseTransport(s string) (Transport, error) {
	switch strings.ToLower(strings.ReplaceAll(s, "_", "-")) {
	case "stdio":
		return TransportStdio, nil
	case "sse":
		return TransportSSE, nil
	case "streamable-http", "streamable-https", "http":
		return TransportStreamableHTTP, nil
	}
	return "", errors.New("unknown transport " + quote(s) + " (want streamable-http, sse or stdio)")
}

// AuthType is the kind of credential the proxy presents to an upstream.
type AuthType string

const (
	AuthNone        AuthType = "NONE"
	AuthAPIKey      AuthType = "API_KEY"
	AuthOAuth       AuthType = "OAUTH"
	AuthCloudRunIAM AuthType = "CLOUD_RUN_IAM"
)

// ParseAuthType accepts the stored value or the CLI spelling
// (none, api-key, oauth, cloud-run-iam).
func ParseAuthType(s string) (AuthType, error) {
	switch strings.ToLower(strings.ReplaceAll(s, "_", "-")) {
	case "none", "":
		return AuthNone, nil
	case "api-key":
		return AuthAPIKey, nil
	case "oauth":
		return AuthOAuth, nil
	case "cloud-run-iam":
		return AuthCloudRunIAM, nil
	}
	return "", errors.New("unknown auth type " + quote(s) + " (want none, api-key, oauth or cloud-run-iam)")
}

// DefaultAPIKeyHeader is the header an API_KEY upstream receives its key in
// when its server declares no header names.
const DefaultAPIKeyHeader = "X-API-Key"

// Key is an API key as resolved from its hash: who it belongs to and
// whether it may be used. The key itself is never held.
type Key struct {
	ID             string
	Prefix         string // short display prefix, safe to log
	UserID         string
	OrganizationID string
	InstanceID     string
	Active         bool
	ExpiresAt      *time.Time
	InstanceGone   bool // the instance was deleted
	RateLimit      RateLimit
}

// RateLimit is a rate limit of a key or an instance: PerSecond requests a
// second on average, Burst at once. The zero value is no limit.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// Limited reports whether there is a limit.
func (r RateLimit) Limited() bool { return r.PerSecond > 0 }

// ErrNotFound is wrapped by errors about something that does not exist:
// an unknown key hash, a deleted row, a malformed ID. A store returns it
// so that its callers can tell "no such thing" from "cannot answer now".
var ErrNotFound = errors.New("not found")

// Errors that make a key unusable; Check returns one of them.
var (
	ErrKeyInactive     = errors.New("api key is revoked")
	ErrKeyExpired      = errors.New("api key has expired")
	ErrInstanceDeleted = errors.New("instance of the api key was deleted")
)

// Check tells whether the key may be used at now.
func (k *Key) Check(now time.Time) error {
	switch {
	case !k.Active:
		return ErrKeyInactive
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return ErrKeyExpired
	case k.InstanceGone:
		return ErrInstanceDeleted
	}
	return nil
}

// Instance is what one MCP endpoint exposes: each upstream once, with the
// tools its tool group allows.
type Instance struct {
	ID             string
	Name           string
	OrganizationID string
	Upstreams      []Upstream
	RateLimit      RateLimit
}

// Upstream is one configured MCP server of an instance, with decrypted
// credentials. It must never be logged whole.
type Upstream struct {
	ConfigID  string
	ServerID  string
	Name      string // the server's name, from which the namespace derives
	Transport Transport
	URL       string
	// AllowHTTP lets an operator send the credentials and calls of an
	// upstream at a plain http URL that is not a loopback address; without
	// it the upstream package refuses such a URL.
	AllowHTTP   bool
	Command     string
	Args        []string
	HeaderNames []string
	AuthType    AuthType
	// Credentials are the decrypted values of the config.
	Credentials Credentials
	// Tools are the upstream tool names the tool group allows, sorted.
	Tools []string
}

// Credentials are an upstream config's secrets: environment variables for
// stdio servers, header values for HTTP servers, and the OAuth client and
// tokens of an OAUTH server.
type Credentials struct {
	Env     map[string]string `json:"env,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	OAuth   *OAuthCredentials `json:"oauth,omitempty"`
}

// OAuthCredentials are what the proxy needs to present an OAuth access
// token to an upstream and to refresh it at the token endpoint.
type OAuthCredentials struct {
	TokenURL     string   `json:"token_url"`
	ClientID     string   `json:"client_id"`
	ClientSecret string   `json:"client_secret,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
	OAuthToken
}

// OAuthToken is the part of OAuthCredentials a refresh replaces.
type OAuthToken struct {
	AccessToken  string    `json:"access_token,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"` // zero: the token does not expire
}

// MaxNamespace is the longest namespace a server name may produce, leaving
// room in a 128-character tool name for the separator and the tool.
const MaxNamespace = 48

// Namespace derives the tool-name prefix from a server name: lower-cased,
// every character outside [a-z0-9-] replaced by '-'.
func Namespace(serverName string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(serverName))
}

func quote(s string) string { return "\"" + s + "\"" }

// KeyPrefixLen is how many leading characters of a key are kept for display.
const KeyPrefixLen = 12

// keyScheme starts every key, so that a leaked key is recognisable by
// secret scanners.
const keyScheme = "mcpk_"

// NewKey makes a random API key (32 random bytes in base64url behind the
// scheme) and returns it with its display prefix.
func NewKey() (key, prefix string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	key = keyScheme + base64.RawURLEncoding.EncodeToString(b[:])
	return key, DisplayPrefix(key), nil
}

// keyLen is the length of every key NewKey makes: the scheme and 32
// bytes in unpadded base64url.
var keyLen = len(keyScheme) + base64.RawURLEncoding.EncodedLen(32)

// notAKey stands for the prefix of a value that is not one of our keys.
const notAKey = "(not one of our keys)"

// DisplayPrefix is the part of a key that may be shown and logged. A
// value not shaped like one of our keys gets a placeholder: refused
// requests are logged with it, and a pasted password or another service's
// token must not leave its start in the logs.
func DisplayPrefix(key string) string {
	if !WellFormedKey(key) {
		return notAKey
	}
	return key[:KeyPrefixLen]
}

// WellFormedKey reports whether s has the shape of a key NewKey makes.
// Anything else is no key of ours: it is refused without a lookup, and
// nothing of it is logged.
func WellFormedKey(s string) bool {
	rest, ok := strings.CutPrefix(s, keyScheme)
	if !ok || len(s) != keyLen {
		return false
	}
	for _, c := range []byte(rest) {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// HashKey is the SHA-256 under which a key is stored and looked up.
func HashKey(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// IsUUID reports whether s is a UUID in its canonical text form (any
// case). IDs from outside are checked before they reach a query or a
// uuid column, so a malformed one is refused clearly instead of failing
// a cast.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}
