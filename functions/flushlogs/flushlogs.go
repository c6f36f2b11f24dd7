// Package flushlogs is the FlushLogs function, called by Cloud Scheduler:
// it moves buffered request logs and lastUsedAt from Firestore into
// Postgres exactly once, with hourly aggregates, and applies retention.
package flushlogs

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"mcpproxy.dev/mcpproxy/shared/envfile"
	"mcpproxy.dev/mcpproxy/shared/logbuffer"
	"mcpproxy.dev/mcpproxy/shared/logging"
	"mcpproxy.dev/mcpproxy/shared/postgres"
)

func init() {
	functions.HTTP("FlushLogs", FlushLogs)
}

// Config is the FlushLogs function's environment; DATABASE_URL may be
// given as DATABASE_URL_FILE (envfile).
type Config struct {
	Postgres          postgres.Options
	ProjectID         string        `env:"GOOGLE_CLOUD_PROJECT"`
	FirestoreDatabase string        `env:"FIRESTORE_DATABASE, default=(default)"`
	Collection        string        `env:"REQUEST_LOG_COLLECTION, default=requestLogBatches"`
	Budget            time.Duration `env:"FLUSH_BUDGET, default=45s"`
	GroupSize         int           `env:"FLUSH_GROUP_SIZE, default=20"`
	LogRetentionDays  int           `env:"LOG_RETENTION_DAYS, default=90"`
	DedupeRetention   int           `env:"DEDUPE_RETENTION_DAYS, default=14"`
	LogLevel          slog.Level    `env:"LOG_LEVEL, default=INFO"`
}

// flusher is built on the first call and kept for the next ones; a
// configuration error is kept and answered on every call.
var flusher = sync.OnceValues(func() (*Flusher, error) {
	ctx := context.Background()
	var c Config
	if _, err := envfile.Process(ctx, &c); err != nil {
		return nil, err
	}
	db, err := postgres.Open(ctx, c.Postgres, nil)
	if err != nil {
		return nil, err
	}
	project := c.ProjectID
	if project == "" {
		project = firestore.DetectProjectID
	}
	client, err := firestore.NewClientWithDatabase(ctx, project, c.FirestoreDatabase)
	if err != nil {
		return nil, err
	}
	day := 24 * time.Hour
	return NewFlusher(db, &logbuffer.Firestore{Client: client, Collection: c.Collection}, Options{
		Budget:          c.Budget,
		GroupSize:       c.GroupSize,
		LogRetention:    time.Duration(c.LogRetentionDays) * day,
		DedupeRetention: time.Duration(c.DedupeRetention) * day,
		Logger:          logging.New(os.Stderr, c.LogLevel),
	}), nil
})

// FlushLogs runs one flush and answers its report as JSON: 200 when it
// ran or was skipped, 500 when it stopped on an error (the report then
// says how far it got; the next run goes on from there).
func FlushLogs(w http.ResponseWriter, r *http.Request) {
	f, err := flusher()
	if err != nil {
		logging.New(os.Stderr, slog.LevelInfo).Error("flushlogs misconfigured", "error", err.Error())
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "the flush is misconfigured; see its logs"})
		return
	}
	f.ServeHTTP(w, r)
}

func (f *Flusher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": r.Method + " is not supported"})
		return
	}
	rep, err := f.Run(r.Context())
	code := http.StatusOK
	attrs := []any{"report", rep, "userAgent", r.UserAgent(), "clientIp", logging.ClientIP(r)}
	if err != nil {
		code = http.StatusInternalServerError
		rep.Error = "flush stopped: see the function's logs"
		f.opts.Logger.Error("request log flush failed", append(attrs, "error", err.Error())...)
	} else {
		f.opts.Logger.Info("request log flush", attrs...)
	}
	writeJSON(w, code, rep)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
