package schedule

import (
	"math/bits"
	"time"

	"github.com/kairos-engine/kairos/engine/internal/civil"
)

// searchYears bounds Next and Prev: the longest wait between two
// occurrences of a satisfiable schedule is the eight years between two 29
// Februaries across a non-leap century year (2096 to 2104).
const searchYears = 8

// Next returns the first scheduled time strictly after t, in loc (nil is
// UTC), or the zero time when the schedule has no time in the next eight
// years (0 0 31 2 *). Around daylight-saving changes, see the package
// documentation: a wall time that happens twice fires at its first
// occurrence; a wall time that does not exist fires at the end of the gap,
// or is skipped when the hour field is "*" or starts with "*/".
//
// Next walks the calendar field by field (a month or a day that cannot
// match is skipped whole) and does not allocate.
func (s *Schedule) Next(t time.Time, loc *time.Location) time.Time {
	if loc == nil {
		loc = time.UTC
	}
	w := t.In(loc)
	yy, mm, dd := w.Date()
	hh, mi, _ := w.Clock()
	// Every wall time up to t's minute has its (first) occurrence at or
	// before t, so the search starts at the next minute. In the second
	// pass of a fall back, the next minutes' first occurrences are before
	// t too: resolve and the After test skip them.
	c := cursor{y: yy, m: int(mm), d: dd, h: hh, mi: mi}
	c.nextMinute()
	last := yy + searchYears
	for c.y <= last {
		if s.month&(1<<c.m) == 0 {
			if m := nextBit(s.month, c.m); m > 0 {
				c.m = m
			} else {
				c.y++
				c.m = nextBit(s.month, 1)
			}
			c.d, c.h, c.mi = 1, 0, 0
			continue
		}
		if s.domOnly {
			// Only the day of month restricts the day: jump to the next one.
			d := nextBit(s.dom, c.d)
			if d < 0 || d > civil.DaysIn(c.y, c.m) {
				c.nextMonth()
				continue
			}
			if d != c.d {
				c.d, c.h, c.mi = d, 0, 0
			}
		} else if !s.dayMatches(c.y, c.m, c.d) {
			c.nextDay()
			continue
		}
		h := nextBit(s.hour, c.h)
		if h < 0 {
			c.nextDay()
			continue
		}
		if h != c.h {
			c.h, c.mi = h, 0
		}
		m := nextBit(s.minute, c.mi)
		if m < 0 {
			c.nextHour()
			continue
		}
		c.mi = m
		if at, ok := s.resolve(&c, loc); ok && at.After(t) {
			return at
		}
		c.nextMinute()
	}
	return time.Time{}
}

// Prev returns the last scheduled time at or before t, in loc (nil is
// UTC), or the zero time when there is none in the eight years before t.
// It is Next's mirror: Prev(Next(t)) == Next(t).
func (s *Schedule) Prev(t time.Time, loc *time.Location) time.Time {
	if loc == nil {
		loc = time.UTC
	}
	w := t.In(loc)
	// In the second pass of a fall back (the clock shows a time it showed
	// an hour ago), the first occurrences of the wall times up to the
	// change are all before t: start from the last minute before it.
	if start, _ := w.ZoneBounds(); !start.IsZero() {
		_, off := w.Zone()
		_, prev := start.Add(-1).Zone()
		if prev > off && w.Before(start.Add(time.Duration(prev-off)*time.Second)) {
			w = start.Add(-1)
		}
	}
	yy, mm, dd := w.Date()
	hh, mi, _ := w.Clock()
	c := cursor{y: yy, m: int(mm), d: dd, h: hh, mi: mi}
	first := yy - searchYears
	for c.y >= first {
		if s.month&(1<<c.m) == 0 {
			if m := prevBit(s.month, c.m); m > 0 {
				c.m = m
			} else {
				c.y--
				c.m = prevBit(s.month, 12)
			}
			c.d, c.h, c.mi = civil.DaysIn(c.y, c.m), 23, 59
			continue
		}
		if s.domOnly {
			d := prevBit(s.dom, c.d)
			if d < 1 {
				c.prevMonth()
				continue
			}
			if d != c.d {
				c.d, c.h, c.mi = d, 23, 59
			}
		} else if !s.dayMatches(c.y, c.m, c.d) {
			c.prevDay()
			continue
		}
		h := prevBit(s.hour, c.h)
		if h < 0 {
			c.prevDay()
			continue
		}
		if h != c.h {
			c.h, c.mi = h, 59
		}
		m := prevBit(s.minute, c.mi)
		if m < 0 {
			c.prevHour()
			continue
		}
		c.mi = m
		if at, ok := s.resolve(&c, loc); ok && !at.After(t) {
			return at
		}
		c.prevMinute()
	}
	return time.Time{}
}

