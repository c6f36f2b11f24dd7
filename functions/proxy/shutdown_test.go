package proxy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/wait"
	"mcpproxy.dev/mcpproxy/shared/logbuffer"
)

// TestSIGTERMDrainsRequestLog runs the proxy as a real process (the dev
// server binary), sends it traffic, signals it, and checks that it exits
// in time and that every request it answered has its entry in Firestore.
// Batches are held back (a one-minute age, a batch size never reached), so
// every entry reaches Firestore through the shutdown drain.
func TestSIGTERMDrainsRequestLog(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	coll := firestoretest.Collection(t)
	p := startDevserver(t, e, coll, "LOG_BATCH_MAX_AGE=1m", "LOG_BATCH_ENTRIES=100000")
	url, stderr := p.url, p.stderr
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"hi"}}}`
	send := func(ctx context.Context, trace string) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+e.Key)
		req.Header.Set("traceparent", "00-"+trace+"-0000000000000001-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if err := wait.Until(context.Background(), 30*time.Second, func() bool {
		code, err := send(context.Background(), newTrace())
		return err == nil && code == http.StatusOK
	}); err != nil {
		t.Fatalf("the dev server did not start: %v\n%s", err, stderr.String())
	}

	var mu sync.Mutex
	answered := map[string]bool{}
	refused := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				trace := newTrace()
				code, err := send(context.Background(), trace)
				mu.Lock()
				switch {
				case err == nil && code == http.StatusOK:
					answered[trace] = true
				case err == nil && code == http.StatusServiceUnavailable:
					refused++
				}
				mu.Unlock()
				if err != nil {
					return // the process is gone
				}
			}
		})
	}
	time.Sleep(time.Second)
	signalled := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	select {
	case <-p.exited:
		exitErr = p.exitErr
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15 s after SIGTERM: %s", stderr.String())
	}
	took := time.Since(signalled)
	close(stop)
	wg.Wait()
	if exitErr != nil {
		t.Errorf("exit: %v; want status 0\n%s", exitErr, stderr.String())
	}
	if took > 9*time.Second {
		t.Errorf("exited %v after SIGTERM; want within 9 s", took)
	}
	if !strings.Contains(stderr.String(), `"message":"proxy shut down"`) {
		t.Errorf("no shutdown line in the log:\n%s", stderr.String())
	}

	store := &logbuffer.Firestore{Client: firestoretest.Client(t, firestoretest.Host(t)), Collection: coll}
	batches, _, err := store.Oldest(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	logged := map[string]int{}
	for _, b := range batches {
		entries, err := logbuffer.DecodeEntries(b.Entries)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			logged[en.RequestID]++
		}
	}
	missing := 0
	for trace := range answered {
		if logged[trace] != 1 {
			missing++
		}
	}
	if len(answered) < 50 || missing != 0 {
		t.Errorf("%d of %d answered requests have no entry (or more than one); want all logged once", missing, len(answered))
	}
	t.Logf("answered %d, refused while draining %d, entries %d, exit after %v", len(answered), refused, len(logged), took)
}

func newTrace() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
