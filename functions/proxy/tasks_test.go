package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// tasker is a 2026-07-28 upstream with the tasks extension, which the
// go-sdk does not have: tools/call of "ask" makes a task when the client
// declares the extension, and "always" makes one whatever it declares
// (which a server must not do); a task asks for the client's name
// (input_required), then completes with a greeting once tasks/update
// brings it. It records what reached it.
type tasker struct {
	mu    sync.Mutex
	tasks map[string]string // ID → status
	names map[string]string // ID → the name given
	seen  []string          // "method taskId Mcp-Name" of the tasks/* it got
	n     int
}

func (k *tasker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			Name           string          `json:"name"`
			TaskID         string          `json:"taskId"`
			InputResponses json.RawMessage `json:"inputResponses"`
			Meta           struct {
				Caps struct {
					Extensions map[string]any `json:"extensions"`
				} `json:"io.modelcontextprotocol/clientCapabilities"`
			} `json:"_meta"`
		} `json:"params"`
	}
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &msg); err != nil || msg.ID == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var result any
	var rpcErr any
	const times = `"createdAt":"2026-11-30T00:00:00Z","lastUpdatedAt":"2026-11-30T00:00:00Z","ttlMs":60000,"pollIntervalMs":10`
	switch msg.Method {
	case "server/discover":
		result = json.RawMessage(`{"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{"tools":{},"extensions":{"io.modelcontextprotocol/tasks":{}}},"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"tasker","version":"1"}}}`)
	case "tools/list":
		result = json.RawMessage(`{"resultType":"complete","ttlMs":0,"cacheScope":"private","tools":[{"name":"ask","inputSchema":{"type":"object"}},{"name":"always","inputSchema":{"type":"object"}}]}`)
	case "tools/call":
		_, declared := msg.Params.Meta.Caps.Extensions["io.modelcontextprotocol/tasks"]
		if msg.Params.Name == "ask" && !declared {
			result = json.RawMessage(`{"resultType":"complete","content":[{"type":"text","text":"no task"}]}`)
			break
		}
		k.n++
		id := fmt.Sprintf("task-%d", k.n)
		k.tasks[id] = "input_required"
		result = json.RawMessage(`{"resultType":"task","taskId":"` + id + `","status":"working","requestState":"upstream-secret",` + times + `}`)
	case "tasks/get", "tasks/update", "tasks/cancel":
		k.seen = append(k.seen, msg.Method+" "+msg.Params.TaskID+" "+r.Header.Get("Mcp-Name"))
		id := msg.Params.TaskID
		status, ok := k.tasks[id]
		if !ok {
			rpcErr = map[string]any{"code": -32602, "message": "Failed to retrieve task: Task not found"}
			break
		}
		switch msg.Method {
		case "tasks/update":
			var in map[string]struct {
				Content struct {
					Name string `json:"name"`
				} `json:"content"`
			}
			json.Unmarshal(msg.Params.InputResponses, &in)
			k.names[id] = in["name"].Content.Name
			k.tasks[id] = "completed"
			result = json.RawMessage(`{"resultType":"complete"}`)
		case "tasks/cancel":
			k.tasks[id] = "cancelled"
			result = json.RawMessage(`{"resultType":"complete"}`)
		default:
			task := `"resultType":"complete","taskId":"` + id + `","status":"` + status + `",` + times
			switch status {
			case "input_required":
				task += `,"inputRequests":{"name":{"method":"elicitation/create","params":{"mode":"form","message":"Your name?","requestedSchema":{"type":"object","properties":{"name":{"type":"string"}}}}}}`
			case "completed":
				task += `,"result":{"content":[{"type":"text","text":"Hello, ` + k.names[id] + `!"}],"isError":false}`
			}
			result = json.RawMessage("{" + task + "}")
		}
	default:
		rpcErr = map[string]any{"code": -32601, "message": "method not found"}
	}
	out := map[string]any{"jsonrpc": "2.0", "id": msg.ID}
	if rpcErr != nil {
		out["error"] = rpcErr
	} else {
		out["result"] = result
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (k *tasker) got() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.seen...)
}

func newTaskEnv(t *testing.T) (*inputEnv, *tasker) {
	t.Helper()
	k := &tasker{tasks: map[string]string{}, names: map[string]string{}}
	srv := httptest.NewServer(k)
	t.Cleanup(srv.Close)
	e := testenv.New(t, testenv.Options{
		Tenant: stack.Tenant{Organization: "Tasks A", Instance: "a", Key: "a",
			Servers: []stack.Server{{Server: postgres.Server{Name: "tasker", Transport: tenant.TransportStreamableHTTP, URL: srv.URL}}}},
		Pool: upstream.PoolOptions{ProtocolVersion: wire.V20260728},
	})
	inst := e.Seeded.Instance.ID
	return &inputEnv{Env: e, single: "/mcp/" + inst + "/tasker", aggregated: "/mcp/" + inst, upstreamURL: srv.URL}, k
}

const taskCaps = `{"elicitation":{},"extensions":{"io.modelcontextprotocol/tasks":{}}}`

// task posts a tasks/* request naming id in params and Mcp-Name.
func (e *inputEnv) task(t *testing.T, path, key, method, id string, params map[string]any, caps string) (int, map[string]any, map[string]any) {
	t.Helper()
	p := map[string]any{"taskId": id}
	for k, v := range params {
		p[k] = v
	}
	return e.call(t, path, key, method, id, p, caps)
}

