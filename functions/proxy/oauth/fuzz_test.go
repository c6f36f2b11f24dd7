package oauth

import (
	"testing"
	"time"
)

// FuzzToken sends arbitrary bearer credentials through the resource
// server's check: it must never panic, and never accept a token this
// server did not sign exactly as it is.
func FuzzToken(f *testing.F) {
	keys, err := ParseKeys("k:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	good := keys.Sign(&Claims{Issuer: "https://p", Audience: "https://p/mcp", ExpiresAt: now.Unix() + 60, Scope: "mcp", Grant: "g"})
	for _, seed := range []string{good, good + "x", "eyJ.eyJ.", "eyJhbGciOiJub25lIn0.e30.", "a.b.c", ""} {
		f.Add(seed)
	}
	v := NewVerifier(keys, 16)
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Check(token, "https://p", "/mcp", now)
		if err == nil && token != good {
			t.Fatalf("accepted a token the server did not sign: %q (%+v)", token, c)
		}
	})
}
