// Package logbuffer carries request log entries (tenant.LogEntry) from the
// proxy to the flush: their encoding, the bounded in-process buffer that
// groups entries into batches, and the Firestore batch documents that hold
// them until the flush copies them into Postgres.
package logbuffer

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"mcpproxy.dev/mcpproxy/shared/jsonstr"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// Bounds on free-text fields, so that one entry stays small whatever a
// client or an upstream sends.
const (
	maxErrorMessage = 512
	maxUserAgent    = 256
	maxName         = 256
)

// NewID returns a random entry ID: 128 bits, hex. The proxy generates it so
// that a copied entry can be recognised.
func NewID() string {
	var id [32]byte
	return string(randomID(&id))
}

// randomID fills id with a new entry ID and returns it.
func randomID(id *[32]byte) []byte {
	var b [16]byte
	rand.Read(b[:])
	hex.Encode(id[:], b[:])
	return id[:]
}

// lineScratch is the stack buffer a line is first written into.
const lineScratch = 1024

// encode returns the JSON line of e, normalised: given an ID when it has
// none, its text bounded, its time in UTC. The line holds the bytes
// encoding/json writes for the normalised entry (TestEncodeMatchesMarshal,
// FuzzEncode). It runs on every request, so the line is written by hand
// rather than by a reflection-driven encoder, which takes twice the time
// and, handed e as an interface, moves every entry to the heap; e is
// taken by value so that it, and a new ID, stay on the caller's stack.
func encode(e tenant.LogEntry) []byte {
	var id [32]byte
	if e.ID == "" {
		e.ID = string(randomID(&id))
	}
	e.ErrorMessage = clean(e.ErrorMessage, maxErrorMessage)
	e.UserAgent = clean(e.UserAgent, maxUserAgent)
	e.ToolName = clean(e.ToolName, maxName)
	e.Method = clean(e.Method, maxName)
	e.RequestID = clean(e.RequestID, maxName)
	e.ErrorCode = clean(e.ErrorCode, maxName)
	e.CreatedAt = e.CreatedAt.UTC()
	// Written on the stack, then copied once at its exact size: the line
	// is kept until its batch is stored. A line longer than scratch (long
	// text with many escapes) costs a few more allocations.
	var scratch [lineScratch]byte
	return bytes.Clone(appendEntry(scratch[:0], &e))
}

// appendEntry appends e as encoding/json would write it: the fields in
// declaration order, named by their tags, the omitempty ones left out when
// empty. A field added to tenant.LogEntry must be added here too;
// TestEncodeMatchesMarshal fails until it is.
func appendEntry(b []byte, e *tenant.LogEntry) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, e.ID)
	b = appendOptional(b, `,"requestId":`, e.RequestID)
	b = append(b, `,"userId":`...)
	b = appendString(b, e.UserID)
	b = appendOptional(b, `,"organizationId":`, e.OrganizationID)
	b = append(b, `,"instanceId":`...)
	b = appendString(b, e.InstanceID)
	b = appendOptional(b, `,"apiKeyId":`, e.APIKeyID)
	b = appendOptional(b, `,"grantId":`, e.GrantID)
	b = append(b, `,"method":`...)
	b = appendString(b, e.Method)
	b = appendOptional(b, `,"toolName":`, e.ToolName)
	b = appendOptional(b, `,"transport":`, e.Transport)
	b = append(b, `,"status":`...)
	b = appendString(b, e.Status)
	b = appendOptional(b, `,"errorCode":`, e.ErrorCode)
	b = appendOptional(b, `,"errorMessage":`, e.ErrorMessage)
	b = append(b, `,"durationMs":`...)
	b = strconv.AppendInt(b, e.DurationMs, 10)
	b = append(b, `,"inputBytes":`...)
	b = strconv.AppendInt(b, e.InputBytes, 10)
	b = append(b, `,"outputBytes":`...)
	b = strconv.AppendInt(b, e.OutputBytes, 10)
	b = appendOptional(b, `,"userAgent":`, e.UserAgent)
	// time.Time's MarshalJSON format. Unlike MarshalJSON, a year outside
	// 0 to 9999 is written rather than refused, as the encoder used before
	// did; the flush sets such a line aside.
	b = append(b, `,"createdAt":"`...)
	b = e.CreatedAt.AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}

// appendOptional appends key and s unless s is empty (omitempty).
func appendOptional(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, key...), s)
}

// appendString appends s as a JSON string, escaped as encoding/json does
// it, HTML characters included: the line stays what its reflection-driven
// encoder wrote.
func appendString(b []byte, s string) []byte { return jsonstr.AppendHTMLSafe(b, s) }

// clean drops NUL characters, which Postgres text refuses, and cuts s to
// at most n bytes without splitting a UTF-8 sequence.
func clean(s string, n int) string {
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Rejected is an entry line of a batch document that cannot be copied,
// with the reason.
type Rejected struct {
	Line   []byte
	Reason string
}

// SplitEntries reads the entries of a batch document, one JSON object per
// line, as DecodeEntries does, but keeps going past a line that does not
// decode or validate: such lines come back rejected, so that one bad
// entry neither blocks nor drops the others.
func SplitEntries(data []byte) (entries []tenant.LogEntry, rejected []Rejected) {
	entries = make([]tenant.LogEntry, 0, bytes.Count(data, []byte{'\n'})+1)
	for n := 1; len(data) > 0; n++ {
		line, rest, _ := bytes.Cut(data, []byte{'\n'})
		data = rest
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e tenant.LogEntry
		err := json.Unmarshal(line, &e)
		if err == nil {
			err = e.Validate()
		}
		if err != nil {
			rejected = append(rejected, Rejected{Line: line, Reason: fmt.Sprintf("line %d: %v", n, err)})
			continue
		}
		entries = append(entries, e)
	}
	return entries, rejected
}

// DecodeEntries reads the entries of a batch document: one JSON object per
// line. Every entry is validated; the first fault fails the whole batch so
// that it is set aside whole rather than copied in part.
func DecodeEntries(data []byte) ([]tenant.LogEntry, error) {
	entries := make([]tenant.LogEntry, 0, bytes.Count(data, []byte{'\n'})+1)
	for n := 1; len(data) > 0; n++ {
		line, rest, _ := bytes.Cut(data, []byte{'\n'})
		data = rest
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e tenant.LogEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if err := e.Validate(); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}
