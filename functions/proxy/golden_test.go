package proxy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"

	"golang.org/x/tools/txtar"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/hostile"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

var update = flag.Bool("update", false, "rewrite the responses in testdata/*.txtar with what the proxy answers, and docs/images/consent.png with the consent page")

// TestGolden sends the requests of every testdata/*.txtar to one proxy in
// front of acme's upstreams (and, for {{.HostileKey}}, an instance over
// internal/hostile's upstream, "evil") and compares each response with
// the one the file expects. An archive is a sequence of exchanges, each a section
// named after the case holding the request, then a section named
// "response":
//
//	-- tools/call on 2025-06-18 --
//	POST /mcp
//	MCP-Protocol-Version: 2025-06-18
//
//	{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"beta__echo","arguments":{"text":"hi"}}}
//	-- response --
//	200
//	Content-Type: application/json
//	Mcp-Session-Id:
//
//	{"id":3,"jsonrpc":"2.0","result":{"content":"<any>","structuredContent":{"text":"hi"}}}
//
// docs/testing.md describes the format, the placeholders and -update.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files in testdata (%v)", err)
	}
	e := newEnv(t, proxy.Options{AllowedOrigins: []string{"https://app.example.com"}})
	evil, _ := hostileUpstream(t, hostile.Good)
	hostileKey := e.AddInstance(t, "hostile", []postgres.Server{{Name: "Evil", Transport: tenant.TransportStreamableHTTP, URL: evil.URL}},
		[]string{"echo", "invalid", "cut", "deep", "progress"})
	vars := goldenVars{Key: e.Key, Instance: e.Seeded.Instance.ID, HostileKey: hostileKey}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			runGolden(t, e, file, vars)
		})
	}
}

// goldenVars are what a golden file's templates may name.
type goldenVars struct {
	Key, Instance, HostileKey string
}

// anyValue in a response matches any value, or any header value.
const anyValue = "<any>"

// keyHeaders are listed in a response that -update writes when the
// proxy sends them.
var keyHeaders = []string{"Content-Type", "WWW-Authenticate", "Allow", "Retry-After"}

var goldenFuncs = template.FuncMap{
	"repeat": strings.Repeat,
	"list": func(n int, s string) string {
		return strings.TrimSuffix(strings.Repeat(s+",", n), ",")
	},
}

func runGolden(t *testing.T, e *testenv.Env, file string, vars goldenVars) {
	a, err := txtar.ParseFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []txtar.File
	changed := false
	for i := 0; i < len(a.Files); i++ {
		req := a.Files[i]
		if req.Name == "response" {
			t.Fatalf("%s: a response without a request before it", file)
		}
		var want *txtar.File
		if i+1 < len(a.Files) && a.Files[i+1].Name == "response" {
			want = &a.Files[i+1]
			i++
		}
		var got []byte
		t.Run(req.Name, func(t *testing.T) {
			got = exchange(t, e, file, req, want, vars)
		})
		out = append(out, req)
		if *update && got != nil {
			changed = changed || want == nil || !bytes.Equal(want.Data, got)
			out = append(out, txtar.File{Name: "response", Data: got})
		} else if want != nil {
			out = append(out, *want)
		}
	}
	if changed {
		a.Files = out
		if err := os.WriteFile(file, txtar.Format(a), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// exchange sends req and compares the answer with want; with -update it
// returns the response section to write instead.
func exchange(t *testing.T, e *testenv.Env, file string, req txtar.File, want *txtar.File, vars goldenVars) []byte {
	r, err := goldenRequest(e, expand(t, req.Data, vars))
	if err != nil {
		t.Fatalf("%s: request %q: %v", file, req.Name, err)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeBody(resp.Header.Get("Content-Type"), body)
	if err != nil {
		t.Fatalf("response body: %v\n%s", err, body)
	}
	var w goldenResponse
	if want != nil {
		if w, err = parseResponse(expand(t, want.Data, vars)); err != nil {
			t.Fatalf("%s: response of %q: %v", file, req.Name, err)
		}
	}
	if *update {
		return formatResponse(t, resp, got, w, vars)
	}
	if want == nil {
		t.Fatalf("%s: %q has no response section: run with -update to write it", file, req.Name)
	}
	if resp.StatusCode != w.status {
		t.Errorf("status %d; want %d\n%s", resp.StatusCode, w.status, body)
	}
	for _, h := range w.headers {
		v := resp.Header.Get(h.name)
		switch {
		case h.value == anyValue && v == "":
			t.Errorf("no %s header; want one", h.name)
		case h.value != anyValue && v != h.value:
			t.Errorf("%s: %q; want %q", h.name, v, h.value)
		}
	}
	if path, ok := match(w.body, got, "$"); !ok {
		t.Errorf("body differs at %s:\ngot  %s\nwant %s", path, indent(got), indent(w.body))
	}
	return nil
}

// expand executes a section as a template.
func expand(t *testing.T, section []byte, vars goldenVars) string {
	tmpl, err := template.New("").Funcs(goldenFuncs).Parse(string(section))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, vars); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// goldenRequest reads "METHOD PATH", header lines, a blank line and the
// body.
func goldenRequest(e *testenv.Env, text string) (*http.Request, error) {
	head, body, _ := strings.Cut(text, "\n\n")
	lines := strings.Split(strings.TrimRight(head, "\n"), "\n")
	method, path, ok := strings.Cut(lines[0], " ")
	if !ok {
		return nil, fmt.Errorf("first line %q is not METHOD PATH", lines[0])
	}
	r, err := http.NewRequest(method, e.Proxy.URL+path, strings.NewReader(strings.TrimSuffix(body, "\n")))
	if err != nil {
		return nil, err
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json, text/event-stream")
	r.Header.Set("Authorization", "Bearer "+e.Key)
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("header line %q", l)
		}
		value = strings.TrimSpace(value)
		switch {
		case textproto.CanonicalMIMEHeaderKey(name) == "Host":
			r.Host = value
		case value == "":
			r.Header.Del(name)
		default:
			r.Header.Set(name, value)
		}
	}
	return r, nil
}

type goldenHeader struct{ name, value string }

type goldenResponse struct {
	status  int
	headers []goldenHeader
	body    any // nil: an empty body
}

func parseResponse(text string) (goldenResponse, error) {
	var w goldenResponse
	head, body, _ := strings.Cut(text, "\n\n")
	lines := strings.Split(strings.TrimRight(head, "\n"), "\n")
	var err error
	if w.status, err = strconv.Atoi(strings.TrimSpace(lines[0])); err != nil {
		return w, fmt.Errorf("first line %q is not a status code", lines[0])
	}
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return w, fmt.Errorf("header line %q", l)
		}
		w.headers = append(w.headers, goldenHeader{strings.TrimSpace(name), strings.TrimSpace(value)})
	}
	if strings.TrimSpace(body) != "" {
		if w.body, err = decodeJSON([]byte(body)); err != nil {
			return w, fmt.Errorf("body: %v", err)
		}
	}
	return w, nil
}

// decodeBody is a response body as a value: its JSON, or for an event
// stream the array of its events' data.
func decodeBody(contentType string, body []byte) (any, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	if !strings.HasPrefix(contentType, "text/event-stream") {
		return decodeJSON(body)
	}
	events := []any{}
	for _, block := range strings.Split(strings.TrimSpace(string(body)), "\n\n") {
		var data []string
		sc := bufio.NewScanner(strings.NewReader(block))
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
				data = append(data, strings.TrimPrefix(d, " "))
			}
		}
		v, err := decodeJSON([]byte(strings.Join(data, "\n")))
		if err != nil {
			return nil, fmt.Errorf("event %q: %v", block, err)
		}
		events = append(events, v)
	}
	return events, nil
}

