package logbuffer

import (
	"fmt"

	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// ClientOptions are the Firestore client options of a process that writes
// the request log: its messages are encoded into buffers of their own
// size. gRPC's own codec takes a message over 1 KiB from its buffer
// pool, whose sizes jump from 32 KiB to 1 MiB: every batch of the log
// (about 250 KiB with the default LOG_BATCH_ENTRIES) would allocate
// 1 MiB, and the pool would keep such an array alive between garbage
// collections, which the collector then counts as live heap and doubles
// into its target.
func ClientOptions() []option.ClientOption {
	return []option.ClientOption{option.WithGRPCDialOption(grpc.WithDefaultCallOptions(grpc.ForceCodecV2(exactCodec{})))}
}

// exactCodec is gRPC's protobuf codec, but for the buffer a message is
// encoded into: one of its exact size, left to the garbage collector.
type exactCodec struct{}

func (exactCodec) Name() string { return "proto" }

func (exactCodec) Marshal(v any) (mem.BufferSlice, error) {
	m := protoMessage(v)
	if m == nil {
		return nil, fmt.Errorf("proto: cannot encode %T, not a proto.Message", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (exactCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m := protoMessage(v)
	if m == nil {
		return fmt.Errorf("proto: cannot decode into %T, not a proto.Message", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

func protoMessage(v any) proto.Message {
	switch v := v.(type) {
	case protoadapt.MessageV2:
		return v
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(v)
	}
	return nil
}