// TestTasks follows a task through the proxy on both routes: created by
// tools/call, asking for input on tasks/get, answered by tasks/update,
// completed; the client sees only the proxy's task ID, the upstream only
// its own, in params and Mcp-Name alike.
func TestTasks(t *testing.T) {
	e, k := newTaskEnv(t)
	for _, route := range []struct{ path, tool string }{{e.single, "ask"}, {e.aggregated, "tasker__ask"}} {
		t.Run(route.path, func(t *testing.T) {
			_, r, err := e.call(t, route.path, "", "tools/call", route.tool, nil, taskCaps)
			id, _ := r["taskId"].(string)
			if r["resultType"] != "task" || !strings.HasPrefix(id, "mcpt1.") || strings.Contains(id, "task-") {
				t.Fatalf("tools/call: got %v, error %v; want a task with the proxy's ID", r, err)
			}
			if _, ok := r["requestState"]; ok {
				t.Errorf("the task result carries the upstream's requestState: %v", r)
			}
			_, r, err = e.task(t, route.path, "", "tasks/get", id, nil, taskCaps)
			if r["status"] != "input_required" || r["taskId"] != id || r["inputRequests"] == nil {
				t.Fatalf("tasks/get: got %v, error %v; want input_required under the proxy's ID", r, err)
			}
			_, r, err = e.task(t, route.path, "", "tasks/update", id, map[string]any{"inputResponses": answer("name", "name", "Ada")}, taskCaps)
			if r == nil || r["resultType"] != "complete" {
				t.Fatalf("tasks/update: got %v, error %v; want the acknowledgement", r, err)
			}
			_, r, err = e.task(t, route.path, "", "tasks/get", id, nil, taskCaps)
			if r["status"] != "completed" || !strings.Contains(fmt.Sprint(r["result"]), "Hello, Ada!") {
				t.Fatalf("tasks/get: got %v, error %v; want completed with Hello, Ada!", r, err)
			}
		})
	}
	for _, s := range k.got() {
		f := strings.Fields(s)
		if len(f) != 3 || !strings.HasPrefix(f[1], "task-") || f[1] != f[2] {
			t.Errorf("the upstream got %q; want its own task ID in params and Mcp-Name", s)
		}
	}
	t.Run("cancel", func(t *testing.T) {
		_, r, _ := e.call(t, e.single, "", "tools/call", "ask", nil, taskCaps)
		id, _ := r["taskId"].(string)
		if _, r, err := e.task(t, e.single, "", "tasks/cancel", id, nil, taskCaps); r == nil {
			t.Fatalf("tasks/cancel: error %v", err)
		}
		if _, r, _ := e.task(t, e.single, "", "tasks/get", id, nil, taskCaps); r["status"] != "cancelled" {
			t.Errorf("after tasks/cancel: %v; want cancelled", r)
		}
	})
}

// TestTasksRefused: a client that did not declare the extension never
// gets a task, nor reaches tasks/*; a task ID is refused when another
// tenant, another route or a forger presents it; the input requests of a
// task reach only a client that declared their kind.
func TestTasksRefused(t *testing.T) {
	e, k := newTaskEnv(t)
	_, r, _ := e.call(t, e.single, "", "tools/call", "ask", nil, taskCaps)
	id, _ := r["taskId"].(string)
	if id == "" {
		t.Fatalf("no task: %v", r)
	}
	t.Run("not declared", func(t *testing.T) {
		if _, r, err := e.call(t, e.single, "", "tools/call", "ask", nil, `{"elicitation":{}}`); fmt.Sprint(r["content"]) == "" || err != nil {
			t.Errorf("tools/call without the extension: got %v, error %v; want the upstream's plain result", r, err)
		}
		status, r, err := e.call(t, e.single, "", "tools/call", "always", nil, `{"elicitation":{}}`)
		wantRefused(t, status, r, err, -32021, "task")
		if ext := fmt.Sprint(err["data"]); !strings.Contains(ext, "io.modelcontextprotocol/tasks") {
			t.Errorf("error data %s; want requiredCapabilities.extensions naming the tasks extension", ext)
		}
		status, r, err = e.task(t, e.single, "", "tasks/get", id, nil, `{"elicitation":{}}`)
		wantRefused(t, status, r, err, -32021, "tasks extension")
	})
	t.Run("another tenant", func(t *testing.T) {
		b, err := stack.Seed(context.Background(), e.DB, stack.Tenant{Organization: "Tasks B", Instance: "b", Key: "b",
			Servers: []stack.Server{{Server: postgres.Server{Name: "tasker", Transport: tenant.TransportStreamableHTTP, URL: e.upstreamURL}}}})
		if err != nil {
			t.Fatal(err)
		}
		status, r, rpcErr := e.task(t, "/mcp/"+b.Instance.ID+"/tasker", b.Key, "tasks/get", id, nil, taskCaps)
		wantRefused(t, status, r, rpcErr, -32602, "not a task of this API key")
	})
	t.Run("another route or forged", func(t *testing.T) {
		status, r, err := e.task(t, e.aggregated, "", "tasks/get", id, nil, taskCaps)
		wantRefused(t, status, r, err, -32602, "not a task of this API key")
		for _, forged := range []string{"task-1", id[:len(id)-2] + "AA", "mcpt1.dGFzay0x"} {
			status, r, err := e.task(t, e.single, "", "tasks/cancel", forged, nil, taskCaps)
			wantRefused(t, status, r, err, -32602, "unknown taskId")
		}
	})
	t.Run("input not declared", func(t *testing.T) {
		status, r, err := e.task(t, e.single, "", "tasks/get", id, nil, `{"extensions":{"io.modelcontextprotocol/tasks":{}}}`)
		wantRefused(t, status, r, err, -32021, "elicitation")
	})
	for _, s := range k.got() {
		if !strings.HasPrefix(s, "tasks/get task-1 ") {
			t.Errorf("the upstream got %q; only tasks/get of task-1 from tenant A may reach it", s)
		}
	}
}
