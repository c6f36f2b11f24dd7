package logbuffer

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	sjson "github.com/segmentio/encoding/json"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// reference is the encoder encode replaced, kept as the measure of its
// meaning: the same normalisation, then segmentio's reflection-driven
// Marshal, which writes the bytes of encoding/json's (it does not refuse
// a year outside 0 to 9999, as encoding/json does). It returns the
// normalised entry with its line.
func reference(t testing.TB, e tenant.LogEntry) (tenant.LogEntry, []byte) {
	t.Helper()
	e.ErrorMessage = clean(e.ErrorMessage, maxErrorMessage)
	e.UserAgent = clean(e.UserAgent, maxUserAgent)
	e.ToolName = clean(e.ToolName, maxName)
	e.Method = clean(e.Method, maxName)
	e.RequestID = clean(e.RequestID, maxName)
	e.ErrorCode = clean(e.ErrorCode, maxName)
	e.CreatedAt = e.CreatedAt.UTC()
	line, err := sjson.Marshal(&e)
	if err != nil {
		t.Fatalf("segmentio Marshal: %v", err)
	}
	return e, line
}

// trickyStrings are the strings the table puts into every text field:
// escapes, HTML, the JSONP separators and their neighbours, invalid UTF-8
// of each kind, and each of them after 8 plain bytes, where a word-wise
// scan changes pace.
var trickyStrings = func() []string {
	var all strings.Builder
	for c := range 0x80 {
		all.WriteByte(byte(c))
	}
	base := []string{
		"", "plain", "agent/1.0 (x; y)", all.String(),
		`"quoted" \back\slash\`, "<script>&amp;</script>", "\b\f\n\r\t\v\x00\x01\x1f\x7f",
		"é 日本 😀 \uFFFD \uFEFF", "\u2027\u2028\u2029\u202a",
		"\xff", "\xc3", "\xc3(", "\xe2\x80", "\xed\xa0\x80", "\xc0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80",
		"a\x00b", "\x00",
	}
	out := base
	for _, s := range base {
		out = append(out, "12345678"+s, "1234567"+s+"x")
	}
	return out
}()

// filled returns an entry with every field of tenant.LogEntry set, found
// by reflection, so that a field added to the struct but not to
// appendEntry makes TestEncodeMatchesMarshal fail.
func filled(t *testing.T, text string) tenant.LogEntry {
	var e tenant.LogEntry
	v := reflect.ValueOf(&e).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Interface().(type) {
		case string:
			f.SetString(v.Type().Field(i).Name + text)
		case int64:
			f.SetInt(int64(i) * 1000003)
		case time.Time:
			f.Set(reflect.ValueOf(time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))))
		default:
			t.Fatalf("field %s of type %s: teach filled and appendEntry about it", v.Type().Field(i).Name, f.Type())
		}
	}
	return e
}

func TestEncodeMatchesMarshal(t *testing.T) {
	var cases []tenant.LogEntry
	add := func(e tenant.LogEntry) { cases = append(cases, e) }
	add(entry(1))
	add(filled(t, ""))
	for _, s := range trickyStrings {
		add(filled(t, s))
		e := entry(2)
		e.ErrorMessage, e.UserAgent, e.UserID = s, s, s
		add(e)
	}
	// Past the bounds, cut inside a rune or among invalid bytes; and a
	// line longer than encode's scratch buffer.
	long := filled(t, "")
	long.ErrorMessage = strings.Repeat("é", 400) + "\x00"
	long.UserAgent = "x" + strings.Repeat("\xe6\x97\xa5", 100)
	long.ToolName = strings.Repeat("\xff", 300)
	long.UserID = strings.Repeat("<\x01>", 1000)
	add(long)
	// Integers and times at their edges: RFC 3339 with trailing zeros of
	// the fraction dropped, offsets turned to UTC, the zero time, the
	// monotonic clock reading stripped, years encoding/json refuses.
	for _, n := range []int64{0, -1, 1, math.MaxInt64, math.MinInt64} {
		e := entry(3)
		e.DurationMs, e.InputBytes, e.OutputBytes = n, -n, n/3
		add(e)
	}
	for _, at := range []time.Time{
		{}, time.Now(),
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 1, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.FixedZone("", 5*3600+45*60)),
		time.Date(2026, 1, 2, 3, 4, 5, 999999999, time.FixedZone("", -12*3600-1)),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(1<<62, 0),
	} {
		e := entry(4)
		e.CreatedAt = at
		add(e)
	}

	for i, e := range cases {
		got := encode(e)
		norm, want := reference(t, e)
		if !bytes.Equal(got, want) {
			t.Errorf("case %d: encode =\n%s\nsegmentio Marshal =\n%s", i, got, want)
			continue
		}
		if std, err := json.Marshal(&norm); err == nil && !bytes.Equal(got, std) {
			t.Errorf("case %d: encode =\n%s\nencoding/json =\n%s", i, got, std)
		}
	}
	if len(encode(long)) <= lineScratch {
		t.Error("the long entry fits in encode's scratch buffer; want it past it")
	}
}

func TestEncodeGivesID(t *testing.T) {
	e := entry(1)
	e.ID = ""
	var ids []string
	for range 2 {
		var d tenant.LogEntry
		if err := json.Unmarshal(encode(e), &d); err != nil {
			t.Fatal(err)
		}
		if len(d.ID) != 32 || strings.Trim(d.ID, "0123456789abcdef") != "" {
			t.Errorf("id %q; want 32 hex digits", d.ID)
		}
		ids = append(ids, d.ID)
	}
	if ids[0] == ids[1] {
		t.Errorf("two entries both given id %s", ids[0])
	}
}

func TestEncodeBoundsText(t *testing.T) {
	e := entry(1)
	e.ErrorMessage = strings.Repeat("é", 400) // 800 bytes
	e.UserAgent = "agent\x00with nul" + strings.Repeat("x", 300)
	es, err := DecodeEntries(encode(e))
	if err != nil {
		t.Fatal(err)
	}
	got := es[0]
	if len(got.ErrorMessage) > maxErrorMessage || !strings.HasPrefix(got.ErrorMessage, "éé") || strings.ContainsRune(got.ErrorMessage, '\uFFFD') {
		t.Errorf("error message of %d bytes, %q…; want ≤ %d bytes of whole runes", len(got.ErrorMessage), got.ErrorMessage[:6], maxErrorMessage)
	}
	if len(got.UserAgent) > maxUserAgent || strings.ContainsRune(got.UserAgent, 0) {
		t.Errorf("user agent %q; want ≤ %d bytes without NUL (Postgres text refuses NUL)", got.UserAgent, maxUserAgent)
	}
}

// FuzzEncode holds encode to the encoder it replaced on arbitrary text,
// numbers and times: the same bytes, so the same entry once decoded as
// the flush decodes it; one line without control characters; and, for
// valid UTF-8 and a year RFC 3339 can hold, the normalised entry back.
func FuzzEncode(f *testing.F) {
	f.Add("e1", "", "00000000-0000-0000-0000-000000000001", "", "00000000-0000-0000-0000-000000000002", "", "",
		"tools/call", "demo__echo", "stdio", "success", "", "", "agent/1",
		int64(3), int64(120), int64(4096), int64(1795000000), int64(123456789), int32(3600))
	f.Add("", "r<1>", "u\x00", "o\"", "i\\", "k\n", "g\u2028", "m\xff", "t\xc3", "\u2029", "error", "-32602",
		strings.Repeat("é", 300), "\x01\x7f<&>",
		int64(-1), int64(math.MaxInt64), int64(math.MinInt64), int64(-62135596800), int64(0), int32(-43200))
	f.Fuzz(func(t *testing.T, id, requestID, userID, orgID, instanceID, keyID, grantID, method, tool, transport,
		status, code, message, agent string, took, in, out, sec, nsec int64, offset int32) {
		e := tenant.LogEntry{
			ID: id, RequestID: requestID, UserID: userID, OrganizationID: orgID, InstanceID: instanceID,
			APIKeyID: keyID, GrantID: grantID, Method: method, ToolName: tool, Transport: transport,
			Status: status, ErrorCode: code, ErrorMessage: message, UserAgent: agent,
			DurationMs: took, InputBytes: in, OutputBytes: out,
			CreatedAt: time.Unix(sec, nsec).In(time.FixedZone("", int(offset))),
		}
		if e.ID == "" {
			e.ID = "given" // encode would draw a random one
		}
		got := encode(e)
		norm, want := reference(t, e)
		if !bytes.Equal(got, want) {
			t.Fatalf("encode =\n%q\nsegmentio Marshal =\n%q", got, want)
		}
		for _, c := range got {
			if c < 0x20 {
				t.Fatalf("line holds byte %#x: %q", c, got)
			}
		}
		var dGot, dWant tenant.LogEntry
		errGot, errWant := json.Unmarshal(got, &dGot), json.Unmarshal(want, &dWant)
		if (errGot == nil) != (errWant == nil) || dGot != dWant {
			t.Fatalf("decoded %+v (%v); the reference's %+v (%v)", dGot, errGot, dWant, errWant)
		}
		valid := true
		for _, s := range []string{norm.ID, norm.RequestID, norm.UserID, norm.OrganizationID, norm.InstanceID, norm.APIKeyID,
			norm.GrantID, norm.Method, norm.ToolName, norm.Transport, norm.Status, norm.ErrorCode, norm.ErrorMessage, norm.UserAgent} {
			valid = valid && utf8.ValidString(s)
		}
		if y := norm.CreatedAt.Year(); valid && y >= 0 && y <= 9999 {
			if errGot != nil {
				t.Fatalf("line %q does not decode: %v", got, errGot)
			}
			at := dGot.CreatedAt
			dGot.CreatedAt, norm.CreatedAt = time.Time{}, time.Time{}
			if dGot != norm || !at.Equal(e.CreatedAt) {
				t.Fatalf("decoded %+v at %v; want %+v at %v", dGot, at, norm, e.CreatedAt)
			}
		}
	})
}
