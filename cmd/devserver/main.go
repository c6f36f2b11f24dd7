// Command devserver runs the three functions on one port, at the paths
// they have when deployed: the proxy's /mcp routes and its OAuth paths,
// /health and
// /flushlogs. It reads the same environment as the deployed functions and
// seeds nothing.
//
//	HOST=127.0.0.1 PORT=8080 devserver
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"time"

	"mcpproxy.dev/mcpproxy/functions/flushlogs"
	"mcpproxy.dev/mcpproxy/functions/health"
	"mcpproxy.dev/mcpproxy/functions/proxy"
)

func main() {
	mux := http.NewServeMux()
	for path, fn := range map[string]http.HandlerFunc{
		"/mcp":  proxy.Proxy,
		"/mcp/": proxy.Proxy,
		// The proxy's OAuth authorization server (docs/oauth.md).
		"/.well-known/": proxy.Proxy,
		"/oauth/":       proxy.Proxy,
		"/health":       health.Health,
		"/flushlogs":    flushlogs.FlushLogs,
	} {
		mux.Handle(path, function(fn))
	}
	if addr := os.Getenv("PPROF_ADDR"); addr != "" {
		// A mux of its own: the profiler never shows on the functions' port.
		pm := http.NewServeMux()
		pm.HandleFunc("/debug/pprof/", pprof.Index)
		pm.HandleFunc("/debug/pprof/profile", pprof.Profile)
		srv := newServer(addr, pm, limits{})
		srv.WriteTimeout = 0 // a CPU profile takes as long as it was asked for
		go func() { log.Println("devserver: pprof:", srv.ListenAndServe()) }()
	}
	requestTimeout, err := time.ParseDuration(getenv("REQUEST_TIMEOUT", "120s"))
	if err != nil {
		log.Fatalf("devserver: REQUEST_TIMEOUT: %v", err)
	}
	host, port := getenv("HOST", "127.0.0.1"), getenv("PORT", "8080")
	srv := newServer(net.JoinHostPort(host, port), mux, limits{Write: requestTimeout + 10*time.Second})
	fmt.Fprintf(os.Stderr, "devserver: listening on http://%s (/mcp, /.well-known, /oauth, /health, /flushlogs)\n", srv.Addr)
	log.Fatal(srv.ListenAndServe())
}

// limits are the connection timeouts of newServer; zero values take the
// defaults named.
type limits struct {
	// Header bounds reading a request's headers: a client that sends them
	// a byte at a time (slowloris) is cut off. Default 10 s.
	Header time.Duration
	// Body bounds reading a whole request, body included. Default 60 s:
	// the proxy's largest body (4 MiB) at 70 KB/s.
	Body time.Duration
	// Write bounds the time from the end of a request's headers to the
	// end of its answer: a client that stops reading is cut off then.
	// Default 130 s: the proxy's REQUEST_TIMEOUT (120 s by default, which
	// ends the handler) and 10 s to write the answer.
	Write time.Duration
	// Idle bounds a keep-alive connection between requests. Default 2 min.
	Idle time.Duration
}

// newServer is the dev server's http.Server, with timeouts. Deployed, the
// Google front end stands between clients and the functions; here nothing
// does. The Functions Framework (v1.9.2) serves with http.ListenAndServe,
// which sets no timeout, and exposes neither its server nor its handler,
// so the dev server runs its own (see function).
func newServer(addr string, h http.Handler, l limits) *http.Server {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.Header, 10*time.Second)
	def(&l.Body, 60*time.Second)
	def(&l.Write, 130*time.Second)
	def(&l.Idle, 2*time.Minute)
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: l.Header,
		ReadTimeout:       l.Body,
		WriteTimeout:      l.Write,
		IdleTimeout:       l.Idle,
		MaxHeaderBytes:    64 << 10,
	}
}

// function serves an HTTP function the way the Functions Framework's
// wrapHTTPFunction does: on Cloud Run (K_SERVICE set) an empty line on
// stdout and stderr after each request, which flushes the logs there and
// which make bench keeps to measure like for like; a panic logged with
// its stack and answered 500.
func function(fn http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if os.Getenv("K_SERVICE") != "" {
			defer fmt.Println()
			defer fmt.Fprintln(os.Stderr)
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				fmt.Fprintf(os.Stderr, "devserver: panic serving %s: %v\n%s", r.URL.Path, p, debug.Stack())
				http.Error(w, "A panic occurred during user function execution.", http.StatusInternalServerError)
			}
		}()
		fn(w, r)
	})
}

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
