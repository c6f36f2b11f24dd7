package keyring

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

func key(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }

func TestRoundTrip(t *testing.T) {
	k, err := Parse(key(1))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k.Seal([]byte(`{"env":{"TOKEN":"s3cret"}}`), []byte("config-1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("s3cret")) {
		t.Fatal("sealed value contains the plaintext")
	}
	if id, _ := KeyID(sealed); id != DefaultKeyID {
		t.Errorf("key id = %q; want %q", id, DefaultKeyID)
	}
	plain, err := k.Open(sealed, []byte("config-1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(plain), `{"env":{"TOKEN":"s3cret"}}`; got != want {
		t.Errorf("got %s; want %s", got, want)
	}
	// Two seals of one value differ (fresh nonce).
	again, _ := k.Seal([]byte(`{"env":{"TOKEN":"s3cret"}}`), []byte("config-1"))
	if bytes.Equal(sealed, again) {
		t.Error("two seals of the same value are identical")
	}
}

func TestOpenErrors(t *testing.T) {
	k1, _ := Parse("k1:" + key(1))
	sealed, err := k1.Seal([]byte("secret"), []byte("row-a"))
	if err != nil {
		t.Fatal(err)
	}
	wrongBytes, _ := Parse("k1:" + key(2))
	otherID, _ := Parse("k2:" + key(1))
	truncated := sealed[:len(sealed)-20]
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1

	tests := []struct {
		name   string
		ring   *Keyring
		sealed []byte
		aad    string
		want   string
	}{
		{"wrong key bytes", wrongBytes, sealed, "row-a", `authentication failed with key "k1"`},
		{"key not configured", otherID, sealed, "row-a", `encrypted with key "k1", which is not configured`},
		{"moved to another row", k1, sealed, "row-b", "authentication failed"},
		{"tampered", k1, tampered, "row-a", "authentication failed"},
		{"truncated", k1, truncated[:10], "row-a", "truncated"},
		{"not sealed", k1, []byte("plain text"), "row-a", "not a sealed value"},
		{"nil keyring", nil, sealed, "row-a", "no encryption key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain, err := tt.ring.Open(tt.sealed, []byte(tt.aad))
			if err == nil {
				t.Fatalf("Open succeeded with %q; want error containing %q", plain, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q; want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	old, _ := Parse("old:" + key(1))
	sealedOld, _ := old.Seal([]byte("v"), nil)

	rotated, err := Parse("new:" + key(2) + ", old:" + key(1))
	if err != nil {
		t.Fatal(err)
	}
	if got := rotated.PrimaryID(); got != "new" {
		t.Errorf("primary = %q; want new", got)
	}
	if plain, err := rotated.Open(sealedOld, nil); err != nil || string(plain) != "v" {
		t.Errorf("open old value after rotation: %q, %v", plain, err)
	}
	sealedNew, _ := rotated.Seal([]byte("v"), nil)
	if id, _ := KeyID(sealedNew); id != "new" {
		t.Errorf("new value sealed with %q; want new", id)
	}
}

func TestParseErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"":    "no encryption key",
		"!!!": "not valid base64",
		base64.StdEncoding.EncodeToString([]byte("short")): "5 bytes, want 32",
		"a:" + key(1) + ",a:" + key(2):                     "appears twice",
		":" + key(1):                                       "key id must be",
	} {
		_, err := Parse(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%.12q...) error = %v; want it to contain %q", spec, err, want)
		}
	}
}

func TestParseErrorHidesKey(t *testing.T) {
	secret := base64.StdEncoding.EncodeToString([]byte("thirty-one bytes of secret data"))
	_, err := Parse("k:" + secret)
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("error %v must exist and must not contain the key", err)
	}
}

func TestDerive(t *testing.T) {
	k1, err := Parse("a:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := Parse("b:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32)) + ",a:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	x, _ := k1.Derive("x")
	x2, _ := k1.Derive("x")
	y, _ := k1.Derive("y")
	z, _ := k2.Derive("x")
	if len(x) != 32 || !bytes.Equal(x, x2) {
		t.Fatalf("Derive is not a 32-byte function of its purpose: %x, %x", x, x2)
	}
	if bytes.Equal(x, y) || bytes.Equal(x, z) {
		t.Fatal("two purposes, or two primary keys, derive the same key")
	}
	if _, err := (&Keyring{}).Derive("x"); err != ErrNoKey {
		t.Fatalf("empty keyring: got %v; want ErrNoKey", err)
	}
}
