// Package procgroup runs a command in a process group of its own, so
// that a signal reaches what the command started too: the Java process
// of gcloud's Firestore emulator, the postgres that runuser starts, the
// node of a test's server-everything.
package procgroup

import (
	"os/exec"
	"syscall"
	"time"
)

// Process is a started command, the leader of its process group.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the leader has been waited for
}

// Start starts cmd in a process group of its own. A goroutine waits for
// the leader and ends when it exits; nothing else may call cmd.Wait.
func Start(cmd *exec.Cmd) (*Process, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

// Exited reports whether the leader has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to every process of the group.
func (p *Process) signal(sig syscall.Signal) error {
	// The group's ID is the leader's PID (Setpgid).
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Stop sends sig to the group and waits up to limit for the leader to
// exit, then kills the group: the leader if it is still there, and the
// children that outlived it. It reports whether the leader exited within
// limit.
func (p *Process) Stop(sig syscall.Signal, limit time.Duration) bool {
	p.signal(sig)
	inTime := true
	select {
	case <-p.done:
	case <-time.After(limit):
		inTime = false
		p.signal(syscall.SIGKILL)
		<-p.done
	}
	p.signal(syscall.SIGKILL)
	return inTime
}
