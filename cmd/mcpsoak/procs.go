package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/internal/wait"
	"mcpproxy.dev/mcpproxy/shared/keyring"
	"mcpproxy.dev/mcpproxy/shared/logbuffer"
	"mcpproxy.dev/mcpproxy/shared/postgres"
)

// project is the GOOGLE_CLOUD_PROJECT of every process of the run.
const project = "mcp-soak"

// child is a process the soak started: an upstream, a proxy or a flusher.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	// stats is the request log's figures from a proxy's "proxy shut
	// down" line, nil until then.
	stats *logbuffer.Stats
	// panics counts the log lines that say a goroutine panicked: a
	// recovered panic in a handler, or the runtime's last words.
	panics int
	// planned is set when the soak itself stops the process; an exit
	// without it is a crash.
	planned  atomic.Bool
	exitedAt time.Time // when it exited, set before done is closed
	crash    bool      // it exited before the soak stopped it
	peakRSS  int64     // VmHWM in bytes, read just before the soak stops it
	mu       sync.Mutex
}

// start runs bin with env added to the soak's environment. Its output
// goes to DIR/NAME.log, without the proxy's line per request (a soak
// makes millions).
func start(dir, name, bin string, env []string, args ...string) (*child, error) {
	logFile, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	// Its own process group: Ctrl-C on the soak must not reach it before
	// the soak has stopped the clients.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	cmd.Stdout = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { // ends when the process closes its stderr
		c.filter(out, logFile)
		cmd.Wait()
		logFile.Close()
		c.mu.Lock()
		c.exitedAt = time.Now()
		c.crash = !c.planned.Load()
		c.mu.Unlock()
		close(c.done)
	}()
	return c, nil
}

// filter copies a process's log lines to w, leaving out the proxy's
// per-request lines, and keeps the request log figures of its shutdown
// line.
func (c *child) filter(r io.Reader, w io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		// The shape is shared/logging's: {"time":...,"severity":...,"message":...}.
		head := string(line[:min(len(line), 100)])
		if strings.Contains(head, `"message":"mcp request"`) && strings.Contains(head, `"severity":"INFO"`) {
			continue
		}
		w.Write(line)
		w.Write([]byte{'\n'})
		if panicLine(line) {
			c.mu.Lock()
			c.panics++
			c.mu.Unlock()
		}
		if strings.Contains(string(line), `"proxy shut down`) {
			var l struct {
				RequestLog logbuffer.Stats `json:"requestLog"`
			}
			if json.Unmarshal(line, &l) == nil {
				c.mu.Lock()
				c.stats = &l.RequestLog
				c.mu.Unlock()
			}
		}
	}
	io.Copy(io.Discard, r)
}

// panicLine tells the lines of a recovered handler panic (the proxy's
// own and net/http's) and of a panic or fatal error that ends the process.
func panicLine(line []byte) bool {
	return bytes.Contains(line, []byte(`"panic in handler"`)) || bytes.Contains(line, []byte("http: panic serving")) ||
		bytes.HasPrefix(line, []byte("panic: ")) || bytes.HasPrefix(line, []byte("fatal error: "))
}

// stop sends sig and waits up to limit for the exit; it reports the
// exit code, or -1 when the process had to be killed. The exit is
// planned: it is not counted as a crash.
func (c *child) stop(sig syscall.Signal, limit time.Duration) int {
	if c.planned.CompareAndSwap(false, true) {
		if rss, err := peakRSS(c.cmd.Process.Pid); err == nil {
			c.mu.Lock()
			c.peakRSS = rss
			c.mu.Unlock()
		}
	}
	c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(limit):
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
		return -1
	}
	return c.cmd.ProcessState.ExitCode()
}

