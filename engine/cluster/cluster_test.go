package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/engine/cluster/clustertest"
	"github.com/nats-io/nats-server/v2/server"
)

// streamLeader returns the index of the server leading stream.
func streamLeader(servers []*server.Server, stream string) int {
	for i, s := range servers {
		if s.Running() && s.JetStreamIsStreamLeader("$G", stream) {
			return i
		}
	}
	return -1
}

func TestChangelogOnThreeReplicas(t *testing.T) {
	urls, _ := clustertest.StartCluster(t, 3)
	_, jsA := connect(t, urls[0])
	_, jsB := connect(t, urls[1])
	cfg := ChangelogConfig{Prefix: "kt", Replicas: 3}
	ctx := testCtx(t, 60*time.Second)
	s, err := EnsureChangelog(ctx, jsA, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("replicas %d", r)
	}
	a, b := NewChangelog(jsA, cfg), NewChangelog(jsB, cfg)
	if _, err := a.Takeover(ctx, 0, "a"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const commits = 20
	for i := range commits {
		c := &Commit{Marks: []Mark{{Partition: 0, Data: []byte(fmt.Sprint(i))}}, Records: []Record{
			{Partition: 0, Kind: CustomerRecord, Key: fmt.Sprint("c", i), Data: []byte("a")},
			{Partition: 0, Kind: SeenRecord, Key: fmt.Sprint("e", i), TTL: time.Hour},
		}}
		if err := a.Commit(ctx, c); err != nil {
			t.Fatal(err)
		}
		if m, err := getLast(ctx, a.nc, a.msgGet, a.MarkSubject(0), time.Second); err != nil || m.Seq != c.Seq-2 {
			t.Fatalf("mark at %v (%v), commit's last sequence %d: batch not consecutive", m, err, c.Seq)
		}
	}
	t.Logf("R3 commit of 3 messages: %v", time.Since(start)/commits)

	mark, err := b.Takeover(ctx, 0, "b")
	if err != nil || string(mark) != fmt.Sprint(commits-1) {
		t.Fatalf("takeover on another node = %q, %v", mark, err)
	}
	if err := a.Commit(ctx, &Commit{Marks: []Mark{{Partition: 0}}}); !errors.Is(err, ErrFenced) {
		t.Fatalf("former owner's commit = %v, want ErrFenced", err)
	}
	n := 0
	if err := b.Load(ctx, 0, func(RecordKind, string, []byte, time.Duration) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 2*commits {
		t.Fatalf("loaded %d records, want %d", n, 2*commits)
	}
	if err := b.Commit(ctx, &Commit{Marks: []Mark{{Partition: 0}}}); err != nil {
		t.Fatal(err)
	}
}

// TestCommitsContinueWhenANodeDies shuts the changelog's stream leader
// down in the middle of a run of commits: commits go on after a new leader
// is elected (retrying what failed), and nothing committed is lost or
// applied twice — the counter, incremented by every commit, ends exact.
func TestCommitsContinueWhenANodeDies(t *testing.T) {
	urls, servers := clustertest.StartCluster(t, 3)
	_, js := connect(t, strings.Join(urls, ","))
	cfg := ChangelogConfig{Prefix: "kt", Replicas: 3, Timeout: 2 * time.Second}
	ctx := testCtx(t, 120*time.Second)
	if _, err := EnsureChangelog(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	cl := NewChangelog(js, cfg)
	if _, err := cl.Takeover(ctx, 0, "a"); err != nil {
		t.Fatal(err)
	}
	const commits, perCommit = 120, 5
	var counterSeq uint64
	retries := 0
	killed := -1
	for i := range commits {
		if i == commits/3 {
			killed = streamLeader(servers, DefaultChangelogStream)
			if killed < 0 {
				t.Fatal("no stream leader")
			}
			servers[killed].Shutdown()
		}
		c := &Commit{
			Marks:    []Mark{{Partition: 0, Data: []byte(fmt.Sprint(i))}},
			Counters: []CounterUpdate{{Name: "commits", Value: int64(i + 1), Expect: counterSeq}},
		}
		for j := range perCommit {
			c.Records = append(c.Records, Record{Partition: 0, Kind: CustomerRecord, Key: fmt.Sprintf("c%d-%d", i, j), Data: []byte(fmt.Sprint(i))})
		}
		for {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := cl.Commit(actx, c)
			cancel()
			if err == nil {
				break
			}
			if errors.Is(err, ErrFenced) || errors.Is(err, ErrConflict) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrInvalid) || ctx.Err() != nil {
				t.Fatalf("commit %d: %v", i, err)
			}
			retries++
			t.Logf("commit %d: retrying after %v", i, err)
		}
		counterSeq = c.Counters[0].Seq
	}
	t.Logf("killed node %d after %d commits; %d retries", killed, commits/3, retries)
	if v, _, err := cl.Counter(ctx, "commits"); err != nil || v != commits {
		t.Fatalf("counter = %d, %v; want %d", v, err, commits)
	}
	got := map[string]string{}
	if err := cl.Load(ctx, 0, func(_ RecordKind, key string, data []byte, _ time.Duration) error {
		got[key] = string(data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range commits {
		for j := range perCommit {
			if key := fmt.Sprintf("c%d-%d", i, j); got[key] != fmt.Sprint(i) {
				t.Fatalf("record %s = %q after the node loss", key, got[key])
			}
		}
	}
	if len(got) != commits*perCommit {
		t.Fatalf("loaded %d records, want %d", len(got), commits*perCommit)
	}
}

func TestManagerOnThreeReplicas(t *testing.T) {
	urls, _ := clustertest.StartCluster(t, 3)
	_, jsA := connect(t, urls[0])
	_, jsB := connect(t, urls[2])
	cfg := func(id string) ManagerConfig {
		return ManagerConfig{Instance: id, Partitions: 16, LeaseTTL: 2 * time.Second, Replicas: 3}
	}
	checkLeases(t, jsA, cfg("checker"))
	a := startMember(t, jsA, cfg("a"), false)
	b := startMember(t, jsB, cfg("b"), false)
	eventually(t, 30*time.Second, "balanced on R3", func() bool { return balanced(16, a, b) })
	a.stop(t)
	eventually(t, 30*time.Second, "b owns all after a leaves", func() bool { return balanced(16, b) })
}
