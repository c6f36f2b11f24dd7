package upstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// smallAnswer is an echo tool's answer as an upstream of the go-sdk
// writes it: about 200 bytes, read whole.
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
	for _, typed := range []bool{false, true} {
		// typed: a 2026-07-28 client's, which gets the result's
		// resultType (Call.ResultType).
		b.Run(fmt.Sprintf("resultType=%v", typed), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				body.Reset(answer)
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
