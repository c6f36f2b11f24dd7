// Package firestoretest gives integration tests the real Firestore
// emulator named by FIRESTORE_EMULATOR_HOST (make test starts one), a
// collection of their own in it, and a relay that cuts the connection to
// it on demand. A test that cannot reach the emulator fails; it never
// skips.
package firestoretest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/option"

	"mcpproxy.dev/mcpproxy/internal/relay"
)

// Project is the emulator project of the tests.
const Project = "mcp-proxy-test"

// Host returns FIRESTORE_EMULATOR_HOST or fails the test.
func Host(t testing.TB) string {
	t.Helper()
	h := os.Getenv("FIRESTORE_EMULATOR_HOST")
	if h == "" {
		t.Fatal("FIRESTORE_EMULATOR_HOST is not set: run the tests with `make test`, which starts Postgres and the Firestore emulator")
	}
	return h
}

// Client returns a client of the emulator at host, with opts, closed when
// the test ends. The Firestore client reads the emulator's address from
// the environment when it is made, and from nowhere else.
func Client(t testing.TB, host string, opts ...option.ClientOption) *firestore.Client {
	t.Helper()
	t.Setenv("FIRESTORE_EMULATOR_HOST", host)
	c, err := firestore.NewClient(context.Background(), Project, opts...)
	if err != nil {
		t.Fatalf("firestore client for the emulator at %s: %v", host, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Collection returns a collection name no other test uses.
func Collection(t testing.TB) string {
	var b [6]byte
	rand.Read(b[:])
	return "test_" + hex.EncodeToString(b[:])
}

// NewRelay starts a relay to target (the emulator), closed when the test
// ends: Cut on it is a network fault between a client and Firestore.
func NewRelay(t testing.TB, target string) *relay.Relay {
	t.Helper()
	r, err := relay.Listen(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
