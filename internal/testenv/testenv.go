// Package testenv builds what an integration test of the proxy stands
// on, in one call: a fresh migrated database on the real Postgres, a
// seeded tenant, the demo upstreams it names, and the proxy serving over
// HTTP, all stopped when the test ends.
//
//	e := testenv.New(t, testenv.Options{Tenant: stack.Tenant{Servers: []stack.Server{
//		{Server: postgres.Server{Name: "Alpha", Transport: tenant.TransportStreamableHTTP}},
//	}}})
//	resp, out := e.Post(t, "/mcp", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
package testenv

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/functions/proxy/oauth"
	"mcpproxy.dev/mcpproxy/internal/demo/demotest"
	"mcpproxy.dev/mcpproxy/internal/logcapture"
	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/shared/credentials"
	"mcpproxy.dev/mcpproxy/shared/logging"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// Options says what New builds. The zero value is a tenant without
// servers in front of a proxy with its defaults.
type Options struct {
	// Tenant is seeded (stack.Seed); Organization, Instance and Key
	// default to "Acme", "main" and "test". A Streamable HTTP server
	// without a URL is the demo upstream named after the server's
	// namespace, started by New (Env.Demo).
	Tenant stack.Tenant
	// Proxy configures the handler.
	Proxy proxy.Options
	// Pool configures the upstream pool; its Logger defaults to the
	// proxy's, and its Credentials to credentials.New(Credentials).
	Pool upstream.PoolOptions
	// Credentials configures the pool's credentials; their SaveToken
	// defaults to the database's and their Logger to the proxy's, as the
	// function wires them.
	Credentials credentials.Options
	// Logger is the proxy's log; nil logs at debug level into Env.Logs.
	Logger *slog.Logger
	// OAuth, when set, serves the authorization server beside the MCP
	// routes (Proxy.OAuth); its Keys default to a new key, its
	// ValidResource to the proxy's, its Logger to the proxy's.
	OAuth *oauth.Options
}

// Env is a proxy in front of a seeded tenant's upstreams.
type Env struct {
	DB *postgres.DB
	// Queries counts the statements sent to DB.
	Queries *pgtest.Counter
	// Logs holds what the proxy logged, unless Options.Logger was given.
	Logs *logcapture.Buffer
	// Seeded is the tenant; Key is its API key.
	Seeded stack.Seeded
	Key    string
	// Demo are the demo upstreams New started, by namespace.
	Demo map[string]*demotest.Upstream

	Pool    *upstream.Pool
	Handler *proxy.Handler
	// OAuth is the authorization server, when Options.OAuth was set.
	OAuth *oauth.Server
	// Proxy serves Handler; its URL is the proxy's.
	Proxy *httptest.Server
}

// New builds the env; everything it starts stops when the test ends.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	e := &Env{Queries: &pgtest.Counter{}, Demo: map[string]*demotest.Upstream{}}
	e.DB = pgtest.Open(t, e.Queries)
	tn := opts.Tenant
	tn.Organization = cmp.Or(tn.Organization, "Acme")
	tn.Instance = cmp.Or(tn.Instance, "main")
	tn.Key = cmp.Or(tn.Key, "test")
	tn.Servers = append([]stack.Server(nil), tn.Servers...)
	for i, s := range tn.Servers {
		if s.Server.URL == "" && s.Server.Transport == tenant.TransportStreamableHTTP {
			ns := tenant.Namespace(s.Server.Name)
			up := demotest.StartUpstream(t, ns)
			e.Demo[ns] = up
			tn.Servers[i].Server.URL = up.URL()
		}
	}
	seeded, err := stack.Seed(context.Background(), e.DB, tn)
	if err != nil {
		t.Fatalf("seed the tenant: %v", err)
	}
	e.Seeded, e.Key = seeded, seeded.Key
	e.serve(t, opts)
	return e
}

