// Package firestoretest gives integration tests the real Firestore emulator named
// by FIRESTORE_EMULATOR_HOST (make test starts one), a collection of their
// own in it, and a relay that cuts the connection to it on demand. A test
// that cannot reach the emulator fails; it never skips.
package firestoretest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"os"
	"sync"
	"testing"

	"cloud.google.com/go/firestore"
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

// Client returns a client of the emulator at host, closed when the test
// ends. The Firestore client reads the emulator's address from the
// environment when it is made, and from nowhere else.
func Client(t testing.TB, host string) *firestore.Client {
	t.Helper()
	t.Setenv("FIRESTORE_EMULATOR_HOST", host)
	c, err := firestore.NewClient(context.Background(), Project)
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

// Relay forwards TCP connections to the emulator until Cut, which closes
// them all and refuses new ones until Restore: a network fault between a
// client and Firestore.
type Relay struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
}

// NewRelay starts a relay to target, stopped when the test ends.
func NewRelay(t testing.TB, target string) *Relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go r.serve()
	t.Cleanup(func() { ln.Close(); r.Cut() })
	return r
}

// Addr is the relay's host:port.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Cut closes every relayed connection and refuses new ones.
func (r *Relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut = true
	for c := range r.conns {
		c.Close()
	}
	clear(r.conns)
}

// Restore relays new connections again.
func (r *Relay) Restore() {
	r.mu.Lock()
	r.cut = false
	r.mu.Unlock()
}

func (r *Relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		go r.relay(c)
	}
}

func (r *Relay) relay(c net.Conn) {
	r.mu.Lock()
	if r.cut {
		r.mu.Unlock()
		c.Close()
		return
	}
	r.mu.Unlock()
	up, err := net.Dial("tcp", r.target)
	if err != nil {
		c.Close()
		return
	}
	r.mu.Lock()
	if r.cut {
		r.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	r.conns[c], r.conns[up] = true, true
	r.mu.Unlock()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
}
