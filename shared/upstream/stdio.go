package upstream

import (
	"bytes"
	"errors"
	"log/slog"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/time/rate"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// A stdio upstream is a child process of the proxy, one per upstream
// config and credentials, shared by every request of the process like any
// session. It runs in a process group of its own, so that what it starts
// (npx starts node) ends with it; its stderr goes to the logs line by
// line; when its session ends, for whatever reason, the process is
// waited for and its group killed, so none is left behind and none turns
// into a zombie.

// ErrCommandNotFound is why a stdio upstream whose command is not
// installed where the proxy runs is unavailable.
var ErrCommandNotFound = errors.New("command not found on this machine")

// stdioTerminate is how long closing a stdio upstream waits for it to exit
// after closing its stdin, and again after SIGTERM, before SIGKILL.
const stdioTerminate = 2 * time.Second

// maxStderrLine bounds one logged line of an upstream's stderr; a longer
// line is logged in pieces.
const maxStderrLine = 8 << 10

// stderrLog writes a stdio upstream's stderr to the log, one record per
// line, with the server's namespace.
type stderrLog struct {
	log       *slog.Logger
	namespace string
	mu        sync.Mutex
	buf       []byte
	lines     *rate.Limiter
	leftOut   int // lines not logged since the last one logged (under mu)
}

func newStderrLog(log *slog.Logger, up tenant.Upstream) *stderrLog {
	return &stderrLog{log: log, namespace: tenant.Namespace(up.Name), lines: rate.NewLimiter(stderrLines, 2*stderrLines)}
}

// stderrLines is how many stderr lines a second one stdio upstream may
// write to the proxy's log (twice that at once): a process that floods
// its stderr would otherwise flood the log every tenant shares, and the
// bill. The next line written says how many were left out.
const stderrLines = 50

func (w *stderrLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 && len(w.buf) < maxStderrLine {
			break
		}
		if i < 0 || i > maxStderrLine {
			i = maxStderrLine
			w.emit(w.buf[:i])
			w.buf = w.buf[i:]
			continue
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) == 0 {
		w.buf = nil // do not keep a large array for good
	}
	return len(p), nil
}

// flush logs what is left of an unterminated last line.
func (w *stderrLog) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

func (w *stderrLog) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(line) == 0 {
		return
	}
	if !w.lines.Allow() {
		w.leftOut++
		return
	}
	w.log.Info("upstream stderr", "upstream", w.namespace, "line", string(line), "leftOutBefore", w.leftOut)
	w.leftOut = 0
}

// stdioCommand makes the command of a stdio upstream: in its own process
// group, with only the environment StdioEnv gives it, apart from the
// proxy's secrets (isolation.go).
func stdioCommand(up tenant.Upstream, iso *isolation) (*exec.Cmd, error) {
	if up.Command == "" {
		return nil, errors.New("no command")
	}
	path, err := exec.LookPath(up.Command)
	if err != nil {
		return nil, &commandError{command: up.Command}
	}
	if err := iso.prepare(); err != nil {
		return nil, err
	}
	cmd := exec.Command(path, up.Args...)
	cmd.Env = StdioEnv(up.Credentials.Env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	iso.apply(cmd)
	// What the process started may hold its stderr open after it
	// exits; Wait does not wait for that.
	cmd.WaitDelay = stdioTerminate
	return cmd, nil
}

// commandError names the missing command; it is ErrCommandNotFound.
type commandError struct{ command string }

func (e *commandError) Error() string {
	return "command " + quoteName(e.command) + " not found on this machine"
}

func (e *commandError) Is(target error) bool { return target == ErrCommandNotFound }

func quoteName(s string) string { return "\"" + s + "\"" }

// stdioProcess is what the pool keeps of a started stdio upstream to end
// it completely.
type stdioProcess struct {
	cmd    *exec.Cmd
	stderr *stderrLog
}

// prepareStdio sends t's stderr to the log and shortens its shutdown;
// it returns what ended reaps, or nil when t is not a stdio transport.
func prepareStdio(t mcp.Transport, log *slog.Logger, up tenant.Upstream) *stdioProcess {
	ct, ok := t.(*mcp.CommandTransport)
	if !ok {
		return nil
	}
	p := &stdioProcess{cmd: ct.Command, stderr: newStderrLog(log, up)}
	ct.Command.Stderr = p.stderr
	ct.TerminateDuration = stdioTerminate
	return p
}

// ended finishes a stdio upstream whose session is over: it kills what is
// left of its process group and logs the rest of its stderr. The session's
// Close has waited for the process itself.
func (p *stdioProcess) ended() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	// The group's ID is the leader's PID (Setpgid). Its members are
	// killed; the group is gone when none is left (ESRCH).
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.stderr.flush()
}
