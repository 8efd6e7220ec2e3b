package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

const birthdayRules = `rules:
  - id: happy-birthday
    kind: service
    on: [birthday]
    when: "true"
    offer: {channels: [sms], params: {age: "has(event.attrs.age) ? event.attrs.age : 0"}}
`

// birthdayEngine runs an engine whose customers have birthdays on 20 and
// 23 November, with a daily 09:00 birthday job, on a test clock.
func birthdayEngine(t *testing.T, dir string, clock *testClock) *testEngine {
	t.Helper()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(birthdayRules), 0o644)
	return startTestEngineClock(t, dir, func(c *Config) {
		c.Batch.CheckInterval = "20ms"
		c.Batch.Jobs = []BatchJob{{Name: "birthdays", Type: "birthday", Schedule: "0 9 * * *"}}
	}, clock.Now)
}

func (te *testEngine) birthdayOffers(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, o := range te.offers(t) {
		out = append(out, o.CustomerID+"@"+o.EventID)
	}
	slices.Sort(out)
	return out
}

func (te *testEngine) waitOffers(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := te.birthdayOffers(t)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
}

func TestScheduledBirthdaysFireOnceAndCatchUpOnce(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{t: time.Date(2026, 11, 20, 8, 59, 0, 0, shanghai)}
	te := birthdayEngine(t, dir, clock)
	te.send(t,
		ev{ID: "p1", CustomerID: "A", Type: "profile", Attrs: map[string]any{"birthday": "1990-11-20"}},
		ev{ID: "p2", CustomerID: "B", Type: "profile", Attrs: map[string]any{"birthday": "1985-11-23"}},
		ev{ID: "p3", CustomerID: "C", Type: "profile", Attrs: map[string]any{"birthday": "11-20"}},
	)
	if got := te.birthdayOffers(t); len(got) != 0 {
		t.Fatalf("offers before 09:00: %v", got)
	}
	clock.Set(time.Date(2026, 11, 20, 9, 0, 30, 0, shanghai))
	got := te.waitOffers(t, 2)
	want := []string{"A@birthday:A:2026-11-20", "C@birthday:C:2026-11-20"}
	if !slices.Equal(got, want) {
		t.Fatalf("offers at 09:00 on the 20th: %v, want %v", got, want)
	}
	// A restart the same day does not fire the job again.
	te.stop(t)
	te = birthdayEngine(t, dir, clock)
	// Down for the 21st and 22nd; back on the 23rd at 10:00: one catch-up
	// run, for the 23rd.
	clock.Set(time.Date(2026, 11, 23, 10, 0, 0, 0, shanghai))
	got = te.waitOffers(t, 3)
	want = append(want, "B@birthday:B:2026-11-23")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("after the catch-up: %v, want %v", got, want)
	}
}

func TestRerunningAJobMakesNoSecondOffer(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, shanghai)}
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(birthdayRules), 0o644)
	// A duplicate window so short that the stream cannot help.
	te := startTestEngineClock(t, dir, func(c *Config) { c.Streams.Batch.DuplicateWindow = "100ms" }, clock.Now)
	var profiles []ev
	for i := 0; i < 50; i++ {
		profiles = append(profiles, ev{ID: fmt.Sprintf("p%d", i), CustomerID: fmt.Sprintf("K%02d", i), Type: "profile", Attrs: map[string]any{"birthday": "2000-11-20"}})
	}
	te.send(t, profiles...)
	job := BatchJob{Name: "bd", Type: "birthday"}
	ctx := context.Background()
	for run := 0; run < 3; run++ {
		res, err := te.e.RunJob(ctx, job, clock.Now())
		if err != nil || res.Events != 50 {
			t.Fatalf("run %d: %+v %v", run, res, err)
		}
		time.Sleep(150 * time.Millisecond) // let the stream's duplicate window lapse: the engine must dedupe
	}
	if got := te.waitOffers(t, 50); len(got) != 50 {
		t.Fatalf("%d offers after three runs of the job, want 50", len(got))
	}
	// The stream forgets a message id only when its purge timer runs,
	// up to about a window after the window, so it may still drop a few
	// of a later run; the engine must apply all it kept, and it must
	// have kept some of the later runs for the engine to dedupe.
	s, err := te.js.Stream(ctx, "KAIROS_BATCH")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := info.State.LastSeq
	if last <= 50 {
		t.Fatalf("the batch stream kept %d events of three runs of 50: the engine had nothing to dedupe", last)
	}
	deadline := time.Now().Add(20 * time.Second)
	for te.e.AppliedBatch() < last {
		if time.Now().After(deadline) {
			t.Fatalf("applied %d of %d batch events", te.e.AppliedBatch(), last)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	if got := te.birthdayOffers(t); len(got) != 50 {
		t.Errorf("%d offers once every run was applied, want 50", len(got))
	}
}
