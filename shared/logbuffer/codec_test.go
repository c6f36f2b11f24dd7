package logbuffer

import (
	"context"
	"strings"
	"testing"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/protobuf/proto"

	"mcpproxy.dev/mcpproxy/internal/firestoretest"
)

// TestExactCodec: a message is encoded into a buffer of its own size
// (gRPC's codec would take a 1 MiB one from its pool for this one of
// about 300 KiB), and decodes to what was encoded.
func TestExactCodec(t *testing.T) {
	text := strings.Repeat("entry\n", 50000)
	in := &firestorepb.CommitRequest{Database: "projects/p/databases/(default)", Writes: []*firestorepb.Write{{
		Operation: &firestorepb.Write_Update{Update: &firestorepb.Document{Name: "projects/p/databases/(default)/documents/c/d",
			Fields: map[string]*firestorepb.Value{"entries": {ValueType: &firestorepb.Value_BytesValue{BytesValue: []byte(text)}}}}},
	}}}
	data, err := exactCodec{}.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 1 {
		t.Fatalf("%d buffers; want 1", len(data))
	}
	b := data[0].ReadOnlyData()
	if size := proto.Size(in); len(b) != size || cap(b) != size {
		t.Errorf("buffer of len %d, cap %d; want both %d", len(b), cap(b), size)
	}
	out := &firestorepb.CommitRequest{}
	if err := (exactCodec{}).Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, out) {
		t.Error("decoded message differs from the encoded one")
	}
	if _, err := (exactCodec{}).Marshal("not a message"); err == nil {
		t.Error("a string encoded without error")
	}
}

// TestFirestoreSinkWithClientOptions writes batches of the request log,
// each well over gRPC's pooling threshold, through a client made with
// ClientOptions, and reads every entry back from the emulator.
func TestFirestoreSinkWithClientOptions(t *testing.T) {
	f := &Firestore{Client: firestoretest.Client(t, firestoretest.Host(t), ClientOptions()...), Collection: firestoretest.Collection(t)}
	b := New(f, Options{BatchEntries: 500})
	for i := range 1200 {
		b.Append(entry(i))
	}
	if err := b.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(stored(t, f)); got != 1200 {
		t.Errorf("%d entries stored; want 1200", got)
	}
}
