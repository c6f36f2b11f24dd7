package tenant

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestNamespace(t *testing.T) {
	for in, want := range map[string]string{
		"GitHub":          "github",
		"Alpha Search":    "alpha-search",
		"my_server.v2":    "my-server-v2",
		"Ünïcode Server":  "-n-code-server",
		"already-fine-01": "already-fine-01",
	} {
		if got := Namespace(in); got != want {
			t.Errorf("Namespace(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]Transport{"streamable-http": TransportStreamableHTTP, "STREAMABLE_HTTPS": TransportStreamableHTTP, "sse": TransportSSE, "stdio": TransportStdio} {
		if got, err := ParseTransport(in); err != nil || got != want {
			t.Errorf("ParseTransport(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseTransport("websocket"); err == nil || !strings.Contains(err.Error(), "websocket") {
		t.Errorf("ParseTransport(websocket) error = %v", err)
	}
	for in, want := range map[string]AuthType{"none": AuthNone, "api-key": AuthAPIKey, "API_KEY": AuthAPIKey, "oauth": AuthOAuth, "cloud-run-iam": AuthCloudRunIAM} {
		if got, err := ParseAuthType(in); err != nil || got != want {
			t.Errorf("ParseAuthType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseAuthType("basic"); err == nil {
		t.Error("ParseAuthType(basic) succeeded")
	}
}

func TestKeyCheck(t *testing.T) {
	now := time.Now()
	past, future := now.Add(-time.Second), now.Add(time.Hour)
	tests := []struct {
		name string
		key  Key
		want error
	}{
		{"active", Key{Active: true}, nil},
		{"not yet expired", Key{Active: true, ExpiresAt: &future}, nil},
		{"revoked", Key{Active: false}, ErrKeyInactive},
		{"expired", Key{Active: true, ExpiresAt: &past}, ErrKeyExpired},
		{"expires exactly now", Key{Active: true, ExpiresAt: &now}, ErrKeyExpired},
		{"instance deleted", Key{Active: true, InstanceGone: true}, ErrInstanceDeleted},
	}
	for _, tt := range tests {
		if got := tt.key.Check(now); !errors.Is(got, tt.want) {
			t.Errorf("%s: Check = %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestNewKey(t *testing.T) {
	k1, p1, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, _, _ := NewKey()
	if k1 == k2 {
		t.Error("two keys are equal")
	}
	if !strings.HasPrefix(k1, "mcpk_") || len(k1) != 5+43 {
		t.Errorf("key %q: want mcpk_ and 43 base64url characters", k1)
	}
	if p1 != k1[:KeyPrefixLen] || DisplayPrefix(k1) != p1 {
		t.Errorf("prefix %q of %q", p1, k1)
	}
	if HashKey(k1) == HashKey(k2) {
		t.Error("two keys hash alike")
	}
}

func TestWellFormedKey(t *testing.T) {
	k, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{k, true},
		{"mcpk_" + strings.Repeat("A", 43), true},
		{"mcpk_" + strings.Repeat("A", 42), false},
		{"mcpk_" + strings.Repeat("A", 44), false},
		{"mcpx_" + strings.Repeat("A", 43), false},
		{"mcpk_" + strings.Repeat("A", 42) + "=", false},
		{"mcpk_" + strings.Repeat("A", 42) + "é"[:1], false},
		{"", false},
	} {
		if got := WellFormedKey(tt.in); got != tt.want {
			t.Errorf("WellFormedKey(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
}

// TestDisplayPrefixOnlyOfKeys: a value that is not shaped like one of our
// keys (a pasted password, another service's token) shows nothing of
// itself, since it is logged for every refused request.
func TestDisplayPrefixOnlyOfKeys(t *testing.T) {
	key, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if got := DisplayPrefix(key); got != key[:KeyPrefixLen] {
		t.Errorf("DisplayPrefix(key) = %q; want %q", got, key[:KeyPrefixLen])
	}
	for _, tt := range []struct{ name, value string }{
		{"short", "short"},
		{"password", "correct-horse-battery-staple-hunter2"},
		{"github token", "ghp_R2d2C3poR2d2C3poR2d2C3poR2d2C3poAbCd"},
		{"jwt", "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"},
		{"scheme, wrong length", "mcpk_hunter2hunter2hunter2"},
		{"scheme, wrong alphabet", "mcpk_" + strings.Repeat("h", 38) + "!!!!!"},
		{"key with a suffix", key + "x"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := DisplayPrefix(tt.value)
			if got == "" || strings.Contains(tt.value, got) || strings.Contains(got, tt.value[:4]) {
				t.Errorf("DisplayPrefix(%q) = %q; want a placeholder that shows none of the value", tt.value, got)
			}
		})
	}
}
