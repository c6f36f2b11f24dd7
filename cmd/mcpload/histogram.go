package main

import (
	"math/bits"
	"time"
)

// histogram counts latencies in microseconds in log-linear buckets: exact
// below 128 µs, then 64 buckets per power of two, so a reported
// percentile is within 1/64 (1.6 %) of the true one, from a microsecond
// to days, in a fixed 30 KiB. The maximum is kept exactly.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    uint64 // µs
}

const (
	histLinear  = 128 // values below are counted exactly
	histSub     = 64  // buckets per power of two above
	histBuckets = histLinear + (64-7)*histSub
)

func bucketOf(us uint64) int {
	if us < histLinear {
		return int(us)
	}
	shift := bits.Len64(us) - 7 // ≥ 1: us >> shift is in [64, 128)
	return shift*histSub + int(us>>shift)
}

// bucketValue is the middle of bucket i's range, in µs.
func bucketValue(i int) uint64 {
	if i < histLinear {
		return uint64(i)
	}
	shift := i/histSub - 1
	m := uint64(i - shift*histSub)
	low := m << shift
	return low + (uint64(1)<<shift)/2
}

func (h *histogram) record(d time.Duration) {
	us := uint64(max(d.Microseconds(), 0))
	h.counts[bucketOf(us)]++
	h.n++
	h.max = max(h.max, us)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile is the latency below which the fraction q of the recorded
// values lie (q in [0, 1]); the maximum for q = 1.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(h.max) * time.Microsecond
	}
	rank := uint64(q*float64(h.n)) + 1 // the rank-th smallest value
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketValue(i), h.max)) * time.Microsecond
		}
	}
	return time.Duration(h.max) * time.Microsecond
}