// serve starts a proxy of its own (caches, pool) over the env's database.
func (e *Env) serve(t testing.TB, opts Options) {
	logger := opts.Logger
	if logger == nil {
		e.Logs = &logcapture.Buffer{}
		logger = logging.New(e.Logs, slog.LevelDebug)
	}
	if opts.Pool.Logger == nil {
		opts.Pool.Logger = logger
	}
	if opts.Pool.Credentials == nil {
		if opts.Credentials.SaveToken == nil {
			opts.Credentials.SaveToken = e.DB.SaveOAuthToken
		}
		if opts.Credentials.Logger == nil {
			opts.Credentials.Logger = logger
		}
		opts.Pool.Credentials = credentials.New(opts.Credentials)
	}
	if opts.Proxy.StateKey == nil {
		// As deployed: every process of the env opens the others'
		// requestStates.
		key, err := proxy.StateKey(pgtest.TestKeyring(t))
		if err != nil {
			t.Fatal(err)
		}
		opts.Proxy.StateKey = key
	}
	e.Pool = upstream.NewPool(opts.Pool)
	t.Cleanup(e.Pool.Close)
	if opts.OAuth != nil {
		o := *opts.OAuth
		if o.Keys == nil {
			keys, err := oauth.ParseKeys(oauth.NewKeySpec("test"))
			if err != nil {
				t.Fatal(err)
			}
			o.Keys = keys
		}
		if o.ValidResource == nil {
			o.ValidResource = proxy.ValidResource
		}
		if o.Logger == nil {
			o.Logger = logger
		}
		e.OAuth = oauth.New(e.DB, o)
		opts.Proxy.OAuth = e.OAuth
	}
	e.Handler = proxy.New(e.DB, e.Pool, logger, opts.Proxy)
	e.Proxy = httptest.NewServer(e.Handler)
	t.Cleanup(e.Proxy.Close)
}

// Process is another proxy process over the same database and
// upstreams: cold caches and upstream sessions of its own, configured by
// opts (its Tenant is not used), and a log of its own.
func (e *Env) Process(t testing.TB, opts Options) *Env {
	t.Helper()
	e2 := *e
	e2.Logs = nil
	e2.serve(t, opts)
	return &e2
}

// Tenant is a tenant of servers, each offering tools, all of them
// selected, with a config whose environment holds
// DEMO_REGION=eu-{namespace} (the demo upstream's env tool reads it).
func Tenant(servers []postgres.Server, tools []string) stack.Tenant {
	var rows []postgres.Tool
	for _, n := range tools {
		rows = append(rows, postgres.Tool{Name: n})
	}
	var tn stack.Tenant
	for _, s := range servers {
		tn.Servers = append(tn.Servers, stack.Server{Server: s, Tools: rows, Select: tools,
			Credentials: tenant.Credentials{Env: map[string]string{"DEMO_REGION": "eu-" + tenant.Namespace(s.Name)}}})
	}
	return tn
}

// AddInstance seeds Tenant(servers, tools) as instance name of the env's
// organization and returns a key of that instance.
func (e *Env) AddInstance(t testing.TB, name string, servers []postgres.Server, tools []string) string {
	t.Helper()
	tn := Tenant(servers, tools)
	tn.OrganizationID, tn.Instance, tn.Key = e.Seeded.Organization.ID, name, name
	seeded, err := stack.Seed(context.Background(), e.DB, tn)
	if err != nil {
		t.Fatalf("seed instance %s: %v", name, err)
	}
	return seeded.Key
}

// Post sends body to the proxy at path as a JSON-RPC client does
// (Content-Type application/json, Accept of JSON and event streams, the
// env's key as a Bearer token), with header's values set over those; an
// empty value removes a header, and "Host" sets the request's host. It returns the response, its body
// read, and the body decoded as a JSON object (nil if it is not one).
func (e *Env) Post(t testing.TB, path string, header map[string]string, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.Proxy.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+e.Key)
	for k, v := range header {
		switch {
		case k == "Host":
			req.Host = v
		case v == "":
			req.Header.Del(k)
		default:
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(raw, &out)
	return resp, out
}

// Client connects a go-sdk MCP client to the proxy at path with key,
// speaking version (the test fails if another is negotiated), closed
// when the test ends. opts may be nil.
func (e *Env) Client(t testing.TB, path, key, version string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	transport := &mcp.StreamableClientTransport{Endpoint: e.Proxy.URL + path,
		HTTPClient: &http.Client{Transport: bearer(key)}, MaxRetries: -1}
	s, err := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, opts).Connect(context.Background(), transport,
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect to the proxy: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if got := s.InitializeResult().ProtocolVersion; got != version {
		t.Fatalf("negotiated %s; want %s", got, version)
	}
	return s
}

// bearer sends its key with every request of an MCP client.
type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper must not change the caller's request
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}
