package jsonstr

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// tricky are strings with every byte below 0x80, HTML characters,
// U+2028 and U+2029, and invalid UTF-8.
func tricky() []string {
	var all strings.Builder
	for c := 0; c < 0x80; c++ {
		all.WriteByte(byte(c))
	}
	return []string{"", "plain", all.String(), `<a href="x">&amp;</a>`, "line\u2028sep\u2029end",
		"bad \xff\xfe utf-8 \xc3", "é ü 日本", "tab\there\x00nul\x1fus"}
}

// TestAppendHTMLSafeAsEncodingJSON: AppendHTMLSafe writes what
// encoding/json writes, byte for byte.
func TestAppendHTMLSafeAsEncodingJSON(t *testing.T) {
	for _, s := range tricky() {
		want, _ := json.Marshal(s)
		if got := AppendHTMLSafe(nil, s); !bytes.Equal(got, want) {
			t.Errorf("AppendHTMLSafe(%q) = %s; want %s", s, got, want)
		}
	}
}

// TestAppendAsSlog: Append writes a string as log/slog's JSON handler
// writes a message, byte for byte.
func TestAppendAsSlog(t *testing.T) {
	for _, s := range tricky() {
		var out bytes.Buffer
		slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == slog.LevelKey {
				return slog.Attr{}
			}
			return a
		}})).Info(s)
		want := strings.TrimSuffix(strings.TrimPrefix(out.String(), `{"msg":`), "}\n")
		if got := Append(nil, s); string(got) != want {
			t.Errorf("Append(%q) = %s; want %s", s, got, want)
		}
	}
}
