package upstream

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// smallAnswer is an echo tool's answer as a 2026-07-28 upstream of the
// go-sdk writes it: about 200 bytes, read whole; an older upstream's has
// no resultType.
const smallAnswer = `{"jsonrpc":"2.0","id":"mcp-proxy-1234","result":{"content":[{"type":"text","text":"hello from the load generator, message 1234"}],"structuredContent":{"text":"hello"},"resultType":"complete"}}`

// BenchmarkReadSmallAnswer: readJSON of a small application/json answer,
// read whole, then taken as ReadAll takes it (the proxy's encodeReply).
func BenchmarkReadSmallAnswer(b *testing.B) {
	p := NewPool(PoolOptions{})
	b.Cleanup(p.Close)
	id, err := jsonrpc.MakeID("mcp-proxy-1234")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	up := tenant.Upstream{Name: "bench"}
	body, answer := &bytes.Reader{}, []byte(smallAnswer)
	resp := &http.Response{StatusCode: http.StatusOK, ContentLength: int64(len(smallAnswer)), Body: io.NopCloser(body)}
	untyped := bytes.Replace(answer, []byte(`,"resultType":"complete"`), nil, 1)
	for _, c := range []struct {
		name   string
		answer []byte
		// typed: a 2026-07-28 client's call, whose result gets its
		// resultType (Call.ResultType).
		typed bool
	}{{"2025-client", answer, false}, {"2026-client", answer, true}, {"2026-client-2025-upstream", untyped, true}} {
		typed := c.typed
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			resp.ContentLength = int64(len(c.answer))
			for b.Loop() {
				body.Reset(c.answer)
				res, err := p.readJSON(ctx, up, id, resp)
				if err != nil || res == nil {
					b.Fatal(res, err)
				}
				res.addType = typed
				raw, err := p.ReadAll(ctx, res)
				if err != nil || len(raw) == 0 {
					b.Fatal(err)
				}
			}
		})
	}
}
