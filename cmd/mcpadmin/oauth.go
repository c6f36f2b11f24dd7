package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// maxTokensBytes bounds the secrets read from stdin or a file.
const maxTokensBytes = 64 << 10

// oauthSecrets are the secrets of `config oauth`, read as JSON: a token
// endpoint's answer (access_token, refresh_token, token_type, expires_in,
// with scope and id_token ignored) plus client_secret, or expiry instead
// of expires_in.
type oauthSecrets struct {
	ClientSecret string     `json:"client_secret"`
	AccessToken  string     `json:"access_token"`
	RefreshToken string     `json:"refresh_token"`
	TokenType    string     `json:"token_type"`
	ExpiresIn    *int64     `json:"expires_in"`
	Expiry       *time.Time `json:"expiry"`
	Scope        string     `json:"scope"`    // of a pasted token answer; --scopes decides
	IDToken      string     `json:"id_token"` // of a pasted token answer; not used
}

func configOAuth(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	configID := fs.String("config", "", "config ID")
	serverID := fs.String("server", "", "server ID of the config (an OAUTH server)")
	tokenURL := fs.String("token-url", "", "the OAuth token endpoint (https; http only on a loopback address)")
	clientID := fs.String("client-id", "", "OAuth client ID")
	scopes := fs.String("scopes", "", "comma-separated scopes to ask for when refreshing (default: none)")
	tokensFile := fs.String("tokens-file", "", "JSON file with the secrets (default: stdin)")
	if err := parse(fs, args, "config", "server", "token-url", "client-id"); err != nil {
		return err
	}
	if err := checkTokenURL(*tokenURL); err != nil {
		return usageError(err.Error())
	}
	in, source := a.stdin, "stdin"
	if *tokensFile != "" {
		f, err := os.Open(*tokensFile)
		if err != nil {
			return fmt.Errorf("read --tokens-file: %w", err)
		}
		defer f.Close()
		in, source = f, *tokensFile
	}
	secrets, err := readOAuthSecrets(in)
	if err != nil {
		return usageError(fmt.Sprintf("config oauth: secrets from %s: %v", source, err))
	}
	creds := tenant.OAuthCredentials{TokenURL: *tokenURL, ClientID: *clientID, ClientSecret: secrets.ClientSecret,
		OAuthToken: tenant.OAuthToken{AccessToken: secrets.AccessToken, RefreshToken: secrets.RefreshToken, TokenType: secrets.TokenType}}
	for s := range strings.SplitSeq(*scopes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			creds.Scopes = append(creds.Scopes, s)
		}
	}
	switch {
	case secrets.ExpiresIn != nil:
		creds.Expiry = time.Now().Add(time.Duration(*secrets.ExpiresIn) * time.Second).UTC().Truncate(time.Second)
	case secrets.Expiry != nil:
		creds.Expiry = secrets.Expiry.UTC()
	}
	db, err := a.store(ctx)
	if err != nil {
		return err
	}
	status, err := db.SetOAuth(ctx, *configID, *serverID, creds)
	if err != nil {
		return friendly(err)
	}
	if creds.RefreshToken == "" {
		a.note("No refresh token: once the access token expires, the upstream needs new tokens again.")
	}
	expires := "never"
	if status.Expiry != nil {
		expires = status.Expiry.Format(time.RFC3339)
	}
	refresh := "no"
	if status.HasRefreshToken {
		refresh = "yes"
	}
	return a.print(map[string]any{"config_id": *configID, "oauth": status},
		[]string{"CONFIG", "TOKEN URL", "CLIENT ID", "SCOPES", "REFRESH TOKEN", "ACCESS TOKEN EXPIRES"},
		[][]string{{*configID, status.TokenURL, status.ClientID, orDash(strings.Join(status.Scopes, ",")), refresh, expires}})
}

// checkTokenURL accepts an https URL, or http on a loopback address (a
// local token endpoint): the client secret and refresh token travel to it.
func checkTokenURL(raw string) error {
	u, err := url.Parse(raw)
	if err == nil && u.Host != "" && (u.Scheme == "https" || u.Scheme == "http" && loopback(u.Hostname())) {
		return nil
	}
	return fmt.Errorf("--token-url %q: want an absolute https URL (http only on a loopback address)", raw)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readOAuthSecrets decodes and checks the secrets. Its errors name fields
// and positions, never values: a malformed secret is not echoed.
func readOAuthSecrets(r io.Reader) (oauthSecrets, error) {
	var s oauthSecrets
	data, err := io.ReadAll(io.LimitReader(r, maxTokensBytes+1))
	if err != nil {
		return s, err
	}
	if len(data) > maxTokensBytes {
		return s, fmt.Errorf("more than %d bytes", maxTokensBytes)
	}
	if strings.TrimSpace(string(data)) == "" {
		return s, errors.New("nothing to read: give the secrets as one JSON object")
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntax):
			return s, fmt.Errorf("invalid JSON at byte %d", syntax.Offset)
		case errors.As(err, &typ):
			return s, fmt.Errorf("%s has the wrong type (want %s)", typ.Field, typ.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return s, fmt.Errorf("%s (want client_secret, access_token, refresh_token, token_type, expires_in or expiry)",
				strings.TrimPrefix(err.Error(), "json: "))
		case errors.Is(err, io.ErrUnexpectedEOF):
			return s, errors.New("the JSON object is cut short")
		}
		return s, errors.New("not one JSON object")
	}
	if dec.More() {
		return s, errors.New("more than one JSON value")
	}
	switch {
	case s.AccessToken == "" && s.RefreshToken == "":
		return s, errors.New("neither access_token nor refresh_token is given")
	case s.ExpiresIn != nil && s.Expiry != nil:
		return s, errors.New("give expires_in or expiry, not both")
	case s.ExpiresIn != nil && *s.ExpiresIn <= 0:
		return s, errors.New("expires_in must be a positive number of seconds")
	}
	return s, nil
}
