package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestCloudLoggingShape(t *testing.T) {
	tests := []struct {
		log  func(*slog.Logger)
		want string
	}{
		{func(l *slog.Logger) { l.Debug("d") }, "DEBUG"},
		{func(l *slog.Logger) { l.Info("i") }, "INFO"},
		{func(l *slog.Logger) { l.Warn("w") }, "WARNING"},
		{func(l *slog.Logger) { l.Error("e") }, "ERROR"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		tt.log(New(&buf, slog.LevelDebug).With("instance", "i-1"))
		var line map[string]any
		if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
			t.Fatalf("not JSON: %q", buf.String())
		}
		if line["severity"] != tt.want {
			t.Errorf("severity = %v; want %s", line["severity"], tt.want)
		}
		if _, ok := line["message"]; !ok {
			t.Errorf("no message field: %v", line)
		}
		if _, ok := line["level"]; ok {
			t.Errorf("slog's level field left in: %v", line)
		}
		if line["instance"] != "i-1" {
			t.Errorf("attribute lost: %v", line)
		}
	}
}

func TestLevelFilters(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, slog.LevelWarn).Info("hidden")
	if buf.Len() != 0 {
		t.Errorf("info written at warn level: %q", buf.String())
	}
}
