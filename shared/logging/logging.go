// Package logging makes slog loggers that write Cloud Logging's structured
// JSON: "severity" and "message" instead of slog's "level" and "msg", so
// that Cloud Logging files each line under its severity.
package logging

import (
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"
)

// New returns a JSON logger for Cloud Logging writing to w at level and
// above: "severity" and "message" instead of slog's "level" and "msg",
// each line in one Write made before the call that logs it returns.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(newCloudHandler(w, level, 0))
}

// NewBatched returns a logger like New's whose DEBUG and INFO lines may
// wait in memory, up to delay, to be written to w together with the
// lines after them, in Writes of up to 4 KiB of whole lines: on a busy
// process, one write system call for many lines instead of one each. A WARNING or ERROR line is
// written at once, after every line before it; 32 KiB of waiting lines
// are too. Lines keep their order and their "time", which Cloud Logging
// files them by. Flush writes the waiting lines at once: call it before
// the process exits, and where it is about to idle (its CPU taken away
// between requests, as on Cloud Run). A delay of 0 makes it New.
func NewBatched(w io.Writer, level slog.Leveler, delay time.Duration) *slog.Logger {
	return slog.New(newCloudHandler(w, level, delay))
}

// Flush writes the lines waiting in a logger of NewBatched (and in every
// logger derived from it by With or WithGroup); for other loggers it does
// nothing.
func Flush(l *slog.Logger) error {
	if h, ok := l.Handler().(*cloudHandler); ok && h.out.delay > 0 {
		return h.out.flush()
	}
	return nil
}

// severity maps slog levels onto Cloud Logging's LogSeverity names.
func severity(l slog.Level) string {
	switch {
	case l < slog.LevelInfo:
		return "DEBUG"
	case l < slog.LevelWarn:
		return "INFO"
	case l < slog.LevelError:
		return "WARNING"
	}
	return "ERROR"
}

// TraceID is the trace ID of a request, from the W3C traceparent header or
// Google's X-Cloud-Trace-Context; "" when it has neither.
func TraceID(r *http.Request) string {
	// The keys in canonical form: Header.Get would make each so, with
	// an allocation, on every request.
	if tp := first(r.Header["Traceparent"]); tp != "" {
		// version-traceid-spanid-flags
		parts := strings.Split(tp, "-")
		if len(parts) == 4 && len(parts[1]) == 32 && isHex(parts[1]) && parts[1] != strings.Repeat("0", 32) {
			return parts[1]
		}
	}
	if xc := first(r.Header["X-Cloud-Trace-Context"]); xc != "" {
		id, _, _ := strings.Cut(xc, "/")
		if len(id) == 32 && isHex(id) {
			return id
		}
	}
	return ""
}

// TraceAttrs are the attributes that let Cloud Logging correlate a log
// line with its trace; none when the request carries no trace.
func TraceAttrs(r *http.Request, projectID string) []slog.Attr {
	id := TraceID(r)
	if id == "" {
		return nil
	}
	trace := id
	if projectID != "" {
		trace = "projects/" + projectID + "/traces/" + id
	}
	return []slog.Attr{slog.String("logging.googleapis.com/trace", trace)}
}

// first is a header's first value; "" for none.
func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// Version is the deployed revision (K_REVISION on Cloud Run), else "dev".
func Version() string {
	if v := os.Getenv("K_REVISION"); v != "" {
		return v
	}
	return "dev"
}

// ClientIP is a request's client address: the last X-Forwarded-For hop,
// else the connection's peer.
//
// Only the last hop is Google's: its front end appends the address it
// saw to whatever X-Forwarded-For the client sent, and "does not verify
// any IP addresses that precede" it
// (https://cloud.google.com/load-balancing/docs/https#x-forwarded-for_header).
// The first hop, which the Cloud Functions header reference calls
// "generally the IP of the client"
// (https://cloud.google.com/functions/docs/reference/headers), is the
// client's to choose. deploy.sh publishes the functions at their own URLs,
// with no load balancer of ours in front; one would append its own address
// after the client's, and this function would then have to read the hop
// before the last.
func ClientIP(r *http.Request) string {
	if hops := r.Header.Values("X-Forwarded-For"); len(hops) > 0 {
		last := hops[len(hops)-1]
		if i := strings.LastIndexByte(last, ','); i >= 0 {
			last = last[i+1:]
		}
		if ip, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
			return ip.String()
		}
		// Not an address: not written by Google's front end, so not a
		// hop to trust; the peer is at least true.
	}
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}