// Due tells a scheduler what to run now. last is the scheduled time that
// fired last (the at of the previous Due, persisted by the caller; zero
// when the job never fired). Due returns the latest scheduled time in
// (last, now] and ok, or ok=false when there is none: runs missed while the
// scheduler was down are caught up once, with the latest of them, and then
// the schedule continues. With a zero last the latest scheduled time at or
// before now is due at once; a caller that does not want a first run for
// a slot before the job existed starts with last = now.
func (s *Schedule) Due(last, now time.Time, loc *time.Location) (at time.Time, ok bool) {
	at = s.Prev(now, loc)
	if at.IsZero() || (!last.IsZero() && !at.After(last)) {
		return time.Time{}, false
	}
	return at, true
}

func (s *Schedule) dayMatches(y, m, d int) bool {
	domOK := s.dom&(1<<d) != 0
	dowOK := s.dow&(1<<weekday(y, m, d)) != 0
	if s.domStar || s.dowStar {
		return domOK && dowOK
	}
	return domOK || dowOK
}

// resolve returns the instant the wall time c fires at in loc: its first
// occurrence; for a wall time in a spring-forward gap, the end of the gap,
// or ok=false when the hour field is "*" (skipped).
func (s *Schedule) resolve(c *cursor, loc *time.Location) (time.Time, bool) {
	r := time.Date(c.y, time.Month(c.m), c.d, c.h, c.mi, 0, 0, loc)
	ry, rm, rd := r.Date()
	rh, rmi, rs := r.Clock()
	if rmi == c.mi && rh == c.h && rd == c.d && int(rm) == c.m && ry == c.y && rs == 0 {
		// The wall time exists; time.Date may have returned its second
		// occurrence (it does for Australia/Lord_Howe).
		start, _ := r.ZoneBounds()
		if !start.IsZero() {
			_, off := r.Zone()
			_, prev := start.Add(-1).Zone()
			if prev > off {
				if e := r.Add(-time.Duration(prev-off) * time.Second); e.Before(start) {
					return e, true
				}
			}
		}
		return r, true
	}
	if s.hourStar {
		return time.Time{}, false
	}
	// The wall time is in a gap; time.Date read it with the offset of one
	// side of the transition. Find the transition whose gap holds it.
	wall := civil.DaysFromCivil(c.y, c.m, c.d)*86400 + int64(c.h)*3600 + int64(c.mi)*60
	start, end := r.ZoneBounds()
	_, off := r.Zone()
	if !end.IsZero() {
		_, next := end.Zone()
		if e := end.Unix(); wall >= e+int64(off) && wall < e+int64(next) {
			return end, true
		}
	}
	if !start.IsZero() {
		_, prev := start.Add(-1).Zone()
		if b := start.Unix(); wall >= b+int64(prev) && wall < b+int64(off) {
			return start, true
		}
	}
	return time.Time{}, false
}

// cursor is a wall-clock minute, kept normalised by its methods.
type cursor struct{ y, m, d, h, mi int }

func (c *cursor) nextMinute() {
	if c.mi++; c.mi == 60 {
		c.nextHour()
	}
}

func (c *cursor) nextHour() {
	c.mi = 0
	if c.h++; c.h == 24 {
		c.nextDay()
	}
}

func (c *cursor) nextDay() {
	c.h, c.mi = 0, 0
	if c.d++; c.d > civil.DaysIn(c.y, c.m) {
		c.nextMonth()
	}
}

func (c *cursor) nextMonth() {
	c.d, c.h, c.mi = 1, 0, 0
	if c.m++; c.m == 13 {
		c.m = 1
		c.y++
	}
}

func (c *cursor) prevMinute() {
	if c.mi--; c.mi < 0 {
		c.prevHour()
	}
}

func (c *cursor) prevHour() {
	c.mi = 59
	if c.h--; c.h < 0 {
		c.prevDay()
	}
}

func (c *cursor) prevDay() {
	c.h, c.mi = 23, 59
	if c.d--; c.d < 1 {
		c.prevMonth()
	}
}

func (c *cursor) prevMonth() {
	if c.m--; c.m == 0 {
		c.m = 12
		c.y--
	}
	c.d, c.h, c.mi = civil.DaysIn(c.y, c.m), 23, 59
}

// nextBit returns the lowest set bit of set at or above i, or -1.
func nextBit(set uint64, i int) int {
	if i > 63 {
		return -1
	}
	set >>= uint(i)
	if set == 0 {
		return -1
	}
	return i + bits.TrailingZeros64(set)
}

// prevBit returns the highest set bit of set at or below i, or -1.
func prevBit(set uint64, i int) int {
	if i < 0 {
		return -1
	}
	if i < 63 {
		set &= 1<<(uint(i)+1) - 1
	}
	return bits.Len64(set) - 1
}

// weekday returns 0 for Sunday to 6 for Saturday.
func weekday(y, m, d int) int {
	w := (civil.DaysFromCivil(y, m, d) + 4) % 7 // 1970-01-01 was a Thursday
	if w < 0 {
		w += 7
	}
	return int(w)
}
