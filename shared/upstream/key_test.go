package upstream

import (
	"testing"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// TestKeyValue pins Key's output, as the version that sorted through
// fresh slices computed it: a faster Key must hash the same input.
func TestKeyValue(t *testing.T) {
	up := tenant.Upstream{ConfigID: "c", Transport: tenant.TransportStreamableHTTP, URL: "http://x/mcp", Args: []string{"a"}, AuthType: "oauth"}
	up.Credentials.Env = map[string]string{"B": "2", "A": "1"}
	up.Credentials.Headers = map[string]string{"X": "y"}
	up.Credentials.OAuth = &tenant.OAuthCredentials{TokenURL: "t", ClientID: "i", ClientSecret: "s", Scopes: []string{"x"}}
	for _, tt := range []struct {
		up   tenant.Upstream
		want string
	}{
		{up, "a88ef168b6ce6c9bfd1db58cbd4aff0cb65b5380ca0a2ec14291f38bbefe3060"},
		{tenant.Upstream{}, "d0aa3ec7b8886127d5e9c46e7a91aad2b767ebfb5e46f36ae5de87ad879e9e8a"},
	} {
		if got := Key(tt.up); got != tt.want {
			t.Errorf("Key(%+v) = %s; want %s", tt.up, got, tt.want)
		}
	}
}

// BenchmarkKey is Key of a Streamable HTTP upstream without credentials,
// which the pool computes for every call.
func BenchmarkKey(b *testing.B) {
	up := tenant.Upstream{ConfigID: "8c1f8f3e-6a59-4d7a-9b5e-0c0b7c7a1f00", Name: "demo", Transport: tenant.TransportStreamableHTTP, URL: "http://127.0.0.1:34567/mcp"}
	b.ReportAllocs()
	for b.Loop() {
		Key(up)
	}
}
