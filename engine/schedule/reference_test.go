package schedule

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// matchRef tells whether the wall time of tm matches s, by the definition,
// with the time package's calendar.
func (s *Schedule) matchRef(tm time.Time) bool {
	return s.minute&(1<<tm.Minute()) != 0 && s.hour&(1<<tm.Hour()) != 0 && s.dayRef(tm)
}

// dayRef tells whether the date of tm matches the day and month fields.
func (s *Schedule) dayRef(tm time.Time) bool {
	has := func(set uint64, v int) bool { return set&(1<<v) != 0 }
	if !has(s.month, int(tm.Month())) {
		return false
	}
	dom, dow := has(s.dom, tm.Day()), has(s.dow, int(tm.Weekday()))
	if s.domStar || s.dowStar {
		return dom && dow
	}
	return dom || dow
}

// bruteNext scans every minute of the days after t that match the day
// fields, for up to horizon days, in a zone without daylight saving.
func (s *Schedule) bruteNext(t time.Time, loc *time.Location, horizon int) (time.Time, bool) {
	w := t.In(loc)
	day := time.Date(w.Year(), w.Month(), w.Day(), 0, 0, 0, 0, loc)
	for i := 0; i <= horizon; i++ {
		d := day.AddDate(0, 0, i)
		if !s.dayRef(d) {
			continue
		}
		for m := 0; m < 24*60; m++ {
			c := d.Add(time.Duration(m) * time.Minute)
			if c.After(t) && s.matchRef(c) {
				return c, true
			}
		}
	}
	return time.Time{}, false
}

func (s *Schedule) brutePrev(t time.Time, loc *time.Location, horizon int) (time.Time, bool) {
	w := t.In(loc)
	day := time.Date(w.Year(), w.Month(), w.Day(), 0, 0, 0, 0, loc)
	for i := 0; i <= horizon; i++ {
		d := day.AddDate(0, 0, -i)
		if !s.dayRef(d) {
			continue
		}
		for m := 24*60 - 1; m >= 0; m-- {
			c := d.Add(time.Duration(m) * time.Minute)
			if !c.After(t) && s.matchRef(c) {
				return c, true
			}
		}
	}
	return time.Time{}, false
}

// randomExpr returns a random valid expression that matches at least every
// few months, so that the brute force finds its times quickly.
func randomExpr(r *rand.Rand) string {
	field := func(lo, hi int, names []string) string {
		span := hi - lo + 1
		if hi == 7 { // day of week: 0-7, 7 values
			span = 7
		}
		var items []string
		for n := 1 + r.IntN(3); n > 0; n-- {
			v := func() string {
				x := lo + r.IntN(hi-lo+1)
				if names != nil && r.IntN(3) == 0 && x-lo < len(names) {
					return names[x-lo]
				}
				return strconv.Itoa(x)
			}
			switch r.IntN(6) {
			case 0:
				items = append(items, "*")
			case 1:
				items = append(items, "*/"+strconv.Itoa(1+r.IntN(span)))
			case 2:
				a := lo + r.IntN(hi-lo+1)
				b := a + r.IntN(hi-a+1)
				items = append(items, strconv.Itoa(a)+"-"+strconv.Itoa(b)+"/"+strconv.Itoa(1+r.IntN(span)))
			case 3:
				a := lo + r.IntN(hi-lo+1)
				items = append(items, strconv.Itoa(a)+"-"+strconv.Itoa(a+r.IntN(hi-a+1)))
			default:
				items = append(items, v())
			}
		}
		return strings.Join(items, ",")
	}
	months := []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
	days := []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"}
	return strings.Join([]string{
		field(0, 59, nil), field(0, 23, nil), field(1, 31, nil), field(1, 12, months), field(0, 7, days),
	}, " ")
}

// TestNextMatchesBruteForce compares Next and Prev with a minute-by-minute
// scan, for random expressions and times, in UTC and a fixed zone.
func TestNextMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	locs := []*time.Location{time.UTC, time.FixedZone("IST", 5*3600+1800), time.FixedZone("-0930", -(9*3600 + 1800))}
	n := 300
	if testing.Short() {
		n = 50
	}
	for i := 0; i < n; i++ {
		expr := randomExpr(r)
		s, err := Parse(expr)
		if err != nil {
			t.Fatalf("Parse(%q): %v", expr, err)
		}
		loc := locs[i%len(locs)]
		from := time.Unix(1700000000+r.Int64N(400*86400), int64(r.IntN(2))*int64(time.Second)*int64(r.IntN(60)))
		want, ok := s.bruteNext(from, loc, 400)
		got := s.Next(from, loc)
		if ok && !got.Equal(want) || !ok && !got.IsZero() && got.Before(from.AddDate(0, 0, 400)) {
			t.Errorf("%q Next(%s) = %s, want %s", expr, from.In(loc), got, want)
		}
		want, ok = s.brutePrev(from, loc, 400)
		got = s.Prev(from, loc)
		if ok && !got.Equal(want) || !ok && !got.IsZero() && got.After(from.AddDate(0, 0, -400)) {
			t.Errorf("%q Prev(%s) = %s, want %s", expr, from.In(loc), got, want)
		}
	}
}
