package main

import (
	"math"
	"math/bits"
)

// histogram is a log-linear histogram of non-negative integers (latencies in microseconds), in
// the manner of HDR histograms: values below histLinear have a bucket each; above, every power
// of two is split into histSub buckets, so a bucket is at most 1/histSub (1.6%) of its value
// wide. It holds counts, never samples: recording is O(1) and the size fixed (about 21 KiB).
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	min    int64
	max    int64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits // buckets per power of two
	histLinear  = 2 * histSub      // values below this are exact
	histOctaves = 40               // up to 2^47 µs, four years
	histBuckets = histLinear + histOctaves*histSub
)

// histBucket is the bucket holding v.
func histBucket(v int64) int {
	if v < histLinear {
		return int(max(v, 0))
	}
	e := bits.Len64(uint64(v)) - (histSubBits + 1) // v>>e is in [histSub, 2*histSub)
	i := histLinear + (e-1)*histSub + int(v>>e) - histSub
	return min(i, histBuckets-1)
}

// histUpper is the largest value bucket i holds.
func histUpper(i int) int64 {
	if i < histLinear {
		return int64(i)
	}
	if i == histBuckets-1 {
		return math.MaxInt64
	}
	e := (i-histLinear)/histSub + 1
	m := int64((i-histLinear)%histSub + histSub)
	return (m+1)<<e - 1
}

func (h *histogram) record(v int64) {
	v = max(v, 0)
	h.counts[histBucket(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if h.n == 0 || v > h.max {
		h.max = v
	}
	h.n++
}

// merge adds o's counts to h.
func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if h.n == 0 || o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
}

// since returns what h recorded after prev, a copy of h taken earlier. Its min and max are
// unknown, so its percentiles are bucket bounds.
func (h *histogram) since(prev *histogram) *histogram {
	d := &histogram{n: h.n - prev.n, max: math.MaxInt64}
	for i := range h.counts {
		d.counts[i] = h.counts[i] - prev.counts[i]
	}
	return d
}

// percentile returns the value at or below which p percent of the recorded values lie: the upper
// bound of that value's bucket (exact below histLinear), never more than the largest value
// recorded. 0 when nothing was recorded.
func (h *histogram) percentile(p float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return max(min(histUpper(i), h.max), h.min)
		}
	}
	return h.max
}
