package batchgen

import (
	"time"

	"github.com/kairos-engine/kairos/engine/internal/civil"
)

// civilDate is a calendar date; y is 0 when the year is unknown.
type civilDate struct{ y, m, d int }

func num(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(s) > 0
}

// parseCivil parses YYYY-MM-DD and, when noYear is set, MM-DD and --MM-DD.
// It checks the date exists (29 February only in a leap year, or with no
// year).
func parseCivil(s string, noYear bool) (civilDate, bool) {
	var c civilDate
	var ok bool
	switch {
	case len(s) == 10 && s[4] == '-' && s[7] == '-':
		if c.y, ok = num(s[:4]); !ok || c.y == 0 {
			return c, false
		}
		s = s[5:]
	case noYear && len(s) == 7 && s[0] == '-' && s[1] == '-':
		s = s[2:]
	case noYear && len(s) == 5:
	default:
		return c, false
	}
	if s[2] != '-' {
		return c, false
	}
	if c.m, ok = num(s[:2]); !ok || c.m < 1 || c.m > 12 {
		return c, false
	}
	if c.d, ok = num(s[3:]); !ok || c.d < 1 {
		return c, false
	}
	y := c.y
	if y == 0 {
		y = 2000 // any leap year: 02-29 is a date
	}
	return c, c.d <= civil.DaysIn(y, c.m)
}

// isTimestamp tells whether s looks like an RFC 3339 date-time (a date,
// then T).
func isTimestamp(s string) bool {
	return len(s) > 10 && (s[10] == 'T' || s[10] == 't')
}

const (
	reasonBirthday = "not a date: want YYYY-MM-DD, MM-DD, an RFC 3339 time or a timestamp"
	reasonOpenedAt = "not a date: want an RFC 3339 time, YYYY-MM-DD or a timestamp"
	reasonType     = "not a string or a timestamp"
	reasonZeroTime = "the zero time"
)

// parseBirthday reads a birthday attribute: a civil date, with or without
// the year. An RFC 3339 time or a time.Time gives the date as written in
// its own offset or location, never converted: a birthday is a date, not
// an instant. text is the birthday as YYYY-MM-DD or MM-DD.
func parseBirthday(v any) (c civilDate, text string, reason string) {
	switch b := v.(type) {
	case string:
		if isTimestamp(b) {
			if _, err := time.Parse(time.RFC3339Nano, b); err != nil {
				return c, "", reasonBirthday
			}
			b = b[:10]
		}
		c, ok := parseCivil(b, true)
		if !ok {
			return c, "", reasonBirthday
		}
		if len(b) == 7 {
			b = b[2:]
		}
		return c, b, ""
	case time.Time:
		if b.IsZero() {
			return c, "", reasonZeroTime
		}
		y, m, d := b.Date()
		if y < 1 || y > 9999 {
			return c, "", reasonBirthday
		}
		c = civilDate{y, int(m), d}
		return c, dateString(civil.DaysFromCivil(y, int(m), d)), ""
	}
	return c, "", reasonType
}

// openedAt is a parsed opened_at attribute: an instant, or a civil date
// when dateOnly.
type openedAt struct {
	at       time.Time
	date     civilDate
	dateOnly bool
	text     string // as given for strings; RFC 3339 for a time.Time
}

// parseOpenedAt reads an opened_at attribute: an RFC 3339 time or a
// time.Time (an instant), or YYYY-MM-DD (a civil date).
func parseOpenedAt(v any) (o openedAt, reason string) {
	switch s := v.(type) {
	case string:
		if isTimestamp(s) {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return o, reasonOpenedAt
			}
			return openedAt{at: t, text: s}, ""
		}
		c, ok := parseCivil(s, false)
		if !ok {
			return o, reasonOpenedAt
		}
		return openedAt{date: c, dateOnly: true, text: s}, ""
	case time.Time:
		if s.IsZero() {
			return o, reasonZeroTime
		}
		return openedAt{at: s, text: s.Format(time.RFC3339Nano)}, ""
	}
	return o, reasonType
}

// day returns the civil day of opening in loc: the date as given, or the
// instant's date in loc.
func (o *openedAt) day(loc *time.Location) int64 {
	if o.dateOnly {
		return civil.DaysFromCivil(o.date.y, o.date.m, o.date.d)
	}
	return dayOf(o.at, loc)
}

// near tells whether the yearly date (m, d) falls within tol days of day.
// It lets the generators skip most profiles without loading a zone.
func near(m, d int, day int64, tol int64) bool {
	y, _, _ := civil.CivilFromDays(day)
	for yy := y - 1; yy <= y+1; yy++ {
		if o := occurrence(yy, m, d); o >= day-tol && o <= day+tol {
			return true
		}
	}
	return false
}
