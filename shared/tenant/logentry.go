package tenant

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// LogEntry is one request handled by the proxy: the fields of the request
// log design, without request or response bodies. The proxy makes it,
// logbuffer carries it, the flush stores it.
type LogEntry struct {
	ID             string `json:"id"`
	RequestID      string `json:"requestId,omitempty"`
	UserID         string `json:"userId"`
	OrganizationID string `json:"organizationId,omitempty"`
	InstanceID     string `json:"instanceId"`
	APIKeyID       string `json:"apiKeyId,omitempty"`
	// GrantID is the OAuth grant of a request made with an access token;
	// APIKeyID is then the key the grant is bound to, if any.
	GrantID      string    `json:"grantId,omitempty"`
	Method       string    `json:"method"`
	ToolName     string    `json:"toolName,omitempty"`
	Transport    string    `json:"transport,omitempty"`
	Status       string    `json:"status"` // success, error, timeout, rate_limited or quota_exceeded
	ErrorCode    string    `json:"errorCode,omitempty"`
	ErrorMessage string    `json:"errorMessage,omitempty"`
	DurationMs   int64     `json:"durationMs"`
	InputBytes   int64     `json:"inputBytes"`
	OutputBytes  int64     `json:"outputBytes"`
	UserAgent    string    `json:"userAgent,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
}

// Statuses of a LogEntry.
const (
	StatusSuccess = "success"
	StatusError   = "error"
	StatusTimeout = "timeout"
	// StatusRateLimited: refused over a key's or an instance's rate
	// limit, before any upstream was called.
	StatusRateLimited = "rate_limited"
	// StatusQuotaExceeded: refused because the key or its organization
	// used up a quota.
	StatusQuotaExceeded = "quota_exceeded"
)

// Validate reports what makes an entry unfit for the request log table.
func (e *LogEntry) Validate() error {
	for _, f := range []string{e.ID, e.RequestID, e.UserID, e.OrganizationID, e.InstanceID, e.APIKeyID, e.GrantID,
		e.Method, e.ToolName, e.Transport, e.Status, e.ErrorCode, e.ErrorMessage, e.UserAgent} {
		if strings.IndexByte(f, 0) >= 0 {
			// Postgres text refuses NUL: the copy of the whole group
			// would fail on it, run after run.
			return fmt.Errorf("entry %q: a field holds a NUL byte", e.ID)
		}
	}
	switch {
	case e.ID == "":
		return errors.New("entry without id")
	case !IsUUID(e.UserID):
		return fmt.Errorf("entry %s: user id %q is not a UUID", e.ID, e.UserID)
	case !IsUUID(e.InstanceID):
		return fmt.Errorf("entry %s: instance id %q is not a UUID", e.ID, e.InstanceID)
	case e.OrganizationID != "" && !IsUUID(e.OrganizationID):
		return fmt.Errorf("entry %s: organization id %q is not a UUID", e.ID, e.OrganizationID)
	case e.APIKeyID != "" && !IsUUID(e.APIKeyID):
		return fmt.Errorf("entry %s: api key id %q is not a UUID", e.ID, e.APIKeyID)
	case e.GrantID != "" && !IsUUID(e.GrantID):
		return fmt.Errorf("entry %s: grant id %q is not a UUID", e.ID, e.GrantID)
	case e.Method == "":
		return fmt.Errorf("entry %s: no method", e.ID)
	case e.Status != StatusSuccess && e.Status != StatusError && e.Status != StatusTimeout && e.Status != StatusRateLimited && e.Status != StatusQuotaExceeded:
		return fmt.Errorf("entry %s: unknown status %q", e.ID, e.Status)
	case e.DurationMs < 0 || e.InputBytes < 0 || e.OutputBytes < 0:
		return fmt.Errorf("entry %s: negative duration or size", e.ID)
	case e.CreatedAt.IsZero():
		return fmt.Errorf("entry %s: no time", e.ID)
	}
	return nil
}
