package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// h1Client sends the pool's own requests (tools/call and the other
// messages it posts itself, direct.go) to plain-HTTP upstreams over
// HTTP/1.1 keep-alive connections, on the caller's goroutine.
//
// Why not http.Transport: it reads and writes every connection on two
// goroutines of its own, so each call hands its request to one and its
// answer back from the other, with a cancellable context, a copy of the
// request and their channels on the way. At 80 concurrent calls that was
// about a tenth of the proxy's CPU (BENCHMARKS.md). Here the caller
// writes the request and reads the answer itself, and a context that
// ends (cancelled, or at its deadline) sets the connection's deadline in
// the past. (Not the context's deadline as the connection's: a read cut
// by it could return before the context says it ended, and callers ask
// the context why a call failed.)
//
// What it keeps of http.Transport's care: requests and responses are
// written and parsed by net/http (Request.Write, ReadResponse: chunked,
// lengths, 1xx); the response's header is bounded (maxResponseHeader);
// a connection goes back to the idle pool only when its response was
// read whole and nothing else came on it; an idle connection the
// upstream has closed is found before it is used (alive); idle ones are
// closed after idleConnTimeout. HTTPS upstreams and those behind an HTTP
// proxy (HTTP_PROXY) keep http.Transport, which negotiates HTTP/2 and
// speaks to proxies.
type h1Client struct {
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle int // idle connections kept per host; ten times as many in all

	mu        sync.Mutex
	idle      map[string][]*h1Conn // by host:port, most recently used last; no empty list
	idleCount int
	closed    bool
}

// h1Conn is one keep-alive connection.
type h1Conn struct {
	conn      net.Conn
	r         *headerLimit
	br        *bufio.Reader
	bw        *bufio.Writer
	host      string
	idleSince time.Time
}

const (
	// maxResponseHeader bounds a response's status line and header, as
	// http.Server's DefaultMaxHeaderBytes bounds a request's.
	maxResponseHeader = 1 << 20
	// maxInformational is the most 1xx responses taken before an answer.
	maxInformational = 8
	// idleConnTimeout closes a connection idle for longer, as the pool's
	// http.Transport does.
	idleConnTimeout = 90 * time.Second
)

// inThePast is a deadline that fails every pending read and write.
var inThePast = time.Unix(1, 0)

func newH1Client(dial func(ctx context.Context, network, addr string) (net.Conn, error), maxIdle int) *h1Client {
	return &h1Client{dial: dial, maxIdle: maxIdle, idle: map[string][]*h1Conn{}}
}

// serves reports whether c sends req: a plain-HTTP URL, no proxy.
func (c *h1Client) serves(req *http.Request) bool {
	if c == nil || req.URL.Scheme != "http" {
		return false
	}
	proxy, err := http.ProxyFromEnvironment(req)
	return err == nil && proxy == nil
}

// RoundTrip sends req and reads the response's header. The response's
// body must be read to its end or closed, from one goroutine at a time;
// it gives the connection back to the idle pool when it was read whole.
func (c *h1Client) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	pc, err := c.conn(ctx, canonicalAddr(req))
	if err == nil && ctx.Err() != nil {
		// Ended while a connection was found: nothing is sent (the
		// function of context.AfterFunc below runs on a goroutine of
		// its own, after the request may have been written).
		c.putIdle(pc)
		err = ctx.Err()
	}
	if err != nil {
		closeBody(req)
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { pc.conn.SetDeadline(inThePast) })
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.conn.Close()
		return nil, contextError(ctx, err)
	}
	if err := req.Write(pc.bw); err != nil {
		return fail(err)
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(err)
	}
	// One bound for the answer's header and every informational one
	// before it, as http.Transport has.
	pc.r.left, pc.r.exceeded = maxResponseHeader, false
	for informational := 0; ; informational++ {
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			pc.r.left = -1
			if pc.r.exceeded {
				err = errors.New("upstream response header larger than 1 MiB")
			}
			return fail(err)
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			// 100 Continue, 103 Early Hints: the answer follows.
			if informational == maxInformational {
				pc.r.left = -1
				return fail(fmt.Errorf("upstream sent more than %d informational responses", maxInformational))
			}
			continue
		}
		pc.r.left = -1
		reuse := !resp.Close && !req.Close && resp.StatusCode != http.StatusSwitchingProtocols
		resp.Body = &h1Body{body: resp.Body, pc: pc, client: c, ctx: ctx, stop: stop, reuse: reuse}
		return resp, nil
	}
}

// contextError is ctx's error when ctx ended, err otherwise: a read or
// write the context cut fails with the connection's deadline.
func contextError(ctx context.Context, err error) error {
	if e := ctx.Err(); e != nil {
		return e
	}
	return err
}

// canonicalAddr is the host:port of req's URL, port 80 by default.
func canonicalAddr(req *http.Request) string {
	port := req.URL.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(req.URL.Hostname(), port)
}

// conn takes an idle connection to host that is still open, or dials
// one.
func (c *h1Client) conn(ctx context.Context, host string) (*h1Conn, error) {
	for {
		pc := c.takeIdle(host)
		if pc == nil {
			break
		}
		if alive(pc.conn) {
			return pc, nil
		}
		pc.conn.Close()
	}
	conn, err := c.dial(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	r := &headerLimit{conn: conn, left: -1}
	return &h1Conn{conn: conn, r: r, br: bufio.NewReader(r), bw: bufio.NewWriter(conn), host: host}, nil
}

// takeIdle takes host's most recently used idle connection, closing
// those idle for too long.
func (c *h1Client) takeIdle(host string) *h1Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	list := c.pruneLocked(host, time.Now())
	if len(list) == 0 {
		return nil
	}
	pc := list[len(list)-1]
	list[len(list)-1] = nil
	if len(list) == 1 {
		delete(c.idle, host)
	} else {
		c.idle[host] = list[:len(list)-1]
	}
	c.idleCount--
	return pc
}

