package civil

import (
	"testing"
	"time"
)

// TestAgainstTime checks every day from 1600 to 2400 against the standard
// library, both ways.
func TestAgainstTime(t *testing.T) {
	start := time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)
	for d := start; d.Year() < 2400; d = d.AddDate(0, 0, 1) {
		y, m, dd := d.Date()
		want := d.Unix() / 86400
		if got := DaysFromCivil(y, int(m), dd); got != want {
			t.Fatalf("DaysFromCivil(%v) = %d, want %d", d, got, want)
		}
		if gy, gm, gd := CivilFromDays(want); gy != y || gm != int(m) || gd != dd {
			t.Fatalf("CivilFromDays(%d) = %d-%d-%d, want %v", want, gy, gm, gd, d)
		}
		if dd == 1 {
			if n := time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day(); DaysIn(y, int(m)) != n {
				t.Fatalf("DaysIn(%d, %d) = %d, want %d", y, m, DaysIn(y, int(m)), n)
			}
		}
	}
	for y, leap := range map[int]bool{1900: false, 2000: true, 2024: true, 2026: false, 2100: false} {
		if IsLeap(y) != leap {
			t.Errorf("IsLeap(%d) = %v", y, !leap)
		}
	}
}
