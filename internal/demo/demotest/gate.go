package demotest

import (
	"net/http"
	"sync"
)

// Gate stands in front of an upstream handler: it records the
// Authorization header of every request and answers 401 while refusing.
type Gate struct {
	Next http.Handler

	mu      sync.Mutex
	refuse  bool
	refused int
	auths   []string
}

func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.auths = append(g.auths, r.Header.Get("Authorization"))
	refuse := g.refuse
	if refuse {
		g.refused++
	}
	g.mu.Unlock()
	if refuse {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	g.Next.ServeHTTP(w, r)
}

// Refuse makes the gate answer 401 (true) or pass requests on (false).
func (g *Gate) Refuse(refuse bool) {
	g.mu.Lock()
	g.refuse = refuse
	g.mu.Unlock()
}

// Refusals is how many requests were answered 401.
func (g *Gate) Refusals() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refused
}

// Authorizations are the distinct Authorization headers received, in the
// order first seen.
func (g *Gate) Authorizations() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, a := range g.auths {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}
