package batchgen_test

import (
	"testing"
	"time"

	"github.com/kairos-engine/kairos/engine/batchgen"
)

func TestDormant(t *testing.T) {
	sh := mustLoad(t, "Asia/Shanghai")
	ny := mustLoad(t, "America/New_York")
	// 09:00 in Shanghai on 31 January is 01:00 UTC, the same UTC day.
	runAt := time.Date(2026, 1, 31, 9, 0, 0, 0, sh)
	watch := []string{"login", "txn"}
	tests := []struct {
		name      string
		runAt     time.Time
		jobLoc    *time.Location
		days      int
		types     []string
		lastSeen  map[string]int64
		wantID    string
		wantAttrs attrs
		wantErr   error
	}{
		{"seen exactly 30 days ago is dormant for 30 days", runAt, sh, 30, watch, map[string]int64{"login": dayMs(t, "2026-01-01")},
			"dormant:C1:2026-01-31", attrs{"days_inactive": int64(30), "last_seen": "2026-01-01T00:00:00Z"}, nil},
		{"seen 29 days ago is not", runAt, sh, 30, watch, map[string]int64{"login": dayMs(t, "2026-01-02")}, "", nil, nil},
		{"late on the last day still counts the whole day", runAt, sh, 30, watch, map[string]int64{"login": dayMs(t, "2026-01-01") + 86400000 - 1},
			"dormant:C1:2026-01-31", attrs{"days_inactive": int64(30), "last_seen": "2026-01-01T23:59:59Z"}, nil},
		{"the latest watched type counts", runAt, sh, 30, watch, map[string]int64{"login": dayMs(t, "2025-12-01"), "txn": dayMs(t, "2026-01-10")}, "", nil, nil},
		{"types not watched do not count", runAt, sh, 30, watch, map[string]int64{"login": dayMs(t, "2025-12-01"), "profile": dayMs(t, "2026-01-30")},
			"dormant:C1:2026-01-31", attrs{"days_inactive": int64(61), "last_seen": "2025-12-01T00:00:00Z"}, nil},
		{"never seen a watched type is not dormant", runAt, sh, 30, watch, map[string]int64{"profile": dayMs(t, "2025-01-01")}, "", nil, nil},
		{"no history is not dormant", runAt, sh, 30, watch, nil, "", nil, nil},
		{"the star watches every type", runAt, sh, 30, []string{"*"}, map[string]int64{"profile": dayMs(t, "2026-01-20"), "login": dayMs(t, "2025-01-01")}, "", nil, nil},
		{"the star on an old history", runAt, sh, 30, []string{"*"}, map[string]int64{"profile": dayMs(t, "2025-12-01"), "login": dayMs(t, "2025-01-01")},
			"dormant:C1:2026-01-31", attrs{"days_inactive": int64(61), "last_seen": "2025-12-01T00:00:00Z"}, nil},
		{"a last seen after the run is not dormant", runAt, sh, 30, watch, map[string]int64{"login": dayMs(t, "2026-02-05")}, "", nil, nil},
		{"the id carries the job's date, the count UTC days", time.Date(2026, 1, 31, 20, 0, 0, 0, ny), ny, 30, watch, map[string]int64{"login": dayMs(t, "2026-01-01")},
			"dormant:C1:2026-01-31", attrs{"days_inactive": int64(31), "last_seen": "2026-01-01T00:00:00Z"}, nil},
		{"a nil job zone is UTC", time.Date(2026, 1, 31, 20, 0, 0, 0, ny), nil, 30, watch, map[string]int64{"login": dayMs(t, "2026-01-01")},
			"dormant:C1:2026-02-01", attrs{"days_inactive": int64(31), "last_seen": "2026-01-01T00:00:00Z"}, nil},
		{"zero days is an argument error", runAt, sh, 0, watch, map[string]int64{"login": 0}, "", nil, batchgen.ErrArgument},
		{"no types is an argument error", runAt, sh, 30, nil, map[string]int64{"login": 0}, "", nil, batchgen.ErrArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, ok, err := batchgen.Dormant(tt.runAt, tt.jobLoc, tt.days, tt.types, "C1", tt.lastSeen)
			check(t, result{ev, ok, err}, tt.runAt, "C1", "dormant", tt.wantID, tt.wantAttrs, tt.wantErr)
		})
	}
}