// pruneLocked closes host's connections idle since before
// idleConnTimeout and returns those left. c.mu is held.
func (c *h1Client) pruneLocked(host string, now time.Time) []*h1Conn {
	list := c.idle[host]
	n := 0
	for n < len(list) && now.Sub(list[n].idleSince) > idleConnTimeout {
		list[n].conn.Close()
		n++
	}
	if n == 0 {
		return list
	}
	c.idleCount -= n
	rest := copy(list, list[n:])
	clear(list[rest:])
	if rest == 0 {
		delete(c.idle, host)
		return nil
	}
	c.idle[host] = list[:rest]
	return list[:rest]
}

// putIdle keeps pc for the next request to its host, or closes it when
// the host has maxIdle already or the client is closed.
func (c *h1Client) putIdle(pc *h1Conn) {
	now := time.Now()
	pc.idleSince = now
	c.mu.Lock()
	list := c.pruneLocked(pc.host, now)
	if c.closed || len(list) >= c.maxIdle {
		c.mu.Unlock()
		pc.conn.Close()
		return
	}
	if c.idleCount >= 10*c.maxIdle {
		c.evictOldestLocked()
	}
	c.idle[pc.host] = append(c.idle[pc.host], pc)
	c.idleCount++
	c.mu.Unlock()
}

// evictOldestLocked closes the connection idle for longest, of any
// host. c.mu is held.
func (c *h1Client) evictOldestLocked() {
	oldest := ""
	for host, list := range c.idle {
		if oldest == "" || list[0].idleSince.Before(c.idle[oldest][0].idleSince) {
			oldest = host
		}
	}
	if oldest == "" {
		return
	}
	list := c.idle[oldest]
	list[0].conn.Close()
	if len(list) == 1 {
		delete(c.idle, oldest)
	} else {
		rest := copy(list, list[1:])
		list[rest] = nil
		c.idle[oldest] = list[:rest]
	}
	c.idleCount--
}

// prune closes the connections idle for longer than idleConnTimeout,
// for hosts no request goes to any more.
func (c *h1Client) prune(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for host := range c.idle {
		c.pruneLocked(host, now)
	}
}

// close closes the idle connections and every one given back later.
func (c *h1Client) close() {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.idleCount, c.closed = map[string][]*h1Conn{}, 0, true
	c.mu.Unlock()
	for _, list := range idle {
		for _, pc := range list {
			pc.conn.Close()
		}
	}
}

// alive reports whether an idle connection is still open: nothing to
// read on it, without waiting. An upstream that closed it (its idle
// timeout, a restart) has sent the end of the stream, and one that sent
// anything else while no request was out broke the protocol: neither
// takes a request.
func alive(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var one [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true // never wait
	})
	return err == nil && open
}

// headerLimit is what an h1Conn's reader reads from: while left is not
// negative, at most left more bytes, for the response's header.
type headerLimit struct {
	conn     net.Conn
	left     int
	exceeded bool
}

func (l *headerLimit) Read(p []byte) (int, error) {
	if l.left < 0 {
		return l.conn.Read(p)
	}
	if l.left == 0 {
		l.exceeded = true
		return 0, errors.New("response header too large")
	}
	if len(p) > l.left {
		p = p[:l.left]
	}
	n, err := l.conn.Read(p)
	l.left -= n
	return n, err
}

// h1Body is a response's body: at its end, or when closed after it, the
// connection goes back to the idle pool, else it is closed. Unlike
// http.Transport's, it is read and closed from one goroutine at a time.
type h1Body struct {
	body   io.ReadCloser
	pc     *h1Conn
	client *h1Client
	ctx    context.Context
	stop   func() bool
	reuse  bool
	done   bool // the connection is released
	closed bool // Close was called
	cut    bool // Close set the read deadline in the past
}

// errClosedBody is a read after Close, as http.Transport's body says.
var errClosedBody = errors.New("http: read on closed response body")

func (b *h1Body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errClosedBody
	}
	if b.done {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	switch {
	case err == io.EOF:
		b.release()
	case err != nil:
		b.reuse = false
		b.release()
		err = contextError(b.ctx, err)
	}
	return n, err
}

// Close ends the body. One read whole but for the end of its framing
// (a chunked body's last chunk) gives its connection back when that end
// is buffered already; Close never waits for the upstream.
func (b *h1Body) Close() error {
	b.closed = true
	if b.done {
		return nil
	}
	b.pc.conn.SetReadDeadline(inThePast)
	b.cut = true
	var rest [64]byte
	if n, err := b.body.Read(rest[:]); n > 0 || err != io.EOF {
		b.reuse = false
	}
	b.release()
	return nil
}

// release ends the request on its connection: idle again when its
// response was read whole and nothing follows it, closed otherwise. (The
// body's own Close is not called: it would read what is left of it.)
func (b *h1Body) release() {
	b.done = true
	// stop reports false when the context ended: the deadline may be in
	// the past already.
	if !b.stop() || !b.reuse || b.pc.br.Buffered() > 0 {
		b.pc.conn.Close()
		return
	}
	if b.cut {
		b.pc.conn.SetReadDeadline(time.Time{})
	}
	b.client.putIdle(b.pc)
}
