package engine

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestCalendarPeriodStarts(t *testing.T) {
	sh := mustLoc(t, "Asia/Shanghai")
	ny := mustLoc(t, "America/New_York")
	cases := []struct {
		name      string
		now       time.Time
		loc       *time.Location
		period    string
		weekStart time.Weekday
		want      time.Time
	}{
		{"a second before midnight is still today", time.Date(2026, 11, 20, 23, 59, 59, 0, sh), sh, "day", time.Monday, time.Date(2026, 11, 20, 0, 0, 0, 0, sh)},
		{"midnight starts the new day", time.Date(2026, 11, 21, 0, 0, 0, 0, sh), sh, "day", time.Monday, time.Date(2026, 11, 21, 0, 0, 0, 0, sh)},
		{"UTC afternoon is the next day in Shanghai", time.Date(2026, 11, 20, 16, 30, 0, 0, time.UTC), sh, "day", time.Monday, time.Date(2026, 11, 21, 0, 0, 0, 0, sh)},
		{"week starts on Monday", time.Date(2026, 11, 22, 12, 0, 0, 0, sh), sh, "week", time.Monday, time.Date(2026, 11, 16, 0, 0, 0, 0, sh)},
		{"Monday midnight starts the week", time.Date(2026, 11, 23, 0, 0, 0, 0, sh), sh, "week", time.Monday, time.Date(2026, 11, 23, 0, 0, 0, 0, sh)},
		{"week starting Sunday", time.Date(2026, 11, 21, 12, 0, 0, 0, sh), sh, "week", time.Sunday, time.Date(2026, 11, 15, 0, 0, 0, 0, sh)},
		{"month", time.Date(2026, 12, 31, 23, 0, 0, 0, sh), sh, "month", time.Monday, time.Date(2026, 12, 1, 0, 0, 0, 0, sh)},
		{"DST spring-forward day in New York starts at local midnight", time.Date(2026, 3, 8, 12, 0, 0, 0, ny), ny, "day", time.Monday, time.Date(2026, 3, 8, 0, 0, 0, 0, ny)},
		{"week across the DST change in New York", time.Date(2026, 3, 10, 12, 0, 0, 0, ny), ny, "week", time.Monday, time.Date(2026, 3, 9, 0, 0, 0, 0, ny)},
		{"DST fall-back day in New York", time.Date(2026, 11, 1, 23, 30, 0, 0, ny), ny, "day", time.Monday, time.Date(2026, 11, 1, 0, 0, 0, 0, ny)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := periodStart(c.now, c.loc, c.period, c.weekStart); !got.Equal(c.want) {
				t.Errorf("periodStart = %v, want %v", got, c.want)
			}
		})
	}
	// The day containing a DST change is 23 or 25 hours long.
	spring := time.Date(2026, 3, 9, 0, 0, 0, 0, ny).Sub(periodStart(time.Date(2026, 3, 8, 12, 0, 0, 0, ny), ny, "day", time.Monday))
	fall := time.Date(2026, 11, 2, 0, 0, 0, 0, ny).Sub(periodStart(time.Date(2026, 11, 1, 12, 0, 0, 0, ny), ny, "day", time.Monday))
	if spring != 23*time.Hour || fall != 25*time.Hour {
		t.Errorf("DST days last %v and %v", spring, fall)
	}
}

func TestCapSinceIsExclusiveBound(t *testing.T) {
	sh := mustLoc(t, "Asia/Shanghai")
	day := capRule{period: "day", max: 3}
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, sh)
	midnight := time.Date(2026, 11, 20, 0, 0, 0, 0, sh).UnixMilli()
	if got := day.since(now, sh, time.Monday); got != midnight-1 {
		t.Errorf("day since = %d, want midnight-1 = %d (a contact at midnight counts)", got, midnight-1)
	}
	rolling := capRule{window: 24 * time.Hour, max: 3}
	if got := rolling.since(now, sh, time.Monday); got != now.Add(-24*time.Hour).UnixMilli() {
		t.Errorf("rolling since = %d", got)
	}
}

func TestQuietHours(t *testing.T) {
	sh := mustLoc(t, "Asia/Shanghai")
	overnight := &quietHours{from: 21 * 60, to: 8 * 60}
	daytime := &quietHours{from: 12 * 60, to: 14 * 60}
	at := func(h, m int) time.Time { return time.Date(2026, 11, 20, h, m, 0, 0, sh) }
	cases := []struct {
		name  string
		q     *quietHours
		now   time.Time
		quiet bool
		until time.Time
	}{
		{"evening before quiet hours", overnight, at(20, 59), false, time.Time{}},
		{"quiet hours start", overnight, at(21, 0), true, time.Date(2026, 11, 21, 8, 0, 0, 0, sh)},
		{"after midnight", overnight, at(3, 0), true, at(8, 0)},
		{"quiet hours end", overnight, at(8, 0), false, time.Time{}},
		{"lunch quiet hours", daytime, at(12, 30), true, at(14, 0)},
		{"after lunch", daytime, at(14, 0), false, time.Time{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			quiet, until := c.q.quietUntil(c.now, sh)
			if quiet != c.quiet || !until.Equal(c.until) {
				t.Errorf("quietUntil = %v %v, want %v %v", quiet, until, c.quiet, c.until)
			}
		})
	}
	// A customer in another zone is judged by its own clock.
	ny := mustLoc(t, "America/New_York")
	if quiet, _ := overnight.quietUntil(at(22, 0), ny); quiet {
		t.Error("22:00 in Shanghai is 09:00 in New York: not quiet there")
	}
}

func TestHoldoutIsDeterministicAndProportional(t *testing.T) {
	in := 0
	for i := 0; i < 100000; i++ {
		c := fmt.Sprintf("C%d", i)
		a := inHoldout(c, "salt", "rule-a", 0.05)
		if a != inHoldout(c, "salt", "rule-a", 0.05) {
			t.Fatal("holdout is not deterministic")
		}
		if a {
			in++
		}
	}
	if in < 4700 || in > 5300 {
		t.Errorf("%d of 100000 in a 5%% holdout", in)
	}
	if inHoldout("C1", "s", "r", 0) {
		t.Error("a zero fraction holds out")
	}
	differ := 0
	for i := 0; i < 1000; i++ {
		c := fmt.Sprintf("C%d", i)
		if inHoldout(c, "salt", "rule-a", 0.5) != inHoldout(c, "salt", "rule-b", 0.5) {
			differ++
		}
	}
	if differ < 400 {
		t.Errorf("rules share their control groups: only %d of 1000 differ", differ)
	}
}

func TestPolicyConfigErrorsAreAllListed(t *testing.T) {
	var c Config
	c.Defaults()
	c.Policy.Timezone = "Mars/Olympus"
	c.Policy.Caps = &[]CapConfig{{Per: "fortnight", Max: 3}, {Per: "day", Max: 0}}
	c.Policy.QuietHours = &QuietHoursConfig{From: "25:00", To: "08:00", Action: "snooze"}
	c.Policy.Holdout.Fraction = 1.5
	c.Policy.WeekStart = "friday"
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"policy.timezone", "policy.caps[0].per", "policy.caps[1].max", "policy.quiet_hours.from", "policy.quiet_hours.action", "policy.holdout.fraction", "policy.week_start"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s:\n%v", want, err)
		}
	}
}
