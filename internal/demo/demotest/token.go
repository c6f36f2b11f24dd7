package demotest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
)

// TokenEndpoint is an OAuth token endpoint for one client: it exchanges
// any refresh token for numbered new tokens valid for an hour
// (access-token-2 and refresh-token-2 the first time: a test stores
// number 1), or refuses with invalid_grant while refusing.
type TokenEndpoint struct {
	// URL is the token URL.
	URL string

	mu        sync.Mutex
	refuse    bool
	refreshes []string // the refresh tokens presented
}

// StartTokenEndpoint starts an endpoint that knows only the client
// clientID with clientSecret, stopped when the test ends.
func StartTokenEndpoint(t testing.TB, clientID, clientSecret string) *TokenEndpoint {
	te := &TokenEndpoint{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		id, secret, _ := r.BasicAuth()
		w.Header().Set("Content-Type", "application/json")
		if r.Form.Get("grant_type") != "refresh_token" || id != clientID || secret != clientSecret {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		te.mu.Lock()
		te.refreshes = append(te.refreshes, r.Form.Get("refresh_token"))
		n := len(te.refreshes) + 1
		refuse := te.refuse
		te.mu.Unlock()
		if refuse {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"invalid_grant","error_description":"refresh token revoked"}`))
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("access-token-%d", n), "token_type": "Bearer",
			"expires_in": 3600, "refresh_token": fmt.Sprintf("refresh-token-%d", n)})
	}))
	t.Cleanup(srv.Close)
	te.URL = srv.URL + "/token"
	return te
}

// Refuse makes the endpoint answer invalid_grant (true) or exchange
// tokens (false).
func (te *TokenEndpoint) Refuse(refuse bool) {
	te.mu.Lock()
	te.refuse = refuse
	te.mu.Unlock()
}

// Presented are the refresh tokens presented, in order.
func (te *TokenEndpoint) Presented() []string {
	te.mu.Lock()
	defer te.mu.Unlock()
	return slices.Clone(te.refreshes)
}
