// Package relay forwards TCP connections to a service and cuts them on
// demand: a network fault between a client and Postgres or Firestore, for
// tests and the soak run, without stopping the service itself.
package relay

import (
	"io"
	"net"
	"sync"
	"time"
)

// Relay forwards each connection it accepts to its target while open.
// Cut closes every relayed connection at once and refuses new ones until
// Restore; a refused connection is accepted and closed at once, so the
// relay's port is never given up.
type Relay struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	up    bool
	conns map[net.Conn]struct{}
}

// Listen starts a relay to target on a free loopback port, open. Close
// stops it.
func Listen(target string) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Relay{ln: ln, target: target, up: true, conns: map[net.Conn]struct{}{}}
	go r.serve() // ends when Close closes the listener
	return r, nil
}

// Addr is the relay's host:port, for clients to dial instead of the
// target's.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Cut closes every relayed connection and refuses new ones.
func (r *Relay) Cut() {
	r.mu.Lock()
	r.up = false
	conns := r.conns
	r.conns = map[net.Conn]struct{}{}
	r.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// Restore relays new connections again.
func (r *Relay) Restore() {
	r.mu.Lock()
	r.up = true
	r.mu.Unlock()
}

// Close cuts every connection and stops listening. It is safe to call
// twice.
func (r *Relay) Close() error {
	r.Cut()
	return r.ln.Close()
}

func (r *Relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		if !r.track(c) {
			c.Close()
			continue
		}
		go r.pipe(c) // ends when either side closes or Cut closes both
	}
}

func (r *Relay) pipe(c net.Conn) {
	defer r.untrack(c)
	up, err := net.DialTimeout("tcp", r.target, 2*time.Second)
	if err != nil {
		return
	}
	if !r.track(up) {
		up.Close()
		return
	}
	defer r.untrack(up)
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }() // ends when c or up closes
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// track adds a connection unless the relay is cut.
func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.up {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}
