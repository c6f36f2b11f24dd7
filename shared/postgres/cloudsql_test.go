package postgres

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"cloud.google.com/go/cloudsqlconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// recordingDialer stands in for the Cloud SQL connector in a unit test: it
// records what it is asked to dial and refuses.
type recordingDialer struct {
	mu        sync.Mutex
	instances []string
}

var errRefused = errors.New("recording dialer refuses")

func (d *recordingDialer) Dial(_ context.Context, instance string, _ ...cloudsqlconn.DialOption) (net.Conn, error) {
	d.mu.Lock()
	d.instances = append(d.instances, instance)
	d.mu.Unlock()
	return nil, errRefused
}

func TestCloudSQLDialerWiring(t *testing.T) {
	cfg, err := ParseConfig(Options{
		URL:                    "user=mcp-proxy@example-project.iam dbname=mcpproxy sslmode=require connect_timeout=2",
		InstanceConnectionName: "example-project:europe-west1:main",
	})
	if err != nil {
		t.Fatal(err)
	}
	d := &recordingDialer{}
	UseDialer(cfg, d, "example-project:europe-west1:main")
	if cfg.ConnConfig.TLSConfig != nil || len(cfg.ConnConfig.Fallbacks) != 0 {
		t.Error("TLS left on: the connector encrypts, pgx must not negotiate TLS over it")
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	err = pool.Ping(context.Background())
	if err == nil || !strings.Contains(err.Error(), errRefused.Error()) {
		t.Fatalf("ping error %v; want the dialer's refusal", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.instances) == 0 {
		t.Fatal("the pool never asked the dialer")
	}
	for _, got := range d.instances {
		if got != "example-project:europe-west1:main" {
			t.Errorf("dialed %q; want the instance connection name", got)
		}
	}
}
