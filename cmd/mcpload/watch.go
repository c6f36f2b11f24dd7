package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// userHZ is the unit of the CPU times in /proc/PID/stat. The kernel fixes
// it at 100 for user space on every Linux architecture Go runs on.
const userHZ = 100

// processFigures is what --watch reports for one process over the
// measured part of a run.
type processFigures struct {
	PID  int    `json:"pid"`
	Name string `json:"name"`
	// CPUMs is the user and system CPU time the process used, all its
	// threads, while the requests were measured.
	CPUMs float64 `json:"cpuMs"`
	// CPUUsPerRequest is CPUMs per request of the run, in microseconds.
	CPUUsPerRequest float64 `json:"cpuUsPerRequest"`
	// RSSMaxMiB is the largest resident set seen (sampled every 100 ms)
	// while the requests were measured; RSSPeakMiB is the highest since
	// the process started (the kernel's VmHWM, or RSSMaxMiB if higher).
	RSSMaxMiB  float64 `json:"rssMaxMiB"`
	RSSPeakMiB float64 `json:"rssPeakMiB"`
}

// watcher samples processes on this machine during a run.
type watcher struct {
	pids   []int
	cpu0   []time.Duration
	mu     sync.Mutex
	rssMax []int64 // KiB
	stop   chan struct{}
	done   chan struct{}
}

// parsePIDs reads "123,456".
func parsePIDs(s string) ([]int, error) {
	var pids []int
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		pid, err := strconv.Atoi(part)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("--watch: %q is not a process ID", part)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", pid)); err != nil {
			return nil, fmt.Errorf("--watch: no process %d on this machine", pid)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// startWatch reads each process's CPU time and starts sampling its RSS.
func startWatch(pids []int) (*watcher, error) {
	w := &watcher{pids: pids, cpu0: make([]time.Duration, len(pids)), rssMax: make([]int64, len(pids)),
		stop: make(chan struct{}), done: make(chan struct{})}
	for i, pid := range pids {
		cpu, err := processCPU(pid)
		if err != nil {
			return nil, err
		}
		w.cpu0[i] = cpu
	}
	w.sample()
	go func() {
		defer close(w.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
				w.sample()
			}
		}
	}()
	return w, nil
}

func (w *watcher) sample() {
	for i, pid := range w.pids {
		st, err := readStatus(pid)
		if err != nil {
			continue // gone: finish reports it
		}
		w.mu.Lock()
		w.rssMax[i] = max(w.rssMax[i], st["VmRSS"])
		w.mu.Unlock()
	}
}

// finish stops sampling and returns the figures of each process for a run
// of n requests.
func (w *watcher) finish(n uint64) ([]processFigures, error) {
	close(w.stop)
	<-w.done
	w.sample()
	out := make([]processFigures, len(w.pids))
	for i, pid := range w.pids {
		cpu, err := processCPU(pid)
		if err != nil {
			return nil, err
		}
		st, err := readStatus(pid)
		if err != nil {
			return nil, err
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		used := cpu - w.cpu0[i]
		// The kernel updates VmHWM from batched counters, so it can lag
		// behind a VmRSS sampled a moment before: the peak is the higher.
		f := processFigures{PID: pid, Name: strings.TrimSpace(string(comm)), CPUMs: float64(used.Microseconds()) / 1000,
			RSSMaxMiB: mib(w.rssMax[i]), RSSPeakMiB: mib(max(st["VmHWM"], w.rssMax[i]))}
		if n > 0 {
			f.CPUUsPerRequest = float64(used.Microseconds()) / float64(n)
		}
		out[i] = f
	}
	return out, nil
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// processCPU is the user plus system time of a process, all threads, from
// /proc/PID/stat (fields 14 and 15, after the command name in parentheses).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("process %d: %w", pid, err)
	}
	// The command name may hold spaces and parentheses: fields start
	// after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("process %d: unexpected stat line", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state): utime is field 14, stime field 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("process %d: unexpected stat line", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("process %d: %w", pid, err)
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// readStatus reads the "kB" figures of /proc/PID/status.
func readStatus(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	out := map[string]int64{}
	for line := range strings.SplitSeq(string(b), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || !strings.HasSuffix(value, " kB") {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(value, " kB")), 10, 64); err == nil {
			out[name] = n
		}
	}
	return out, nil
}
