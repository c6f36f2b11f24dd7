package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// serve runs newServer on a loopback port until the test ends.
func serve(t *testing.T, h http.Handler, l limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(ln.Addr().String(), h, l)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// closedWithin reports whether the server closes conn within d, after
// answering 408 or not at all.
func closedWithin(t *testing.T, conn net.Conn, d time.Duration) bool {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestSlowClientsAreCutOff: a client that sends its headers or its body
// a little at a time, and one that never reads its answer, lose their
// connection instead of holding it for ever (slowloris).
func TestSlowClientsAreCutOff(t *testing.T) {
	chunk := strings.Repeat("x", 64<<10)
	addr := serve(t, function(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		// An endless answer: it outgrows any socket buffer.
		for start := time.Now(); r.URL.Path == "/endless" && time.Since(start) < 30*time.Second; {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	}), limits{Header: 300 * time.Millisecond, Body: 600 * time.Millisecond, Write: time.Second})

	for _, tt := range []struct{ name, sent string }{
		{"headers never end", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n"},
		{"body never ends", "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\nabc"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, tt.sent)
			if !closedWithin(t, conn, 5*time.Second) {
				t.Error("the connection is still open after 5 s")
			}
		})
	}

	t.Run("answer never read", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET /endless HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		time.Sleep(2 * time.Second) // past Write, reading nothing
		if !closedWithin(t, conn, 5*time.Second) {
			t.Error("the connection is still open")
		}
	})

	t.Run("a prompt client is served", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("got %d; want 200", resp.StatusCode)
		}
	})
}

// TestFunctionAsFramework: like the Functions Framework, a panic is
// answered 500, and on Cloud Run each request ends with an empty line on
// stdout.
func TestFunctionAsFramework(t *testing.T) {
	addr := serve(t, function(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("boom")
		}
	}), limits{})
	resp, err := http.Get("http://" + addr + "/panic")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("a panic got %d; want 500", resp.StatusCode)
	}

	t.Setenv("K_SERVICE", "mcp-proxy")
	r, w, _ := os.Pipe()
	stdout := os.Stdout
	os.Stdout = w
	resp, err = http.Get("http://" + addr + "/")
	os.Stdout = stdout
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	if line != "\n" {
		t.Errorf("stdout after a request on Cloud Run: %q; want an empty line", line)
	}
}
