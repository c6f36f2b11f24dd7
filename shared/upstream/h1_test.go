package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawServer answers each request read on a connection with the next of
// answers (the last one again when they run out), written as given;
// after answering, close ends the connection without a word.
type rawServer struct {
	ln      net.Listener
	dials   atomic.Int32
	served  atomic.Int32 // requests read
	answers []string
	close   bool
}

func startRaw(t *testing.T, close bool, answers ...string) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, answers: answers, close: close}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.dials.Add(1)
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					i := int(s.served.Add(1)) - 1
					conn.Write([]byte(s.answers[min(i, len(s.answers)-1)]))
					if s.close {
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() + "/mcp" }

func newTestH1() *h1Client {
	return newH1Client((&net.Dialer{Timeout: 5 * time.Second}).DialContext, 10)
}

// post sends one POST through c and returns its body read to the end.
func post(t *testing.T, ctx context.Context, c *h1Client, url string) (string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

func TestH1KeepsConnections(t *testing.T) {
	s := startRaw(t, false, okAnswer)
	c := newTestH1()
	defer c.close()
	for i := range 20 {
		if got, err := post(t, context.Background(), c, s.url()); err != nil || got != "{}" {
			t.Fatalf("call %d: %q, %v", i, got, err)
		}
	}
	if n := s.dials.Load(); n != 1 {
		t.Errorf("%d connections for 20 calls one after another; want 1", n)
	}
}

// TestH1IdleClosedByUpstream: an upstream that closes a connection after
// its answer, without saying so (its idle timeout), must not fail the
// next call, which a request written on that connection would.
func TestH1IdleClosedByUpstream(t *testing.T) {
	s := startRaw(t, true, okAnswer)
	c := newTestH1()
	defer c.close()
	for i := range 5 {
		if got, err := post(t, context.Background(), c, s.url()); err != nil || got != "{}" {
			t.Fatalf("call %d: %q, %v", i, got, err)
		}
		time.Sleep(20 * time.Millisecond) // the upstream's close arrives
	}
	if n := s.dials.Load(); n != 5 {
		t.Errorf("%d connections; want one per call", n)
	}
}

// TestH1NotReused: a connection whose answer was not read whole, was
// followed by more bytes, or said it closes, takes no other request.
func TestH1NotReused(t *testing.T) {
	for name, answer := range map[string]string{
		"connection close":      "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
		"bytes past the length": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.0":              "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
	} {
		t.Run(name, func(t *testing.T) {
			s := startRaw(t, false, answer)
			c := newTestH1()
			defer c.close()
			for i := range 3 {
				if got, err := post(t, context.Background(), c, s.url()); err != nil || got != "{}" {
					t.Fatalf("call %d: %q, %v", i, got, err)
				}
			}
			if n := s.dials.Load(); n != 3 {
				t.Errorf("%d connections for 3 calls; want 3", n)
			}
		})
	}
	t.Run("closed early", func(t *testing.T) {
		s := startRaw(t, false, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n")
		c := newTestH1()
		defer c.close()
		for i := range 3 {
			req, _ := http.NewRequest(http.MethodPost, s.url(), strings.NewReader("{}"))
			resp, err := c.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			var two [2]byte
			io.ReadFull(resp.Body, two[:])
			resp.Body.Close()
			if string(two[:]) != "ab" {
				t.Fatalf("call %d read %q", i, two[:])
			}
		}
		if n := s.dials.Load(); n != 3 {
			t.Errorf("%d connections for 3 calls closed early; want 3", n)
		}
	})
}

func TestH1Informational(t *testing.T) {
	s := startRaw(t, false, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"+okAnswer)
	c := newTestH1()
	defer c.close()
	for range 2 {
		if got, err := post(t, context.Background(), c, s.url()); err != nil || got != "{}" {
			t.Fatalf("%q, %v", got, err)
		}
	}
}

// TestH1HeaderBound: a header past maxResponseHeader fails the call
// when the bound is reached, not when the upstream stops sending.
func TestH1HeaderBound(t *testing.T) {
	huge := "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\nContent-Length: 2\r\n\r\n{}"
	s := startRaw(t, false, huge)
	c := newTestH1()
	defer c.close()
	_, err := post(t, context.Background(), c, s.url())
	if err == nil || !strings.Contains(err.Error(), "header larger than 1 MiB") {
		t.Fatalf("err = %v; want the header bound", err)
	}
}

// TestH1Ends: a call the upstream never answers ends with its context,
// cancelled or past its deadline, with the context's error.
func TestH1Ends(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			go io.Copy(io.Discard, conn) // reads, never answers
		}
	}()
	url := "http://" + ln.Addr().String() + "/mcp"
	c := newTestH1()
	defer c.close()

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if _, err := post(t, ctx, c, url); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v; want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := post(t, ctx, c, url); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: err = %v; want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v to end two calls of 50 ms", took)
	}
}

// TestH1BodyEndsWithContext: a body the upstream stops sending midway
// ends with the call's context.
func TestH1BodyEndsWithContext(t *testing.T) {
	s := startRaw(t, false, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\":")
	c := newTestH1()
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	got, err := post(t, ctx, c, s.url())
	if !errors.Is(err, context.DeadlineExceeded) || got != `{"a":` {
		t.Errorf("read %q, %v; want what came, then context.DeadlineExceeded", got, err)
	}
}

