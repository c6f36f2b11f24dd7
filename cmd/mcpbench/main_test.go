package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mcpproxy.dev/mcpproxy/internal/testbin"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

func TestReplaceSection(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "B.md")
	section := sectionBegin + "\nnew figures\n" + sectionEnd

	os.WriteFile(path, []byte("# Benchmarks\n\nintro\n\n"+sectionBegin+"\nold figures\n"+sectionEnd+"\n\n## Older runs\n"), 0o644)
	if err := replaceSection(path, sectionBegin, sectionEnd, section); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if want := "# Benchmarks\n\nintro\n\n" + section + "\n\n## Older runs\n"; string(got) != want {
		t.Errorf("replaced:\n%s\nwant:\n%s", got, want)
	}

	os.WriteFile(path, []byte("# Benchmarks\n"), 0o644)
	if err := replaceSection(path, sectionBegin, sectionEnd, section); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "# Benchmarks\n\n"+section+"\n" {
		t.Errorf("appended:\n%s", got)
	}

	os.WriteFile(path, []byte("# Benchmarks\n"+sectionBegin+"\nno end\n"), 0o644)
	if err := replaceSection(path, sectionBegin, sectionEnd, section); err == nil || !strings.Contains(err.Error(), "markers") {
		t.Errorf("one marker: err = %v; want the broken markers named", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Contains(got, []byte("no end")) {
		t.Error("a file with broken markers was rewritten")
	}
}

func TestHelpers(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", 2945.4: "2,945"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q; want %q", v, got, want)
		}
	}
	if median(nil) != 0 || median([]float64{3, 1, 2}) != 2 || median([]float64{4, 1, 2, 3}) != 2.5 {
		t.Error("median is wrong")
	}
	o, err := parse([]string{"-protocols", "2026-07-28", "-large", "", "-load", "sdk"}, &bytes.Buffer{})
	if err != nil || !o.sdk || len(o.large) != 0 || fmt.Sprint(o.protocols) != "[2026-07-28]" || fmt.Sprint(o.upstreamProtocols) != "[2025-11-25 2026-07-28]" {
		t.Errorf("parse = %+v, %v", o, err)
	}
	if size(1) != "1 KiB" || size(4096) != "4 MiB" || size(1536) != "1536 KiB" {
		t.Error("size is wrong")
	}
	for _, args := range [][]string{{"-clients", "1,x"}, {"-clients", "0"}, {"-rounds", "0"}, {"extra"},
		{"-protocols", "2025-06-18,1999-01-01"}, {"-protocols", ""}, {"-upstream-protocols", "x"}, {"-load", "grpc"}, {"-large", "1,-4"}} {
		if _, err := parse(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parse(%v) accepted bad flags", args)
		}
	}
}

// TestBench runs the whole benchmark briefly (one round, half a second a
// run), from the built binaries, against the Postgres and Firestore
// emulator of the test environment, and checks the section and chart it
// writes: rows of both client protocols, of the proxy asking upstreams
// for the other version, and of large results.
func TestBench(t *testing.T) {
	for _, name := range []string{"DATABASE_URL", "FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT"} {
		if os.Getenv(name) == "" {
			t.Fatalf("%s is not set: run the tests under devstack (make test)", name)
		}
	}
	bin := testbin.Dir(t, "mcpproxy.dev/mcpproxy/cmd/mcpbench", "mcpproxy.dev/mcpproxy/cmd/mcpload",
		"mcpproxy.dev/mcpproxy/cmd/devserver", "mcpproxy.dev/mcpproxy/cmd/demo-upstream")
	out := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	os.WriteFile(out, []byte("# Benchmarks\n\n"+sectionBegin+"\nold\n"+sectionEnd+"\n\n## Kept\n"), 0o644)
	chart := filepath.Join(t.TempDir(), "docs", "chart.svg")
	cmd := exec.Command(filepath.Join(bin, "mcpbench"), "-bin", bin, "-duration", "500ms", "-rounds", "1",
		"-clients", "1,4", "-large", "1,256", "-large-clients", "2", "-cold", "1", "-out", out, "-chart", chart)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mcpbench: %v\n%s", err, stderr.String())
	}
	md, _ := os.ReadFile(out)
	s := string(md)
	if strings.Contains(s, "\nold\n") || !strings.HasSuffix(s, sectionEnd+"\n\n## Kept\n") {
		t.Errorf("the section was not replaced in place:\n%s", s)
	}
	other := proxyFor("2026-07-28")
	if upstream.DefaultProtocolVersion == "2026-07-28" {
		other = proxyFor("2025-11-25")
	}
	var rows []string
	for _, protocol := range []string{"2025-06-18", "2026-07-28"} {
		for _, clients := range []string{"1", "4"} {
			for _, target := range []string{"direct", "reverseproxy", "reverseproxy-1p", "proxy", other, tokenTarget} {
				rows = append(rows, "| "+protocol+" | "+clients+" | "+target+" |")
			}
		}
		rows = append(rows, "| "+protocol+" clients: proxy CPU per call at 4 clients ≤ 1.0× `reverseproxy-1p`'s |",
			"| "+protocol+" clients: CPU per call with an access token at 4 clients ≤ 1.1× with the key |")
	}
	for _, size := range []string{"1 KiB", "256 KiB"} {
		for _, target := range []string{"direct", "reverseproxy", "reverseproxy-1p", "proxy"} {
			rows = append(rows, "| "+size+" | "+target+" |")
		}
	}
	rows = append(rows, "| 256 KiB result at 2 clients: proxy peak RSS ≤ the 1 KiB result's + 4 MiB |",
		"| "+other+" | "+strings.TrimPrefix(other, "proxy-up-")+" |", "against `reverseproxy-1p` ")
	for _, row := range rows {
		if !strings.Contains(s, row) {
			t.Errorf("no row %q in:\n%s", row, s)
		}
	}
	// The warm proxy sends no statement; every entry it logged reached
	// Firestore.
	for _, want := range []string{"| 0 Postgres statements per warm request | 0 statements", "dropped 0)", "Cold start, 1 times"} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in:\n%s", want, s)
		}
	}
	if !strings.Contains(stdout.String(), sectionBegin) {
		t.Error("the section was not printed")
	}
	svg, err := os.ReadFile(chart)
	if err != nil || !bytes.Contains(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("proxy, 4 client(s)")) {
		t.Errorf("chart: %v, %d bytes", err, len(svg))
	}
}

