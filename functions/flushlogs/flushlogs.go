// Package flushlogs is the FlushLogs function, called by Cloud Scheduler:
// it moves buffered request logs and lastUsedAt from Firestore into
// Postgres exactly once.
package flushlogs

import (
	"encoding/json"
	"net/http"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
)

func init() {
	functions.HTTP("FlushLogs", FlushLogs)
}

// FlushLogs answers HTTP 501 until the log pipeline is built.
func FlushLogs(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotImplemented)
	json.NewEncoder(w).Encode(map[string]string{"error": "the log flush is not implemented yet"})
}