func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("more than one JSON value")
	}
	return v, nil
}

// match reports whether got is want, "<any>" in want matching any value,
// and if not, the path of the first difference.
func match(want, got any, path string) (string, bool) {
	if want == anyValue {
		return path, got != nil
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return path, false
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if _, present := g[k]; !present {
				return path + "." + k, false
			}
			if p, ok := match(w[k], g[k], path+"."+k); !ok {
				return p, false
			}
		}
		return "", true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path, false
		}
		for i := range w {
			if p, ok := match(w[i], g[i], fmt.Sprintf("%s[%d]", path, i)); !ok {
				return p, false
			}
		}
		return "", true
	}
	return path, reflect.DeepEqual(want, got)
}

// keep is got with the "<any>" of want where got has a value.
func keep(want, got any) any {
	if want == anyValue && got != nil {
		return anyValue
	}
	switch g := got.(type) {
	case map[string]any:
		w, _ := want.(map[string]any)
		out := map[string]any{}
		for k, v := range g {
			out[k] = keep(w[k], v)
		}
		return out
	case []any:
		w, _ := want.([]any)
		out := make([]any, len(g))
		for i, v := range g {
			var wi any
			if i < len(w) {
				wi = w[i]
			}
			out[i] = keep(wi, v)
		}
		return out
	}
	return got
}

// formatResponse writes the response section -update stores.
func formatResponse(t *testing.T, resp *http.Response, got any, old goldenResponse, vars goldenVars) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", resp.StatusCode)
	listed := map[string]bool{}
	for _, h := range old.headers {
		listed[textproto.CanonicalMIMEHeaderKey(h.name)] = true
		v := resp.Header.Get(h.name)
		if h.value == anyValue && v != "" {
			v = anyValue
		}
		fmt.Fprintf(&b, "%s\n", strings.TrimSpace(h.name+": "+v))
	}
	for _, name := range keyHeaders {
		if v := resp.Header.Get(name); v != "" && !listed[textproto.CanonicalMIMEHeaderKey(name)] {
			fmt.Fprintf(&b, "%s: %s\n", name, v)
		}
	}
	if got != nil {
		b.WriteString("\n" + indent(keep(old.body, got)) + "\n")
	}
	s := b.String()
	// The values that change from run to run go back to their names.
	s = strings.ReplaceAll(s, vars.Key, "{{.Key}}")
	s = strings.ReplaceAll(s, vars.Instance, "{{.Instance}}")
	s = strings.ReplaceAll(s, vars.HostileKey, "{{.HostileKey}}")
	return []byte(s)
}

// indent writes v as JSON, an object or array on one line when it fits
// in 80 columns, else one member a line.
func indent(v any) string {
	var b strings.Builder
	writeIndented(&b, v, "")
	return b.String()
}

func writeIndented(b *strings.Builder, v any, prefix string) {
	line := oneLine(v)
	if len(prefix)+len(line) <= 80 {
		b.WriteString(line)
		return
	}
	inner := prefix + "  "
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteString("{\n")
		for i, k := range keys {
			b.WriteString(inner + oneLine(k) + ": ")
			writeIndented(b, v[k], inner)
			if i < len(keys)-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString(prefix + "}")
	case []any:
		b.WriteString("[\n")
		for i, e := range v {
			b.WriteString(inner)
			writeIndented(b, e, inner)
			if i < len(v)-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString(prefix + "]")
	default:
		b.WriteString(line)
	}
}

func oneLine(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