// TestMemory runs `mcpbench memory` with freshly built binaries: every
// hostile load against a real proxy process (the devserver, as deployed
// in 256 MiB) and the hostile upstream in a process of its own. The run
// itself fails on a process that died, a call that was neither answered
// nor refused with a JSON-RPC error, a call within the limits refused for
// anything but room (a 503 after waiting for it, which a machine busy
// with the rest of make test may see), or a peak RSS of 256 MiB; the test
// checks it passed and wrote a row per load.
func TestMemory(t *testing.T) {
	for _, name := range []string{"DATABASE_URL", "FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT"} {
		if os.Getenv(name) == "" {
			t.Fatalf("%s is not set: run the tests under devstack (make test)", name)
		}
	}
	bin := testbin.Dir(t, "mcpproxy.dev/mcpproxy/cmd/mcpbench", "mcpproxy.dev/mcpproxy/cmd/devserver",
		"mcpproxy.dev/mcpproxy/internal/hostile/hostile-upstream")
	out := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	os.WriteFile(out, []byte("# Benchmarks\n"), 0o644)
	cmd := exec.Command(filepath.Join(bin, "mcpbench"), "memory", "-bin", bin, "-out", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mcpbench memory: %v\n%s", err, stderr.String())
	}
	md, _ := os.ReadFile(out)
	for _, l := range memoryLoads() {
		if !strings.Contains(string(md), "| "+l.name+" | ") {
			t.Errorf("no row for %q in:\n%s", l.name, md)
		}
	}
	if strings.Contains(string(md), "**died**") {
		t.Errorf("a proxy process died:\n%s", md)
	}
}

// TestTenants runs mcpbench tenants small (30 tenants, 6 s a mode): its
// section is written in place, with the change feed's read among the
// statements of the proxy that reads it.
func TestTenants(t *testing.T) {
	bin := testbin.Dir(t, "mcpproxy.dev/mcpproxy/cmd/mcpbench", "mcpproxy.dev/mcpproxy/cmd/devserver", "mcpproxy.dev/mcpproxy/cmd/demo-upstream")
	out := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	os.WriteFile(out, []byte("# B\n\n"+tenantsSectionBegin+"\nold\n"+tenantsSectionEnd+"\n"), 0o644)
	cmd := exec.Command(filepath.Join(bin, "mcpbench"), "tenants", "-bin", bin, "-tenants", "30", "-duration", "6s", "-clients", "2", "-out", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mcpbench tenants: %v\n%s", err, stderr.String())
	}
	md, _ := os.ReadFile(out)
	s := string(md)
	if strings.Contains(s, "\nold\n") || !strings.Contains(s, "| with the change feed, defaults") ||
		!strings.Contains(s, "SELECT id, kind, ref FROM config_changes") {
		t.Errorf("the section lacks the figures:\n%s", s)
	}
}
