package schedule_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/engine/schedule"
)

func mustParse(t testing.TB, expr string) *schedule.Schedule {
	t.Helper()
	s, err := schedule.Parse(expr)
	if err != nil {
		t.Fatalf("Parse(%q): %v", expr, err)
	}
	return s
}

func mustLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("LoadLocation(%q): %v", name, err)
	}
	return loc
}

// at parses an RFC 3339 time, or a "2006-01-02 15:04" wall time in loc.
func at(t testing.TB, s string, loc *time.Location) time.Time {
	t.Helper()
	if tm, err := time.Parse(time.RFC3339, s); err == nil {
		return tm
	}
	tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatalf("bad time %q: %v", s, err)
	}
	return tm
}

// nexts returns n successive Next times from from, in RFC 3339.
func nexts(s *schedule.Schedule, from time.Time, loc *time.Location, n int) []string {
	var out []string
	for range n {
		from = s.Next(from, loc)
		if from.IsZero() {
			out = append(out, "zero")
			break
		}
		out = append(out, from.Format(time.RFC3339))
	}
	return out
}

func TestSyntax(t *testing.T) {
	// 2026-01-01 is a Thursday.
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name, expr string
		want       []string
	}{
		{"every minute", "* * * * *", []string{"2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"}},
		{"a list of minutes", "5,10 * * * *", []string{"2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z", "2026-01-01T01:05:00Z"}},
		{"a range of hours", "0 1-3 * * *", []string{"2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z", "2026-01-01T03:00:00Z", "2026-01-02T01:00:00Z"}},
		{"a step over the whole field", "*/15 * * * *", []string{"2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z", "2026-01-01T01:00:00Z"}},
		{"a step over a range", "10-50/20 * * * *", []string{"2026-01-01T00:10:00Z", "2026-01-01T00:30:00Z", "2026-01-01T00:50:00Z", "2026-01-01T01:10:00Z"}},
		{"a step from a start to the maximum", "50/5 * * * *", []string{"2026-01-01T00:50:00Z", "2026-01-01T00:55:00Z", "2026-01-01T01:50:00Z"}},
		{"a list mixing ranges, steps and values", "0 0 1-2,10,20-30/5 * *", []string{"2026-01-02T00:00:00Z", "2026-01-10T00:00:00Z", "2026-01-20T00:00:00Z", "2026-01-25T00:00:00Z", "2026-01-30T00:00:00Z", "2026-02-01T00:00:00Z"}},
		{"month names in any case", "0 0 1 jan,JUL *", []string{"2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"}},
		{"a range of month names", "0 0 1 Nov-dec *", []string{"2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", "2027-11-01T00:00:00Z"}},
		{"weekday names in a range", "0 9 * * MON-fri", []string{"2026-01-01T09:00:00Z", "2026-01-02T09:00:00Z", "2026-01-05T09:00:00Z"}},
		{"7 is Sunday", "0 0 * * 7", []string{"2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"}},
		{"0 is Sunday", "0 0 * * 0", []string{"2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"}},
		{"a range ending on 7", "0 0 * * 5-7", []string{"2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z", "2026-01-09T00:00:00Z"}},
		{"day of month or day of week when both are restricted", "0 0 13 * fri", []string{"2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z", "2026-01-16T00:00:00Z"}},
		{"day of month and day of week when the day of month starts with a star", "0 0 */10 * mon", []string{"2026-05-11T00:00:00Z", "2026-06-01T00:00:00Z"}},
		{"day of week alone", "0 0 * * wed", []string{"2026-01-07T00:00:00Z", "2026-01-14T00:00:00Z"}},
		{"two-digit values", "05 09 01 01 *", []string{"2026-01-01T09:05:00Z", "2027-01-01T09:05:00Z"}},
		{"@hourly", "@hourly", []string{"2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"}},
		{"@daily", "@daily", []string{"2026-01-02T00:00:00Z"}},
		{"@midnight", "@midnight", []string{"2026-01-02T00:00:00Z"}},
		{"@weekly on Sundays", "@weekly", []string{"2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"}},
		{"@monthly", "@monthly", []string{"2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"}},
		{"@yearly", "@yearly", []string{"2027-01-01T00:00:00Z"}},
		{"@annually in upper case", "@ANNUALLY", []string{"2027-01-01T00:00:00Z"}},
		{"extra white space", "  0\t12  * *   * ", []string{"2026-01-01T12:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, tt.expr)
			got := nexts(s, from, time.UTC, len(tt.want))
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("Next from %s:\n got %v\nwant %v", from.Format(time.RFC3339), got, tt.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	tests := []struct{ name, expr, want string }{
		{"fields joined by single spaces", " 0\t9  * * mon-fri ", "0 9 * * mon-fri"},
		{"a macro in lower case", "@Daily", "@daily"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParse(t, tt.expr).String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, expr string
		field      string
		token      string
		want       string // the full error text
	}{
		{"empty", "", "", "", `cron expression "": 0 fields, want 5 (minute hour day-of-month month day-of-week) or a macro such as @daily`},
		{"four fields", "* * * *", "", "", `cron expression "* * * *": 4 fields, want 5 (minute hour day-of-month month day-of-week) or a macro such as @daily`},
		{"six fields (seconds)", "0 0 0 * * *", "", "", `cron expression "0 0 0 * * *": 6 fields, want 5 (minute hour day-of-month month day-of-week) or a macro such as @daily; seconds and years are not supported`},
		{"unknown macro", "@every", "", "@every", `cron expression "@every": "@every": unknown macro (want @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)`},
		{"macro with another field", "@daily 5", "", "", `cron expression "@daily 5": 2 fields, want 5 (minute hour day-of-month month day-of-week) or a macro such as @daily`},
		{"minute out of range", "60 * * * *", "minute", "60", `cron expression "60 * * * *": minute field: "60": out of range 0-59`},
		{"hour out of range", "0 24 * * *", "hour", "24", `cron expression "0 24 * * *": hour field: "24": out of range 0-23`},
		{"day of month zero", "0 0 0 * *", "day-of-month", "0", `cron expression "0 0 0 * *": day-of-month field: "0": out of range 1-31`},
		{"day of month 32", "0 0 32 * *", "day-of-month", "32", `cron expression "0 0 32 * *": day-of-month field: "32": out of range 1-31`},
		{"month 13", "0 0 * 13 *", "month", "13", `cron expression "0 0 * 13 *": month field: "13": out of range 1-12`},
		{"day of week 8", "0 0 * * 8", "day-of-week", "8", `cron expression "0 0 * * 8": day-of-week field: "8": out of range 0-7`},
		{"three digits", "000 * * * *", "minute", "000", `cron expression "000 * * * *": minute field: "000": out of range 0-59`},
		{"unknown month name", "0 0 * foo *", "month", "foo", `cron expression "0 0 * foo *": month field: "foo": not a number 1-12 or a month name (jan-dec)`},
		{"day name in the month field", "0 0 * jan-mon *", "month", "jan-mon", `cron expression "0 0 * jan-mon *": month field: "jan-mon": not a number 1-12 or a month name (jan-dec)`},
		{"unknown day name", "0 0 * * mon-foo", "day-of-week", "mon-foo", `cron expression "0 0 * * mon-foo": day-of-week field: "mon-foo": not a number 0-7 or a day name (sun-sat)`},
		{"full day name", "0 0 * * monday", "day-of-week", "monday", `cron expression "0 0 * * monday": day-of-week field: "monday": not a number 0-7 or a day name (sun-sat)`},
		{"name in the minute field", "jan * * * *", "minute", "jan", `cron expression "jan * * * *": minute field: "jan": not a number 0-59`},
		{"reversed range", "5-1 * * * *", "minute", "5-1", `cron expression "5-1 * * * *": minute field: "5-1": range start after its end (ranges do not wrap around)`},
		{"reversed range of names", "0 0 * * fri-mon", "day-of-week", "fri-mon", `cron expression "0 0 * * fri-mon": day-of-week field: "fri-mon": range start after its end (ranges do not wrap around)`},
		{"step zero", "*/0 * * * *", "minute", "*/0", `cron expression "*/0 * * * *": minute field: "*/0": step must be a whole number from 1 to 60`},
		{"step too large", "0 */25 * * *", "hour", "*/25", `cron expression "0 */25 * * *": hour field: "*/25": step must be a whole number from 1 to 24`},
		{"negative step", "*/-1 * * * *", "minute", "*/-1", `cron expression "*/-1 * * * *": minute field: "*/-1": step must be a whole number from 1 to 60`},
		{"step with a sign", "*/+5 * * * *", "minute", "*/+5", `cron expression "*/+5 * * * *": minute field: "*/+5": step must be a whole number from 1 to 60`},
		{"two steps", "1/2/3 * * * *", "minute", "1/2/3", `cron expression "1/2/3 * * * *": minute field: "1/2/3": step must be a whole number from 1 to 60`},
		{"missing range before a step", "/5 * * * *", "minute", "/5", `cron expression "/5 * * * *": minute field: "/5": missing range before /`},
		{"half-open range", "1- * * * *", "minute", "1-", `cron expression "1- * * * *": minute field: "1-": missing value`},
		{"negative value", "-1 * * * *", "minute", "-1", `cron expression "-1 * * * *": minute field: "-1": missing value`},
		{"three-part range", "1-2-3 * * * *", "minute", "1-2-3", `cron expression "1-2-3 * * * *": minute field: "1-2-3": not a number 0-59`},
		{"empty list item", "1,,2 * * * *", "minute", "1,,2", `cron expression "1,,2 * * * *": minute field: "1,,2": empty list item`},
		{"trailing comma", "0 0 1, * *", "day-of-month", "1,", `cron expression "0 0 1, * *": day-of-month field: "1,": empty list item`},
		{"question mark", "0 0 ? * mon", "day-of-month", "?", `cron expression "0 0 ? * mon": day-of-month field: "?": not a number 1-31`},
		{"last day of month", "0 0 L * *", "day-of-month", "L", `cron expression "0 0 L * *": day-of-month field: "L": not a number 1-31`},
		{"nth weekday", "0 0 * * 1#2", "day-of-week", "1#2", `cron expression "0 0 * * 1#2": day-of-week field: "1#2": not a number 0-7 or a day name (sun-sat)`},
		{"star range", "*-5 * * * *", "minute", "*-5", `cron expression "*-5 * * * *": minute field: "*-5": not a number 0-59`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := schedule.Parse(tt.expr)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want an error", tt.expr, s)
			}
			if !errors.Is(err, schedule.ErrSyntax) {
				t.Errorf("error %v is not ErrSyntax", err)
			}
			var pe *schedule.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if pe.Field != tt.field || pe.Token != tt.token {
				t.Errorf("field %q token %q, want %q %q", pe.Field, pe.Token, tt.field, tt.token)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

func TestParseErrorTruncatesLongExpressions(t *testing.T) {
	long := strings.Repeat("1,", 100) + "x * * * *"
	_, err := schedule.Parse(long)
	if err == nil || len(err.Error()) > 250 {
		t.Errorf("error %q: want one shorter than 250 bytes", err)
	}
}

func TestNextAcrossMonthsAndYears(t *testing.T) {
	tests := []struct {
		name, expr, from string
		want             []string
	}{
		{"first of the month across a year end", "0 0 1 * *", "2026-12-15T00:00:00Z", []string{"2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z"}},
		{"strictly after: the last minute of the year", "59 23 31 12 *", "2026-12-31T23:59:00Z", []string{"2027-12-31T23:59:00Z"}},
		{"just before the last minute of the year", "59 23 31 12 *", "2026-12-31T23:58:59Z", []string{"2026-12-31T23:59:00Z"}},
		{"seconds after a scheduled minute", "0 9 * * *", "2026-01-01T09:00:01Z", []string{"2026-01-02T09:00:00Z"}},
		{"the 31st skips the short months", "0 0 31 * *", "2026-04-01T00:00:00Z", []string{"2026-05-31T00:00:00Z", "2026-07-31T00:00:00Z", "2026-08-31T00:00:00Z", "2026-10-31T00:00:00Z"}},
		{"the 30th skips February", "0 12 30 * *", "2027-01-31T00:00:00Z", []string{"2027-03-30T12:00:00Z"}},
		{"the last hour of a month rolls over", "30 23 * * *", "2026-01-31T23:45:00Z", []string{"2026-02-01T23:30:00Z"}},
		{"29 February from a non-leap year", "0 0 29 2 *", "2026-03-01T00:00:00Z", []string{"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"}},
		{"29 February across 2100, not a leap year", "0 0 29 2 *", "2096-03-01T00:00:00Z", []string{"2104-02-29T00:00:00Z"}},
		{"28 February every year", "0 0 28 2 *", "2027-03-01T00:00:00Z", []string{"2028-02-28T00:00:00Z", "2029-02-28T00:00:00Z"}},
		{"a February-only weekday schedule", "0 0 * feb mon", "2026-02-24T00:00:00Z", []string{"2027-02-01T00:00:00Z"}},
		{"31 February never happens", "0 0 31 2 *", "2026-01-01T00:00:00Z", []string{"zero"}},
		{"30 February never happens", "0 0 30 2 *", "2026-01-01T00:00:00Z", []string{"zero"}},
		{"31 April never happens", "0 0 31 4 *", "2026-01-01T00:00:00Z", []string{"zero"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, tt.expr)
			got := nexts(s, at(t, tt.from, time.UTC), time.UTC, len(tt.want))
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestPrev(t *testing.T) {
	ny := mustLoad(t, "America/New_York")
	tests := []struct {
		name, expr, from string
		loc              *time.Location
		want             string
	}{
		{"at a scheduled time returns it", "0 9 * * *", "2026-01-10T09:00:00Z", time.UTC, "2026-01-10T09:00:00Z"},
		{"just before a scheduled time returns the one before", "0 9 * * *", "2026-01-10T08:59:59Z", time.UTC, "2026-01-09T09:00:00Z"},
		{"across a year start", "0 0 31 12 *", "2027-01-01T00:00:00Z", time.UTC, "2026-12-31T00:00:00Z"},
		{"29 February from a non-leap year", "0 0 29 2 *", "2027-01-01T00:00:00Z", time.UTC, "2024-02-29T00:00:00Z"},
		{"the last Friday-or-13th", "0 0 13 * fri", "2026-01-12T00:00:00Z", time.UTC, "2026-01-09T00:00:00Z"},
		{"31 February never happened", "0 0 31 2 *", "2026-01-01T00:00:00Z", time.UTC, "zero"},
		{"a missing 02:30 fires at the end of the gap", "30 2 * * *", "2026-03-08 03:10", ny, "2026-03-08T03:00:00-04:00"},
		{"in the second pass of a fall back, the first 01:50 has happened", "50 1 * * *", "2026-11-01T06:10:00Z", ny, "2026-11-01T01:50:00-04:00"},
		{"after the second 01:30, the first one is the last", "30 1 * * *", "2026-11-01T06:45:00Z", ny, "2026-11-01T01:30:00-04:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustParse(t, tt.expr).Prev(at(t, tt.from, tt.loc), tt.loc)
			s := "zero"
			if !got.IsZero() {
				s = got.Format(time.RFC3339)
			}
			if s != tt.want {
				t.Errorf("Prev = %s, want %s", s, tt.want)
			}
		})
	}
}

func TestDaylightSaving(t *testing.T) {
	ny := mustLoad(t, "America/New_York")
	tests := []struct {
		name, expr, from string
		want             []string
	}{
		// Spring forward: 2026-03-08 02:00 EST becomes 03:00 EDT.
		{"02:30 does not exist on the spring-forward day: it fires at 03:00 EDT", "30 2 * * *", "2026-03-07 03:00", []string{"2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"}},
		{"01:30 before the gap is unaffected", "30 1 * * *", "2026-03-07 03:00", []string{"2026-03-08T01:30:00-05:00", "2026-03-09T01:30:00-04:00"}},
		{"03:00 at the end of the gap fires once", "0 3 * * *", "2026-03-07 03:00", []string{"2026-03-08T03:00:00-04:00", "2026-03-09T03:00:00-04:00"}},
		{"several missing times of one gap fire once", "*/20 2 * * *", "2026-03-07 03:00", []string{"2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00", "2026-03-09T02:20:00-04:00"}},
		{"a missing time and the end of the gap fire once", "0,30 2,3 * * *", "2026-03-08 01:00", []string{"2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00", "2026-03-09T02:00:00-04:00"}},
		{"an hourly schedule skips the missing hour", "30 * * * *", "2026-03-08 01:00", []string{"2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00-04:00"}},
		{"an every-two-hours schedule skips the missing hour", "0 */2 * * *", "2026-03-08 00:30", []string{"2026-03-08T04:00:00-04:00"}},
		// Fall back: 2026-11-01 02:00 EDT becomes 01:00 EST.
		{"01:30 happens twice on the fall-back day and fires once", "30 1 * * *", "2026-10-31 02:00", []string{"2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"}},
		{"02:30 happens once on the fall-back day", "30 2 * * *", "2026-10-31 03:00", []string{"2026-11-01T02:30:00-05:00", "2026-11-02T02:30:00-05:00"}},
		{"an hourly schedule fires once per wall time on the fall-back day", "30 * * * *", "2026-11-01 00:00", []string{"2026-11-01T00:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-01T02:30:00-05:00"}},
		{"from the second pass of the repeated hour", "50 1 * * *", "2026-11-01T06:10:00Z", []string{"2026-11-02T01:50:00-05:00"}},
		{"every minute through the repeated hour does not go back", "59 1 * * *", "2026-11-01T05:58:00Z", []string{"2026-11-01T01:59:00-04:00", "2026-11-02T01:59:00-05:00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, tt.expr)
			got := nexts(s, at(t, tt.from, ny), ny, len(tt.want))
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestOtherZones(t *testing.T) {
	tests := []struct {
		name, zone, expr, from string
		want                   []string
	}{
		{"Asia/Shanghai has no daylight saving in March", "Asia/Shanghai", "0 9 * * *", "2026-03-07 12:00", []string{"2026-03-08T09:00:00+08:00", "2026-03-09T09:00:00+08:00"}},
		{"Asia/Shanghai has no daylight saving in November", "Asia/Shanghai", "30 1 * * *", "2026-10-31 12:00", []string{"2026-11-01T01:30:00+08:00", "2026-11-02T01:30:00+08:00"}},
		{"a day skipped by Pacific/Apia fires at the start of the next", "Pacific/Apia", "0 9 * * *", "2011-12-29 10:00", []string{"2011-12-31T00:00:00+14:00", "2011-12-31T09:00:00+14:00"}},
		{"a midnight skipped by America/Santiago fires at 01:00", "America/Santiago", "0 0 * * *", "2026-09-05 12:00", []string{"2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00"}},
		{"a half-hour gap in Australia/Lord_Howe", "Australia/Lord_Howe", "15 2 * * *", "2026-10-03 12:00", []string{"2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"}},
		{"a half-hour overlap in Australia/Lord_Howe fires at the first", "Australia/Lord_Howe", "45 1 * * *", "2026-04-04 12:00", []string{"2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc := mustLoad(t, tt.zone)
			s := mustParse(t, tt.expr)
			got := nexts(s, at(t, tt.from, loc), loc, len(tt.want))
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
			for _, w := range got {
				n := at(t, w, loc)
				if p := s.Prev(n, loc); !p.Equal(n) {
					t.Errorf("Prev(%s) = %s", w, p.Format(time.RFC3339))
				}
			}
		})
	}
}

func TestNilLocationIsUTC(t *testing.T) {
	s := mustParse(t, "0 9 * * *")
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got, want := s.Next(from, nil), s.Next(from, time.UTC); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("Next(nil) = %v, want %v", got, want)
	}
	if got := s.Prev(from, nil); !got.Equal(time.Date(2025, 12, 31, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("Prev(nil) = %v", got)
	}
}

func TestDue(t *testing.T) {
	ny := mustLoad(t, "America/New_York")
	daily := "0 9 * * *"
	tests := []struct {
		name, expr, last, now string
		want                  string // "" when nothing is due
	}{
		{"catch-up after a long downtime returns only the latest slot", daily, "2026-01-01 09:00", "2026-01-10 12:00", "2026-01-10T09:00:00-05:00"},
		{"downtime ending before today's slot catches up yesterday's", daily, "2026-01-01 09:00", "2026-01-10 08:00", "2026-01-09T09:00:00-05:00"},
		{"last is the latest slot: nothing is due", daily, "2026-01-10 09:00", "2026-01-10 12:00", ""},
		{"last is the latest slot, now just before the next", daily, "2026-01-10 09:00", "2026-01-11 08:59", ""},
		{"now equal to a slot: the slot is due", daily, "2026-01-10 09:00", "2026-01-11 09:00", "2026-01-11T09:00:00-05:00"},
		{"never fired: the latest slot is due", daily, "", "2026-01-10 12:00", "2026-01-10T09:00:00-05:00"},
		{"the clock went back before last: nothing is due", daily, "2026-01-10 09:00", "2026-01-09 10:00", ""},
		{"no slot ever: nothing is due", "0 0 31 2 *", "", "2026-01-10 12:00", ""},
		{"a missing 02:30 is due at the end of the gap", "30 2 * * *", "2026-03-07 02:30", "2026-03-08 03:05", "2026-03-08T03:00:00-04:00"},
		{"the repeated 01:30 is not due again in its second pass", "30 1 * * *", "2026-11-01T05:30:00Z", "2026-11-01T06:45:00Z", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, tt.expr)
			var last time.Time
			if tt.last != "" {
				last = at(t, tt.last, ny)
			}
			got, ok := s.Due(last, at(t, tt.now, ny), ny)
			switch {
			case tt.want == "" && ok:
				t.Errorf("Due = %s, want nothing due", got.Format(time.RFC3339))
			case tt.want != "" && !ok:
				t.Errorf("nothing due, want %s", tt.want)
			case ok && got.Format(time.RFC3339) != tt.want:
				t.Errorf("Due = %s, want %s", got.Format(time.RFC3339), tt.want)
			case !ok && !got.IsZero():
				t.Errorf("Due returned %v with ok=false", got)
			}
		})
	}
}

// TestDueScheduler runs a scheduler loop over a month with a restart that
// misses five days, and checks each slot fires once and the missed ones
// once in all.
func TestDueScheduler(t *testing.T) {
	ny := mustLoad(t, "America/New_York")
	s := mustParse(t, "0 9 * * *")
	var fired []string
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, ny)
	last := start // the job is created at start: no run for the slot before
	down0, down1 := time.Date(2026, 3, 10, 0, 0, 0, 0, ny), time.Date(2026, 3, 15, 12, 0, 0, 0, ny)
	for now := start; now.Before(time.Date(2026, 3, 20, 0, 0, 0, 0, ny)); now = now.Add(17 * time.Minute) {
		if !now.Before(down0) && now.Before(down1) {
			continue // the scheduler is down
		}
		if at, ok := s.Due(last, now, ny); ok {
			fired = append(fired, at.Format("01-02 15:04 MST"))
			last = at
		}
	}
	want := "03-01 09:00 EST 03-02 09:00 EST 03-03 09:00 EST 03-04 09:00 EST 03-05 09:00 EST 03-06 09:00 EST 03-07 09:00 EST " +
		"03-08 09:00 EDT 03-09 09:00 EDT 03-15 09:00 EDT 03-16 09:00 EDT 03-17 09:00 EDT 03-18 09:00 EDT 03-19 09:00 EDT"
	if got := strings.Join(fired, " "); got != want {
		t.Errorf("fired\n%s\nwant\n%s", got, want)
	}
}
