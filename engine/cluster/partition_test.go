package cluster

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestPartitionIsFNV1aModN(t *testing.T) {
	for _, id := range []string{"", "a", "cust-1", "Ünïcødé-客户", "x_y-z", strings.Repeat("k", 300)} {
		h := fnv.New32a()
		h.Write([]byte(id))
		for _, n := range []int{1, 2, 7, 32, 1000} {
			if got, want := Partition(id, n), int(h.Sum32()%uint32(n)); got != want {
				t.Errorf("Partition(%q, %d) = %d, want %d", id, n, got, want)
			}
		}
	}
	if got := Partition("x", 0); got != 0 {
		t.Errorf("Partition with n=0 = %d, want 0", got)
	}
}

func TestPartitionDoesNotAllocate(t *testing.T) {
	id := "customer-123456"
	if a := testing.AllocsPerRun(100, func() { _ = Partition(id, 32) }); a != 0 {
		t.Errorf("Partition allocates %v times", a)
	}
	subj := "kairos.events.17.purchase.customer-123456"
	if a := testing.AllocsPerRun(100, func() { _, _, _, _ = ParsePartitioned(subj, "kairos", "events") }); a != 0 {
		t.Errorf("ParsePartitioned allocates %v times", a)
	}
}

func TestPartitionDistributionIsEven(t *testing.T) {
	const n, ids = 32, 100_000
	var count [n]int
	for i := range ids {
		count[Partition("cust-"+strconv.Itoa(i), n)]++
	}
	mean := ids / n
	for p, c := range count {
		if c < mean*9/10 || c > mean*11/10 {
			t.Errorf("partition %d has %d ids, mean %d (over ±10%%)", p, c, mean)
		}
	}
}

// randomID returns a customer id that is a valid subject token: letters,
// digits, dashes, underscores and non-ASCII letters.
func randomID(r *rand.Rand) string {
	const ascii = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
	extra := []rune("éüßñ客户顾客Ωж🙂")
	var b strings.Builder
	for range 1 + r.IntN(24) {
		if r.IntN(5) == 0 {
			b.WriteRune(extra[r.IntN(len(extra))])
		} else {
			b.WriteByte(ascii[r.IntN(len(ascii))])
		}
	}
	return b.String()
}

func TestPartitionMatchesServerTransform(t *testing.T) {
	_, _, js := startJS(t)
	ctx := testCtx(t, 30*time.Second)
	const n = 32
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:             "EVENTS",
		Subjects:         []string{"kt.events.*.*"},
		SubjectTransform: PartitionTransform("kt", "events", n),
	})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	ids := []string{"cust-1", "客户-42", "a_b-c", "Ünïcødé", "--", "__"}
	for len(ids) < 2000 {
		ids = append(ids, randomID(r))
	}
	for _, id := range ids {
		if _, err := js.Publish(ctx, "kt.events.purchase."+id, nil); err != nil {
			t.Fatalf("publish %q: %v", id, err)
		}
	}
	cons, err := js.OrderedConsumer(ctx, "EVENTS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(len(ids), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for m := range batch.Messages() {
		p, typ, id, ok := ParsePartitioned(m.Subject(), "kt", "events")
		if !ok || typ != "purchase" || id != ids[got] {
			t.Fatalf("stored subject %q does not parse to customer %q", m.Subject(), ids[got])
		}
		if p != Partition(id, n) {
			t.Errorf("server put %q in partition %d, Partition says %d", id, p, Partition(id, n))
		}
		got++
	}
	if got != len(ids) {
		t.Fatalf("read %d messages, want %d (%v)", got, len(ids), batch.Error())
	}

	// A consumer filtered on one partition sees exactly its customers.
	for _, p := range []int{0, 5, 31} {
		inP := 0
		for _, id := range ids {
			if Partition(id, n) == p {
				inP++
			}
		}
		pc, err := js.CreateConsumer(ctx, "EVENTS", jetstream.ConsumerConfig{FilterSubject: PartitionFilter("kt", "events", p), AckPolicy: jetstream.AckNonePolicy})
		if err != nil {
			t.Fatalf("consumer filtered on %s: %v", PartitionFilter("kt", "events", p), err)
		}
		if pending := pc.CachedInfo().NumPending; pending != uint64(inP) {
			t.Errorf("partition %d consumer has %d pending, want %d", p, pending, inP)
		}
	}
}

func TestParsePartitioned(t *testing.T) {
	cases := []struct {
		name, prefix, subject string
		p                     int
		typ, customer         string
		ok                    bool
	}{
		{"a partitioned subject", "kairos", "kairos.events.17.purchase.c-1", 17, "purchase", "c-1", true},
		{"a dotted prefix", "acme.kairos", "acme.kairos.events.0.login.x", 0, "login", "x", true},
		{"an unpartitioned subject", "kairos", "kairos.events.purchase.c-1", 0, "", "", false},
		{"another kind", "kairos", "kairos.offers.1.purchase.c-1", 0, "", "", false},
		{"a prefix that only starts alike", "kairos", "kairosx.events.1.a.b", 0, "", "", false},
		{"a partition with a sign", "kairos", "kairos.events.+1.a.b", 0, "", "", false},
		{"a partition with a leading zero", "kairos", "kairos.events.01.a.b", 0, "", "", false},
		{"an empty type", "kairos", "kairos.events.1..b", 0, "", "", false},
		{"an empty customer", "kairos", "kairos.events.1.a.", 0, "", "", false},
		{"one token too many", "kairos", "kairos.events.1.a.b.c", 0, "", "", false},
		{"nothing after the kind", "kairos", "kairos.events", 0, "", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, typ, customer, ok := ParsePartitioned(c.subject, c.prefix, "events")
			if ok != c.ok || ok && (p != c.p || typ != c.typ || customer != c.customer) {
				t.Errorf("ParsePartitioned(%q) = %d, %q, %q, %v; want %d, %q, %q, %v", c.subject, p, typ, customer, ok, c.p, c.typ, c.customer, c.ok)
			}
		})
	}
	if got := PartitionFilter("kairos", "events", 3); got != "kairos.events.3.*.*" {
		t.Errorf("PartitionFilter = %q", got)
	}
	tr := PartitionTransform("kairos", "events", 32)
	if tr.Source != "kairos.events.*.*" || tr.Destination != "kairos.events.{{partition(32,2)}}.{{wildcard(1)}}.{{wildcard(2)}}" {
		t.Errorf("PartitionTransform = %+v", tr)
	}
}

func FuzzParsePartitioned(f *testing.F) {
	for _, s := range []string{"kairos.events.17.purchase.c-1", "kairos.events.01.a.b", "kairos.events.1.a.b.c", "kairos.events..a.b", "kairos.events.4294967296.a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, subject string) {
		p, typ, customer, ok := ParsePartitioned(subject, "kairos", "events")
		if !ok {
			return
		}
		if rebuilt := fmt.Sprintf("kairos.events.%d.%s.%s", p, typ, customer); rebuilt != subject {
			t.Errorf("ParsePartitioned(%q) = %d, %q, %q; rebuilt %q", subject, p, typ, customer, rebuilt)
		}
	})
}

func BenchmarkPartition(b *testing.B) {
	b.ReportAllocs()
	id := "customer-123456"
	for b.Loop() {
		_ = Partition(id, 32)
	}
}

func BenchmarkParsePartitioned(b *testing.B) {
	b.ReportAllocs()
	subj := "kairos.events.17.purchase.customer-123456"
	for b.Loop() {
		_, _, _, _ = ParsePartitioned(subj, "kairos", "events")
	}
}
