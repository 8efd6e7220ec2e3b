package schedule_test

import (
	"testing"
	"time"

	"github.com/kairos-engine/kairos/engine/schedule"
)

var fuzzZones = []string{"UTC", "America/New_York", "Asia/Shanghai", "Australia/Lord_Howe", "Pacific/Apia", "America/Santiago", "Europe/London", "Asia/Kolkata"}

// FuzzSchedule checks that Parse never panics and that, for a valid
// expression, Next(t) > t, Prev(Next(t)) == Next(t), Prev(t) <= t and
// Next(Prev(t)) == Next(t). The seed corpus is in testdata/fuzz.
func FuzzSchedule(f *testing.F) {
	f.Add("0 9 * * *", int64(1767225600), uint8(1))
	f.Add("30 2 * * *", int64(1772900000), uint8(1))
	f.Add("*/7 1-3 * * *", int64(1793500000), uint8(1))
	locs := make([]*time.Location, len(fuzzZones))
	for i, z := range fuzzZones {
		loc, err := time.LoadLocation(z)
		if err != nil {
			f.Fatal(err)
		}
		locs[i] = loc
	}
	f.Fuzz(func(t *testing.T, expr string, sec int64, zone uint8) {
		s, err := schedule.Parse(expr)
		if err != nil {
			return
		}
		_ = s.String()
		loc := locs[int(zone)%len(locs)]
		// Years 1900 to 2300.
		const lo, span = -2208988800, 400 * 365 * 86400
		sec = lo + (sec%span+span)%span
		tm := time.Unix(sec, 0)
		next := s.Next(tm, loc)
		if !next.IsZero() {
			if !next.After(tm) {
				t.Fatalf("%q in %s: Next(%s) = %s, not after", expr, loc, tm.In(loc), next)
			}
			if p := s.Prev(next, loc); !p.Equal(next) {
				t.Fatalf("%q in %s: Prev(Next(%s) = %s) = %s", expr, loc, tm.In(loc), next, p)
			}
			if next.Second() != 0 && loc.String() == "UTC" {
				t.Fatalf("%q: Next(%s) = %s has seconds", expr, tm, next)
			}
		}
		prev := s.Prev(tm, loc)
		if !prev.IsZero() {
			if prev.After(tm) {
				t.Fatalf("%q in %s: Prev(%s) = %s, after", expr, loc, tm.In(loc), prev)
			}
			if n := s.Next(prev, loc); !next.IsZero() && !n.IsZero() && !n.Equal(next) {
				t.Fatalf("%q in %s: Next(Prev(%s) = %s) = %s, want Next = %s", expr, loc, tm.In(loc), prev, n, next)
			}
		}
	})
}
