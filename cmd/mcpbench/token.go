package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

// tokenTarget is the proxy target reached with an OAuth access token
// instead of its API key: the same process, which runs the authorization
// server (docs/oauth.md).
const tokenTarget = "proxy-token"

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// accessToken gets an access token for base+"/mcp" by the authorization
// code flow a client and its user go through: registration, the consent
// page answered with key, the token request.
func accessToken(ctx context.Context, base, key string) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, u, contentType, body string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
		if err != nil {
			return nil, nil, err
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp, b, err
	}
	const redirect = "http://127.0.0.1/callback"
	resp, body, err := do(http.MethodPost, base+"/oauth/register", "application/json", `{"client_name":"mcpbench","redirect_uris":["`+redirect+`"]}`)
	if err != nil || resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("register: %v %s", err, body)
	}
	var reg struct {
		ClientID string `json:"client_id"`
	}
	json.Unmarshal(body, &reg)
	var v [32]byte
	rand.Read(v[:])
	verifier := base64.RawURLEncoding.EncodeToString(v[:])
	sum := sha256.Sum256([]byte(verifier))
	params := url.Values{"response_type": {"code"}, "client_id": {reg.ClientID}, "redirect_uri": {redirect}, "state": {"bench"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}, "resource": {base + "/mcp"}}
	resp, body, err = do(http.MethodGet, base+"/oauth/authorize?"+params.Encode(), "", "")
	m := csrfField.FindSubmatch(body)
	if err != nil || resp.StatusCode != http.StatusOK || m == nil {
		return "", fmt.Errorf("consent page: %v %d", err, statusOf(resp))
	}
	form := url.Values{"csrf": {string(m[1])}, "api_key": {key}, "decision": {"allow"}}
	for k, vs := range params {
		form[k] = vs
	}
	resp, _, err = do(http.MethodPost, base+"/oauth/authorize", "application/x-www-form-urlencoded", form.Encode())
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		return "", fmt.Errorf("consent: %v %d", err, statusOf(resp))
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || back.Query().Get("code") == "" {
		return "", fmt.Errorf("consent sent back to %q", resp.Header.Get("Location"))
	}
	tok := url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")}, "redirect_uri": {redirect},
		"code_verifier": {verifier}, "client_id": {reg.ClientID}}
	resp, body, err = do(http.MethodPost, base+"/oauth/token", "application/x-www-form-urlencoded", tok.Encode())
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token: %v %s", err, body)
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	json.Unmarshal(body, &out)
	return out.AccessToken, nil
}

func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}
