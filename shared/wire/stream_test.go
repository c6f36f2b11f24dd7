package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// copyAll copies the one value of data through a Reader reading src, and
// checks that nothing but whitespace follows it.
func copyAll(data []byte, src io.Reader, o CopyOptions) ([]byte, error) {
	var rd *Reader
	if src == nil {
		rd = NewBytesReader(data)
	} else {
		rd = NewReader(src, 512)
	}
	var out bytes.Buffer
	n, err := rd.CopyValue(&out, o)
	if n != int64(out.Len()) {
		return nil, errors.New("CopyValue counted other bytes than it wrote")
	}
	if err != nil {
		return out.Bytes(), err
	}
	if err := rd.SkipSpace(); err != io.EOF {
		return out.Bytes(), errors.New("more than one value")
	}
	return out.Bytes(), nil
}

// sources are the ways a test reads its data: from memory, through a
// buffer in large reads, and a byte per read (every token split).
var sources = []struct {
	name string
	src  func([]byte) io.Reader
}{
	{"bytes", func([]byte) io.Reader { return nil }},
	{"reader", func(b []byte) io.Reader { return bytes.NewReader(b) }},
	{"one byte", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
}

// checkLikeEncodingJSON checks CopyValue against json.Valid and
// json.Compact on data, from every source.
func checkLikeEncodingJSON(t *testing.T, data []byte) {
	t.Helper()
	valid := json.Valid(data)
	var want bytes.Buffer
	if valid {
		if err := json.Compact(&want, data); err != nil {
			t.Fatalf("json.Compact of valid %q: %v", data, err)
		}
	}
	for _, s := range sources {
		got, err := copyAll(data, s.src(data), CopyOptions{})
		if errors.Is(err, ErrTooDeep) && valid {
			continue // encoding/json allows 10000 levels
		}
		if (err == nil) != valid {
			t.Fatalf("%s: %q: error %v; json.Valid says %v", s.name, data, err, valid)
		}
		if valid && !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("%s: %q: copied %q; json.Compact makes %q", s.name, data, got, want.Bytes())
		}
	}
}

var jsonCases = []string{
	`0`, `-0`, `1`, `-1.5e+10`, `12.0E-3`, `1e5`, `0.5`, `123456789012345678901234567890`,
	`01`, `-`, `1.`, `1.e3`, `1e`, `1e+`, `.5`, `+1`, `-a`, `0x10`, `1ee3`,
	`true`, `false`, `null`, `tru`, `nul`, `falsey`, `True`, `nulll`,
	`""`, `"a"`, `"\"\\\/\b\f\n\r\t"`, `"\u00e9\uD83D\uDE00"`, `"\u12"`, `"\u12g4"`, `"\x"`, `"é😀"`,
	"\"\xff\xfe invalid UTF-8 is accepted\"", "\"raw\nnewline\"", "\"tab\tinside\"", "\"del \x7f\"", `"unterminated`,
	`[]`, `[1]`, `[1,2]`, `[1,]`, `[,1]`, `[1 2]`, `[`, `]`, `[[[]]]`, `[1,[2,[3]]]`,
	`{}`, `{"a":1}`, `{"a":1,"b":[true,null]}`, `{"a"}`, `{"a":}`, `{a:1}`, `{"a":1,}`, `{,"a":1}`, `{"a" 1}`, `{"a":1 "b":2}`, `{1:2}`,
	" \t\r\n{ \"a\" :\n [ 1 , \"x y\" ] ,\r\n\t\"b\" : { } } \n",
	`{"a":"` + strings.Repeat(`x\"y\\`, 300) + `"}`,
	`[` + strings.Repeat(`{"k":-12.5e3,"s":"v"},`, 200) + `0]`,
	"", " ", "\x00", `1 2`, `{}{}`, `"a" "b"`,
}

func TestCopyValueLikeEncodingJSON(t *testing.T) {
	for _, c := range jsonCases {
		checkLikeEncodingJSON(t, []byte(c))
	}
}

