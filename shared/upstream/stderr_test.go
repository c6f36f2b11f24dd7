package upstream

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// TestStderrFlood: a stdio upstream that writes 10,000 lines to its
// stderr at once gets about twice stderrLines of them into the log, and a
// later line says how many were left out.
func TestStderrFlood(t *testing.T) {
	var out bytes.Buffer
	w := newStderrLog(slog.New(slog.NewJSONHandler(&out, nil)), tenant.Upstream{Name: "Noisy"})
	start := time.Now()
	w.Write([]byte(strings.Repeat("spam\n", 10000)))
	time.Sleep(100 * time.Millisecond) // the limiter refills: the next line is written
	w.Write([]byte("after\n"))
	logged := strings.Count(out.String(), `"upstream stderr"`)
	if most := 2*stderrLines + int(stderrLines*time.Since(start).Seconds()) + 1; logged > most || logged < stderrLines {
		t.Errorf("%d of 10,001 lines logged; want between %d and %d", logged, stderrLines, most)
	}
	if !strings.Contains(out.String(), `"line":"after","leftOutBefore":`) || strings.Contains(out.String(), `"line":"after","leftOutBefore":0`) {
		t.Errorf("the line after the flood does not say how many were left out:\n%.500s", out.String()[max(0, out.Len()-500):])
	}
}
