package batchgen_test

import (
	"testing"
	"time"

	"github.com/kairos-engine/kairos/engine/batchgen"
)

func TestNewCustomer(t *testing.T) {
	// The job runs at 09:00 New York time and welcomes the last 7 days.
	ny := mustLoad(t, "America/New_York")
	runAt := time.Date(2026, 1, 15, 9, 0, 0, 0, ny)
	tests := []struct {
		name      string
		runAt     time.Time
		days      int
		profile   attrs
		wantAttrs attrs // nil for no match
		wantErr   error
	}{
		{"opened an hour ago", runAt, 7, attrs{"opened_at": "2026-01-15T08:00:00-05:00"}, attrs{"opened_at": "2026-01-15T08:00:00-05:00", "days_since_open": int64(0)}, nil},
		{"opened at the run instant", runAt, 7, attrs{"opened_at": "2026-01-15T14:00:00Z"}, attrs{"opened_at": "2026-01-15T14:00:00Z", "days_since_open": int64(0)}, nil},
		{"opened a minute after the run", runAt, 7, attrs{"opened_at": "2026-01-15T09:01:00-05:00"}, nil, nil},
		{"opened exactly 7 days before: inside", runAt, 7, attrs{"opened_at": "2026-01-08T09:00:00-05:00"}, attrs{"opened_at": "2026-01-08T09:00:00-05:00", "days_since_open": int64(7)}, nil},
		{"opened a minute earlier than 7 days before: outside", runAt, 7, attrs{"opened_at": "2026-01-08T08:59:00-05:00"}, nil, nil},
		{"days since open count calendar days in the job's zone", runAt, 7, attrs{"opened_at": "2026-01-15T03:00:00Z"}, attrs{"opened_at": "2026-01-15T03:00:00Z", "days_since_open": int64(1)}, nil},
		{"a date 7 days before: inside", runAt, 7, attrs{"opened_at": "2026-01-08"}, attrs{"opened_at": "2026-01-08", "days_since_open": int64(7)}, nil},
		{"a date 8 days before: outside", runAt, 7, attrs{"opened_at": "2026-01-07"}, nil, nil},
		{"today's date", runAt, 7, attrs{"opened_at": "2026-01-15"}, attrs{"opened_at": "2026-01-15", "days_since_open": int64(0)}, nil},
		{"tomorrow's date", runAt, 7, attrs{"opened_at": "2026-01-16"}, nil, nil},
		{"a one-day window at midnight takes the day before", time.Date(2026, 1, 15, 0, 0, 0, 0, ny), 1, attrs{"opened_at": "2026-01-14"}, attrs{"opened_at": "2026-01-14", "days_since_open": int64(1)}, nil},
		{"a time.Time", runAt, 7, attrs{"opened_at": time.Date(2026, 1, 12, 12, 0, 0, 0, time.UTC)}, attrs{"opened_at": "2026-01-12T12:00:00Z", "days_since_open": int64(3)}, nil},
		{"the window spans the spring-forward day in calendar days", time.Date(2026, 3, 10, 9, 0, 0, 0, ny), 3, attrs{"opened_at": "2026-03-07T09:30:00-05:00"}, attrs{"opened_at": "2026-03-07T09:30:00-05:00", "days_since_open": int64(3)}, nil},
		{"a year ago", runAt, 7, attrs{"opened_at": "2025-01-15"}, nil, nil},
		{"no opened_at", runAt, 7, attrs{}, nil, nil},
		{"a malformed opened_at", runAt, 7, attrs{"opened_at": "15/01/2026"}, nil, batchgen.ErrAttribute},
		{"a zero window is an argument error", runAt, 0, attrs{"opened_at": "2026-01-15"}, nil, batchgen.ErrArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, ok, err := batchgen.NewCustomer(tt.runAt, tt.days, "C1", tt.profile)
			wantID := ""
			if tt.wantAttrs != nil {
				wantID = "new_customer:C1"
			}
			check(t, result{ev, ok, err}, tt.runAt, "C1", "new_customer", wantID, tt.wantAttrs, tt.wantErr)
		})
	}
}
