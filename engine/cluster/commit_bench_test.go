package cluster

import (
	"strconv"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/engine/cluster/clustertest"
)

// BenchmarkCommitSizes measures Commit of one partition mark and n
// customer records of 700 bytes (about an engine customer record) on an
// R1 file stream of one server and on an R3 stream of a 3-node cluster on
// loopback: the changelog's cost per engine batch. nats-server stages an
// R1 file stream's atomic batch in a fresh file store, an R3 stream's in
// memory. Run it with
//
//	go test -run '^$' -bench CommitSizes ./engine/cluster
func BenchmarkCommitSizes(b *testing.B) {
	for _, replicas := range []int{1, 3} {
		var url string
		if replicas == 1 {
			url, _ = clustertest.StartServer(b)
		} else {
			urls, _ := clustertest.StartCluster(b, 3)
			url = urls[0]
		}
		_, js := connect(b, url)
		cfg := ChangelogConfig{Prefix: "kt", Replicas: replicas}
		ctx := testCtx(b, 5*time.Minute)
		if _, err := EnsureChangelog(ctx, js, cfg); err != nil {
			b.Fatal(err)
		}
		cl := NewChangelog(js, cfg)
		if _, err := cl.Takeover(ctx, 0, "a"); err != nil {
			b.Fatal(err)
		}
		data := make([]byte, 700)
		for _, n := range []int{14, 128, 512} {
			b.Run("R"+strconv.Itoa(replicas)+"/records="+strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					c := &Commit{Marks: []Mark{{Partition: 0, Data: data[:64]}}}
					for range n {
						c.Records = append(c.Records, Record{Partition: 0, Kind: CustomerRecord, Key: "customer-" + strconv.Itoa(i%100_000), Data: data})
						i++
					}
					if err := cl.Commit(ctx, c); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
