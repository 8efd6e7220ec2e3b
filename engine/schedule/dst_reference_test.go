package schedule

import (
	"math/rand/v2"
	"testing"
	"time"
)

// firesRef tells whether the instant x (on a whole minute) is a scheduled
// time of s in loc, by the documented rules, from the time package alone:
// its wall time matches and has not been shown before (the first
// occurrence of a repeated time), or x ends a spring-forward gap holding a
// matching wall time and the hour field does not start with "*".
func (s *Schedule) firesRef(x time.Time, loc *time.Location) bool {
	w := x.In(loc)
	if s.matchRef(w) {
		first := true
		for k := 1; k <= 12; k++ { // offsets change by multiples of 15 minutes, at most 3 hours
			y := x.Add(-time.Duration(k) * 15 * time.Minute).In(loc)
			if y.Year() == w.Year() && y.YearDay() == w.YearDay() && y.Hour() == w.Hour() && y.Minute() == w.Minute() {
				first = false
			}
		}
		if first {
			return true
		}
	}
	if s.hourStar {
		return false
	}
	start, _ := w.ZoneBounds()
	if !start.Equal(x) {
		return false
	}
	_, off := w.Zone()
	_, prev := x.Add(-1).Zone()
	// The wall times of the gap, in UTC clothes: [x+prev, x+off).
	for g := time.Duration(prev) * time.Second; g < time.Duration(off)*time.Second; g += time.Minute {
		u := x.Add(g).UTC()
		if s.matchRef(u) {
			return true
		}
	}
	return false
}

// TestDaylightSavingMatchesBruteForce compares Next and Prev with a
// minute-by-minute scan of instants around the 2026 transitions of zones
// with one-hour, half-hour and midnight changes.
func TestDaylightSavingMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	zones := []string{"America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Santiago", "America/Havana"}
	exprs := []string{"30 2 * * *", "30 1 * * *", "0 0 * * *", "*/20 0-3 * * *", "30 * * * *", "0 */2 * * *", "15,45 1,2 * * *", "59 23 * * *", "0 1 * * sun", "* 1 * * *", "0 3 * * *"}
	n := 40
	if testing.Short() {
		n = 10
	}
	for _, z := range zones {
		loc, err := time.LoadLocation(z)
		if err != nil {
			t.Fatal(err)
		}
		// The 2026 transitions.
		var trans []time.Time
		for x := time.Date(2026, 1, 1, 0, 0, 0, 0, loc); x.Year() == 2026; {
			_, end := x.ZoneBounds()
			if end.IsZero() || end.Year() != 2026 {
				break
			}
			trans = append(trans, end)
			x = end
		}
		if len(trans) == 0 {
			t.Fatalf("%s: no transitions in 2026", z)
		}
		for _, tr := range trans {
			for _, expr := range exprs {
				s, err := Parse(expr)
				if err != nil {
					t.Fatal(err)
				}
				for range n {
					from := tr.Add(time.Duration(r.Int64N(int64(48*time.Hour))) - 36*time.Hour).Truncate(time.Second)
					// Next by brute force, within three days.
					var want time.Time
					for x := from.Truncate(time.Minute).Add(time.Minute); x.Before(from.Add(72 * time.Hour)); x = x.Add(time.Minute) {
						if s.firesRef(x, loc) {
							want = x
							break
						}
					}
					if got := s.Next(from, loc); !want.IsZero() && !got.Equal(want) {
						t.Errorf("%s %q: Next(%s) = %s, want %s", z, expr, from.In(loc), got.In(loc), want.In(loc))
					}
					want = time.Time{}
					for x := from.Truncate(time.Minute); x.After(from.Add(-72 * time.Hour)); x = x.Add(-time.Minute) {
						if s.firesRef(x, loc) {
							want = x
							break
						}
					}
					if got := s.Prev(from, loc); !want.IsZero() && !got.Equal(want) {
						t.Errorf("%s %q: Prev(%s) = %s, want %s", z, expr, from.In(loc), got.In(loc), want.In(loc))
					}
				}
			}
		}
	}
}