// crashed reports whether the process exited without the soak stopping
// it, and when.
func (c *child) crashed() (bool, time.Time) {
	select {
	case <-c.done:
	default:
		return false, time.Time{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.crash, c.exitedAt
}

// peakRSS is the high-water mark of a process's resident memory (Linux).
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func (c *child) logStats() *logbuffer.Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// wellBehaved is how many well-behaved tenants share the proxy (with
// the hostile one, when there is one); the clients are spread over them.
const wellBehaved = 2

// env is what the soak's services are.
type env struct {
	dir    string
	bin    string
	pg     *stack.Postgres
	fs     *stack.Firestore
	encKey string
	// tenants are the well-behaved tenants, each an organization with an
	// instance in front of the demo upstream and a key its clients use.
	tenants  []stack.Seeded
	hostile  *hostileTenant // nil when the run has none
	upAddr   string         // the upstream's fixed address
	upstream *child
	front    *front
	proxies  []*child // every proxy started, the current one last
	flushers [2]*child
	flushURL [2]string
	nextID   int
}

func (e *env) devserverEnv(port int) []string {
	return []string{"HOST=127.0.0.1", fmt.Sprintf("PORT=%d", port), "DATABASE_URL=" + e.pg.URL(),
		"FIRESTORE_EMULATOR_HOST=" + e.fs.Host(), "GOOGLE_CLOUD_PROJECT=" + project,
		// The request log keeps its defaults: its buffer must hold what
		// comes while the emulator is down (some 20 s with the restart of
		// the JVM and the client's reconnection, at about 2,000 requests a
		// second here). Drops are counted and fail the run.
		"MCP_ENCRYPTION_KEY=" + e.encKey, "LOG_LEVEL=INFO",
		// One P, as deploy.sh runs the proxy on one vCPU.
		"GOMAXPROCS=1"}
}

// startServices starts Postgres, the emulator and the upstream, and seeds
// an organization, server, config, instance and key.
func startServices(ctx context.Context, c *config, e *env) error {
	var err error
	if e.pg, err = stack.StartPostgres(ctx, stack.PostgresOptions{Dir: e.dir, Keep: c.keep, Logf: c.logf}); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if e.fs, err = stack.StartFirestore(ctx, stack.FirestoreOptions{Dir: e.dir, Project: project, Restartable: true, Logf: c.logf}); err != nil {
		return fmt.Errorf("firestore emulator: %w", err)
	}
	port, err := stack.FreePort()
	if err != nil {
		return err
	}
	e.upAddr = fmt.Sprintf("127.0.0.1:%d", port)
	if err := e.startUpstream(ctx); err != nil {
		return err
	}
	if c.hostile {
		if e.hostile, err = startHostile(); err != nil {
			return err
		}
	}
	var raw [32]byte
	rand.Read(raw[:])
	e.encKey = base64.StdEncoding.EncodeToString(raw[:])
	return e.seed(ctx)
}

func (e *env) startUpstream(ctx context.Context) error {
	u, err := start(e.dir, "upstream", filepath.Join(e.bin, "demo-upstream"), nil, "--transport", "http", "--addr", e.upAddr)
	if err != nil {
		return err
	}
	e.upstream = u
	return waitHTTP(ctx, "http://"+e.upAddr+"/mcp", u)
}

// waitHTTP waits until url answers anything over HTTP.
func waitHTTP(ctx context.Context, url string, c *child) error {
	client := http.Client{Timeout: time.Second}
	err := wait.Until(ctx, 30*time.Second, func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	if err != nil {
		select {
		case <-c.done:
			return fmt.Errorf("%s exited (see %s.log)", c.name, c.name)
		default:
		}
		return fmt.Errorf("%s at %s: %w", c.name, url, err)
	}
	return nil
}

func (e *env) seed(ctx context.Context) error {
	keys, err := keyring.Parse(e.encKey)
	if err != nil {
		return err
	}
	db, err := postgres.Open(ctx, postgres.Options{URL: e.pg.URL()}, keys)
	if err != nil {
		return err
	}
	defer db.Close()
	for i := range wellBehaved {
		seeded, err := stack.SeedDemo(ctx, db, fmt.Sprintf("Soak %c", 'A'+i), "http://"+e.upAddr+"/mcp")
		if err != nil {
			return err
		}
		e.tenants = append(e.tenants, seeded)
	}
	if e.hostile != nil {
		return e.hostile.seed(ctx, db, e.tenants[0].Instance.ID)
	}
	return nil
}

// startDevserver starts a devserver on a free port and waits for it.
func (e *env) startDevserver(ctx context.Context, name string) (*child, string, error) {
	port, err := stack.FreePort()
	if err != nil {
		return nil, "", err
	}
	c, err := start(e.dir, name, filepath.Join(e.bin, "devserver"), e.devserverEnv(port))
	if err != nil {
		return nil, "", err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitHTTP(ctx, base+"/health", c); err != nil {
		c.stop(syscall.SIGKILL, 5*time.Second)
		return nil, "", err
	}
	return c, base, nil
}

// startProxy starts a new proxy process and routes the front to it.
func (e *env) startProxy(ctx context.Context) error {
	e.nextID++
	p, base, err := e.startDevserver(ctx, fmt.Sprintf("proxy-%d", e.nextID))
	if err != nil {
		return err
	}
	e.proxies = append(e.proxies, p)
	u, _ := url.Parse(base)
	e.front.target.Store(u)
	return nil
}

func (e *env) close() {
	for _, p := range e.proxies {
		p.stop(syscall.SIGKILL, 5*time.Second)
	}
	for _, f := range e.flushers {
		if f != nil {
			f.stop(syscall.SIGKILL, 5*time.Second)
		}
	}
	if e.upstream != nil {
		e.upstream.stop(syscall.SIGKILL, 5*time.Second)
	}
	if e.hostile != nil {
		e.hostile.close()
	}
	if e.fs != nil {
		e.fs.Close()
	}
	if e.pg != nil {
		e.pg.Close()
	}
}

// frontHeader marks the front's own answers, so that clients tell them
// from the proxy's.
const frontHeader = "X-Soak-Front"

// front plays Cloud Run's routing: one URL for the clients, the backend
// swapped atomically when a new proxy process takes over.
type front struct {
	target atomic.Pointer[url.URL]
	rp     *httputil.ReverseProxy
}

func newFront() *front {
	f := &front{}
	f.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(f.target.Load())
			r.Out.Host = r.Out.URL.Host
		},
		Transport: &http.Transport{MaxIdleConns: 1000, MaxIdleConnsPerHost: 1000, IdleConnTimeout: 90 * time.Second},
		// The proxy answers JSON or an event stream; both go out at once.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.Header().Set(frontHeader, "error")
			http.Error(w, "front: "+err.Error(), http.StatusBadGateway)
		},
	}
	return f
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.rp.ServeHTTP(w, r) }
