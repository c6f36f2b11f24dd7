package upstream

import (
	"bytes"
	"context"
	"testing"

	"mcpproxy.dev/mcpproxy/shared/wire"
)

// typedCases are held results, each valid JSON; for each, ReadAll of a
// result going to a 2026-07-28 client gives what WriteTo writes.
var typedCases = []string{
	`{"content":[{"type":"text","text":"hi"}],"resultType":"complete"}`,
	`{"content":[{"type":"text","text":"hi"}]}`,
	`{}`,
	`{"resultType":"input_required"}`,
	`{"a":{"resultType":1}}`,
	`{"a":"\"resultType\":"}`,
	`{"a":"x\\","resultType":"complete"}`,
	`{"r\u0065sultType":"complete"}`,
	`{"inputRequests":{}}`,
	`{"a":{"inputRequests":{}}}`,
	`{ "a" : 1 }`,
	`{"a":[1, 2]}`,
	`{"a":"b c"}`,
	`[1,2]`,
	`[ 1 ]`,
	`"text"`,
	`12.5e3`,
	`null`,
	`true`,
	`{"a":` + nested(wire.MaxDepth-2) + `}`,
	`{"a":` + nested(wire.MaxDepth-1) + `}`,
}

// TestTypedResult: what ReadAll gives a 2026-07-28 client of a held
// result is what WriteTo writes of it, byte for byte, or the same error.
func TestTypedResult(t *testing.T) {
	for _, held := range typedCases {
		for _, examined := range []bool{false, true} {
			checkTyped(t, []byte(held), examined)
		}
	}
}

func FuzzTypedResult(f *testing.F) {
	for _, held := range typedCases {
		f.Add([]byte(held), false)
	}
	f.Fuzz(func(t *testing.T, held []byte, examined bool) {
		// Held results are valid JSON within the depth a result has.
		rd := wire.NewBytesReader(held)
		if _, err := rd.CopyValue(nil, wire.CopyOptions{MaxDepth: wire.MaxDepth - 1}); err != nil || rd.Buffered() > 0 {
			return
		}
		checkTyped(t, bytes.TrimSpace(held), examined)
	})
}

func checkTyped(t *testing.T, held []byte, examined bool) {
	t.Helper()
	p := &Pool{}
	got, gotErr := p.ReadAll(context.Background(), &Result{held: held, addType: true, examined: examined})
	var want bytes.Buffer
	_, wantErr := (&Result{held: held, addType: true, examined: examined}).WriteTo(&want)
	switch {
	case (gotErr != nil) != (wantErr != nil):
		t.Errorf("%.100s (examined %v): ReadAll error %v; WriteTo's %v", held, examined, gotErr, wantErr)
	case gotErr == nil && !bytes.Equal(got, want.Bytes()):
		t.Errorf("%.100s (examined %v): ReadAll %.100s; WriteTo %.100s", held, examined, got, want.String())
	}
}