// FuzzCopyValue: CopyValue agrees with encoding/json on what is JSON and
// on its compact form, from every source, and adds a missing member
// exactly where a decoder would miss it: make fuzz runs it.
func FuzzCopyValue(f *testing.F) {
	for _, c := range jsonCases {
		f.Add([]byte(c))
	}
	f.Add([]byte(`{"resultType":"complete","content":[]}`))
	f.Add([]byte(`{"result\u0054ype":1}`))
	f.Add([]byte(`{"content":{"resultType":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkLikeEncodingJSON(t, data)
		if !json.Valid(data) {
			return
		}
		var top map[string]json.RawMessage
		isObject := json.Unmarshal(data, &top) == nil && top != nil
		var want bytes.Buffer
		json.Compact(&want, data)
		if _, has := top["resultType"]; isObject && !has {
			w := want.Bytes()[:want.Len()-1]
			if len(top) > 0 || len(w) > 1 {
				w = append(w, ',')
			}
			want = *bytes.NewBuffer(append(w, `"resultType":"complete"}`...))
		}
		got, err := copyAll(data, iotest.OneByteReader(bytes.NewReader(data)), CopyOptions{AddKey: "resultType", AddValue: `"complete"`})
		if errors.Is(err, ErrTooDeep) {
			return
		}
		if err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("%q with resultType: %q, %v; want %q", data, got, err, want.Bytes())
		}
	})
}

// TestAddKey: the member is added at the end of an object without it at
// its top level, however the name is escaped, and to nothing else.
func TestAddKey(t *testing.T) {
	o := CopyOptions{AddKey: "resultType", AddValue: `"complete"`}
	for _, tt := range []struct{ in, want string }{
		{`{}`, `{"resultType":"complete"}`},
		{" { } ", `{"resultType":"complete"}`},
		{`{"content":[]}`, `{"content":[],"resultType":"complete"}`},
		{"{\n \"a\" : { \"resultType\" : 1 }\n}", `{"a":{"resultType":1},"resultType":"complete"}`},
		{`{"resultType":"incomplete"}`, `{"resultType":"incomplete"}`},
		{`{"a":1,"resultType":null}`, `{"a":1,"resultType":null}`},
		{`{"result\u0054ype":1}`, `{"result\u0054ype":1}`},
		{`{"resultTyp\u0065":1}`, `{"resultTyp\u0065":1}`},
		{`{"resultTypes":1}`, `{"resultTypes":1,"resultType":"complete"}`},
		{`{"` + strings.Repeat("\\u0072", 20) + `":1}`, `{"` + strings.Repeat("\\u0072", 20) + `":1,"resultType":"complete"}`},
		{`[{}]`, `[{}]`},
		{`"s"`, `"s"`},
		{`7`, `7`},
	} {
		for _, s := range sources {
			got, err := copyAll([]byte(tt.in), s.src([]byte(tt.in)), o)
			if err != nil || string(got) != tt.want {
				t.Errorf("%s: %s: got %s, %v; want %s", s.name, tt.in, got, err, tt.want)
			}
		}
	}
}

// TestRefuseKey: a value with the member at its top level, however its
// name is escaped, fails before the member's value is written; with it
// deeper, or a longer name, it is copied; AddKey works alongside.
func TestRefuseKey(t *testing.T) {
	for _, o := range []CopyOptions{{RefuseKey: "inputRequests"}, {RefuseKey: "inputRequests", AddKey: "resultType", AddValue: `"complete"`}} {
		for _, in := range []string{
			`{"inputRequests":{"a":1}}`,
			`{"resultType":"complete","content":[],"inputRequests":{}}`,
			`{"a":1, "input\u0052equests" : "secret"}`,
		} {
			for _, s := range sources {
				got, err := copyAll([]byte(in), s.src([]byte(in)), o)
				if !errors.Is(err, ErrRefusedKey) || bytes.Contains(got, []byte("{}")) || bytes.Contains(got, []byte("secret")) {
					t.Errorf("%s: %s: got %s, %v; want ErrRefusedKey before the member's value", s.name, in, got, err)
				}
			}
		}
		for _, in := range []string{`{"a":{"inputRequests":1}}`, `{"inputRequestsX":1}`, `["inputRequests"]`, `{"resultType":"complete"}`} {
			want := in
			if o.AddKey != "" && in == `{"a":{"inputRequests":1}}` {
				want = `{"a":{"inputRequests":1},"resultType":"complete"}`
			} else if o.AddKey != "" && in == `{"inputRequestsX":1}` {
				want = `{"inputRequestsX":1,"resultType":"complete"}`
			}
			for _, s := range sources {
				if got, err := copyAll([]byte(in), s.src([]byte(in)), o); err != nil || string(got) != want {
					t.Errorf("%s: %s: got %s, %v; want %s", s.name, in, got, err, want)
				}
			}
		}
	}
}

// TestCopyValueLimits: depth and length bounds, and what is written
// before a failure found later.
func TestCopyValueLimits(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tt := range []struct {
		name string
		in   string
		o    CopyOptions
		want error
	}{
		{"as deep as allowed", deep(MaxDepth), CopyOptions{}, nil},
		{"one level deeper", deep(MaxDepth + 1), CopyOptions{}, ErrTooDeep},
		{"far deeper", deep(200000), CopyOptions{}, ErrTooDeep},
		{"deeper than asked", `{"a":[[1]]}`, CopyOptions{MaxDepth: 2}, ErrTooDeep},
		{"as deep as asked", `{"a":[1]}`, CopyOptions{MaxDepth: 2}, nil},
		{"brackets in strings", `["` + strings.Repeat("[", 5000) + `"]`, CopyOptions{}, nil},
		{"as long as allowed", `[1, 2]`, CopyOptions{MaxBytes: 6}, nil},
		{"longer", `[1, 23]`, CopyOptions{MaxBytes: 6}, ErrTooLong},
		{"far longer", `"` + strings.Repeat("x", 100000) + `"`, CopyOptions{MaxBytes: 1000}, ErrTooLong},
		{"cut", `{"a":[1,2`, CopyOptions{}, io.ErrUnexpectedEOF},
		{"cut in a string", `"abc`, CopyOptions{}, io.ErrUnexpectedEOF},
		{"cut number", `-`, CopyOptions{}, io.ErrUnexpectedEOF},
	} {
		for _, s := range sources {
			_, err := copyAll([]byte(tt.in), s.src([]byte(tt.in)), tt.o)
			if !errors.Is(err, tt.want) {
				t.Errorf("%s, %s: error %v; want %v", tt.name, s.name, err, tt.want)
			}
		}
	}

	// A value larger than the buffer is written as it is read: what came
	// before an error far into it has been written, the error returned.
	big := `{"a":"` + strings.Repeat("x", 10000) + `","b":[1,2,}`
	var out bytes.Buffer
	_, err := NewReader(strings.NewReader(big), 512).CopyValue(&out, CopyOptions{})
	var serr *SyntaxError
	if !errors.As(err, &serr) || serr.Offset != int64(strings.LastIndex(big, "}")) {
		t.Errorf("error %v; want a syntax error at offset %d", err, strings.LastIndex(big, "}"))
	}
	if out.Len() < 9000 || !strings.HasPrefix(big, out.String()) {
		t.Errorf("wrote %d bytes before the error", out.Len())
	}
}

// TestReaderAfterValue: CopyValue stops at the value's end; the Reader
// goes on from there, and Peek, Discard and Read see the same bytes.
func TestReaderAfterValue(t *testing.T) {
	rd := NewReader(iotest.HalfReader(strings.NewReader(` {"a" : 1} , 2 x`+strings.Repeat("y", 2000))), 512)
	head, err := rd.Peek()
	if err != nil || len(head) != 512 {
		t.Fatalf("Peek: %d bytes, %v", len(head), err)
	}
	rd.Discard(1)
	var out bytes.Buffer
	if _, err := rd.CopyValue(&out, CopyOptions{}); err != nil || out.String() != `{"a":1}` {
		t.Fatalf("first value %q, %v", out.String(), err)
	}
	if c, err := rd.NextByte(); c != ',' || err != nil {
		t.Fatalf("after the value: %q, %v", c, err)
	}
	out.Reset()
	if _, err := rd.CopyValue(&out, CopyOptions{}); err != nil || out.String() != `2` {
		t.Fatalf("second value %q, %v", out.String(), err)
	}
	rest, err := io.ReadAll(rd)
	if err != nil || string(rest) != " x"+strings.Repeat("y", 2000) {
		t.Errorf("rest %q, %v", rest, err)
	}
}

// TestWriterError: a failing writer stops the copy with its error.
func TestWriterError(t *testing.T) {
	data := `["` + strings.Repeat("z", 5000) + `"]`
	boom := errors.New("boom")
	for _, s := range sources {
		rd := NewBytesReader([]byte(data))
		if src := s.src([]byte(data)); src != nil {
			rd = NewReader(src, 512)
		}
		_, err := rd.CopyValue(failingWriter{boom}, CopyOptions{})
		if !errors.Is(err, boom) {
			t.Errorf("%s: error %v; want the writer's", s.name, err)
		}
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// BenchmarkCopyValue compares CopyValue from a stream through a 64 KiB
// buffer with json.Valid, and with json.Valid and json.Compact (what a
// relay that holds the value whole would do), on 1 MiB: a tool's text
// result, and a result of many small members.
func BenchmarkCopyValue(b *testing.B) {
	text := strings.Repeat(`Lorem ipsum dolor sit amet, \"consectetur\" adipiscing elit.\n`, 1<<20/64)
	var items strings.Builder
	for items.Len() < 1<<20 {
		items.WriteString(`{"id": 12345, "name": "item", "tags": ["a", "b"], "score": -1.25e3, "ok": true},` + "\n")
	}
	for _, in := range []struct {
		name string
		data []byte
	}{
		{"text", []byte(`{"content":[{"type":"text","text":"` + text + `"}]}`)},
		{"members", []byte(`{"structuredContent":{"items":[` + items.String() + `null]}}`)},
	} {
		b.Run(in.name+"/json.Valid", func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			for b.Loop() {
				if !json.Valid(in.data) {
					b.Fatal("invalid")
				}
			}
		})
		b.Run(in.name+"/json.Valid+Compact", func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			var out bytes.Buffer
			for b.Loop() {
				out.Reset()
				if !json.Valid(in.data) || json.Compact(&out, in.data) != nil {
					b.Fatal("invalid")
				}
			}
		})
		b.Run(in.name+"/CopyValue", func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			src := bytes.NewReader(in.data)
			rd := NewReader(src, 64<<10)
			for b.Loop() {
				src.Reset(in.data)
				rd.Reset(src)
				if _, err := rd.CopyValue(io.Discard, CopyOptions{AddKey: "resultType", AddValue: `"complete"`}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
