package engine

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Crash points let the kill -9 tests crash the real binary at exact places
// of the pipeline. KAIROS_CRASH_AT=<point>:<n> makes the process send
// itself SIGKILL the n-th time it reaches point. Points:
//
//	after-commit   the batch's state and outbox are committed, nothing published
//	after-publish  the outbox is published, no event acknowledged
//
// Unset (always, in production) it costs one comparison per batch.
type crashPoints struct {
	point string
	left  int
}

func crashPointsFromEnv() crashPoints {
	v := os.Getenv("KAIROS_CRASH_AT")
	point, n, ok := strings.Cut(v, ":")
	if !ok {
		return crashPoints{}
	}
	left, err := strconv.Atoi(n)
	if err != nil || left < 1 {
		return crashPoints{}
	}
	return crashPoints{point: point, left: left}
}

func (c *crashPoints) reach(point string) {
	if c.point != point {
		return
	}
	if c.left--; c.left == 0 {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
