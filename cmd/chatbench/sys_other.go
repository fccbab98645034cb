//go:build !unix

package main

import "math"

func raiseNoFile() (uint64, error) { return math.MaxUint64, nil }

func selfCPU() float64 { return 0 }
