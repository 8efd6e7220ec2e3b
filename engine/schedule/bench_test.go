package schedule_test

import (
	"testing"
	"time"

	"github.com/kairos-engine/kairos/engine/schedule"
)

func BenchmarkNext(b *testing.B) {
	ny := mustLoad(b, "America/New_York")
	sh := mustLoad(b, "Asia/Shanghai")
	from := time.Date(2026, 3, 7, 12, 34, 56, 0, time.UTC)
	for _, bc := range []struct {
		name, expr string
		loc        *time.Location
	}{
		{"daily/UTC", "0 9 * * *", time.UTC},
		{"daily/New_York", "0 9 * * *", ny},
		{"daily/Shanghai", "0 9 * * *", sh},
		{"every_15_minutes/New_York", "*/15 * * * *", ny},
		{"weekdays/New_York", "30 8 * * mon-fri", ny},
		{"first_monday_or_15th/New_York", "0 6 15 * mon", ny},
		{"yearly/New_York", "@yearly", ny},
		{"feb29/UTC", "0 0 29 2 *", time.UTC},
		{"never_feb31/UTC", "0 0 31 2 *", time.UTC},
		{"dst_gap_0230/New_York", "30 2 * * *", ny},
	} {
		s := mustParse(b, bc.expr)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = s.Next(from, bc.loc)
			}
		})
	}
}

func BenchmarkPrev(b *testing.B) {
	ny := mustLoad(b, "America/New_York")
	s := mustParse(b, "0 9 * * *")
	from := time.Date(2026, 3, 7, 12, 34, 56, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Prev(from, ny)
	}
}

func BenchmarkDue(b *testing.B) {
	ny := mustLoad(b, "America/New_York")
	s := mustParse(b, "0 9 * * *")
	last := time.Date(2026, 3, 7, 14, 0, 0, 0, time.UTC)
	now := time.Date(2026, 3, 7, 15, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = s.Due(last, now, ny)
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = schedule.Parse("*/15 8-18 * jan-nov mon-fri")
	}
}