func TestH1IdleTimeout(t *testing.T) {
	s := startRaw(t, false, okAnswer)
	c := newTestH1()
	defer c.close()
	if _, err := post(t, context.Background(), c, s.url()); err != nil {
		t.Fatal(err)
	}
	c.prune(time.Now().Add(idleConnTimeout + time.Second))
	c.mu.Lock()
	left := len(c.idle)
	c.mu.Unlock()
	if left != 0 {
		t.Errorf("%d hosts with idle connections after their timeout; want none", left)
	}
	if _, err := post(t, context.Background(), c, s.url()); err != nil {
		t.Fatal(err)
	}
	if n := s.dials.Load(); n != 2 {
		t.Errorf("%d connections; want a new one after the idle timeout", n)
	}
}

func TestH1Serves(t *testing.T) {
	c := newTestH1()
	for url, want := range map[string]bool{"http://example.com/mcp": true, "https://example.com/mcp": false} {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(nil))
		if got := c.serves(req); got != want {
			t.Errorf("serves(%s) = %v; want %v", url, got, want)
		}
	}
	var none *h1Client
	req, _ := http.NewRequest(http.MethodPost, "http://example.com/mcp", nil)
	if none.serves(req) {
		t.Error("a nil client serves")
	}
}

// TestH1InformationalBound: informational responses share the answer's
// header bound, and only a few are taken: an upstream sending them
// without end fails the call at once, not at its deadline.
func TestH1InformationalBound(t *testing.T) {
	big := "HTTP/1.1 103 Early Hints\r\nX-Pad: " + strings.Repeat("a", 300<<10) + "\r\n\r\n"
	small := "HTTP/1.1 100 Continue\r\n\r\n"
	for name, answer := range map[string]string{
		"1.2 MiB of headers in all": strings.Repeat(big, 4) + okAnswer,
		"many small ones":           strings.Repeat(small, maxInformational+1) + okAnswer,
	} {
		t.Run(name, func(t *testing.T) {
			s := startRaw(t, false, answer)
			c := newTestH1()
			defer c.close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if got, err := post(t, ctx, c, s.url()); err == nil || ctx.Err() != nil {
				t.Fatalf("read %q, %v; want the call refused before its deadline", got, err)
			}
		})
	}
	s := startRaw(t, false, strings.Repeat(small, maxInformational)+okAnswer)
	c := newTestH1()
	defer c.close()
	if got, err := post(t, context.Background(), c, s.url()); err != nil || got != "{}" {
		t.Fatalf("%d informational responses: %q, %v; want the answer", maxInformational, got, err)
	}
}

// TestH1CancelledNotSent: a call whose context ended before it was sent
// does not reach the upstream, even on an idle connection ready for it.
func TestH1CancelledNotSent(t *testing.T) {
	s := startRaw(t, false, okAnswer)
	c := newTestH1()
	defer c.close()
	if _, err := post(t, context.Background(), c, s.url()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 20 {
		if _, err := post(t, ctx, c, s.url()); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v; want context.Canceled", err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := s.served.Load(); n != 1 {
		t.Errorf("the upstream read %d requests; want only the first, none of the cancelled ones", n)
	}
	if got, err := post(t, context.Background(), c, s.url()); err != nil || got != "{}" || s.dials.Load() != 1 {
		t.Errorf("after: %q, %v, %d connections; want the idle one used", got, err, s.dials.Load())
	}
}

// TestH1IdleBounds: idle connections are at most maxIdle per host and
// ten times as many in all, the oldest going first; a host without any
// leaves nothing behind.
func TestH1IdleBounds(t *testing.T) {
	c := newH1Client((&net.Dialer{Timeout: 5 * time.Second}).DialContext, 1)
	defer c.close()
	var last *rawServer
	for range 30 {
		last = startRaw(t, false, okAnswer)
		if _, err := post(t, context.Background(), c, last.url()); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.Lock()
	total := 0
	for _, list := range c.idle {
		total += len(list)
	}
	_, newest := c.idle[last.ln.Addr().String()]
	count := c.idleCount
	c.mu.Unlock()
	if total != 10 || count != 10 || !newest {
		t.Errorf("%d idle connections (counted %d), the newest host's kept: %v; want 10, the newest among them", total, count, newest)
	}

	closing := startRaw(t, false, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
	c2 := newTestH1()
	defer c2.close()
	for range 3 {
		post(t, context.Background(), c2, closing.url())
	}
	s := startRaw(t, false, okAnswer)
	post(t, context.Background(), c2, s.url())
	post(t, context.Background(), c2, s.url()) // takes the idle one, gives it back
	c2.mu.Lock()
	hosts := len(c2.idle)
	c2.mu.Unlock()
	if hosts != 1 {
		t.Errorf("%d hosts in the idle pool; want only the one with an idle connection", hosts)
	}
}

func TestH1ReadAfterClose(t *testing.T) {
	s := startRaw(t, false, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
	c := newTestH1()
	defer c.close()
	req, _ := http.NewRequest(http.MethodPost, s.url(), strings.NewReader("{}"))
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	var b [3]byte
	io.ReadFull(resp.Body, b[:])
	resp.Body.Close()
	if _, err := resp.Body.Read(b[:]); err == nil || err == io.EOF {
		t.Errorf("a read after Close of a body cut short: %v; want an error, not the end", err)
	}
}
