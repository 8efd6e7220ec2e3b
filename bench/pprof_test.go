package bench

import (
	"bytes"
	"compress/gzip"
	"io"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// spin burns CPU in this package, so that a profile of it counts to the
// bench's component.
//
//go:noinline
func spin(d time.Duration) (x uint64) {
	for end := time.Now().Add(d); time.Now().Before(end); {
		for i := range 10000 {
			x += uint64(i) * x
		}
	}
	return x
}

// TestSummariseCPUProfile profiles CPU burnt in package bench with
// runtime/pprof and reads the profile back.
func TestSummariseCPUProfile(t *testing.T) {
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		t.Skipf("CPU profiling unavailable: %v", err)
	}
	spin(400 * time.Millisecond)
	pprof.StopCPUProfile()
	cp, err := SummariseCPUProfile(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if cp.Seconds < 0.1 || cp.WallSeconds < 0.3 {
		t.Fatalf("%.2f s of CPU sampled in %.2f s, want about 0.4 in 0.4", cp.Seconds, cp.WallSeconds)
	}
	top := cp.Components[0]
	if top.Name != "kairos bench (load generator, offers consumer)" || top.Share < 0.5 {
		t.Errorf("components %+v: the spin should lead", cp.Components)
	}
	var sum float64
	for _, c := range cp.Components {
		sum += c.Share
	}
	if sum < 0.999 || sum > 1.001 {
		t.Errorf("shares sum to %v", sum)
	}
	if len(cp.Top) == 0 || !strings.HasSuffix(cp.Top[0].Name, "bench.spin") {
		t.Errorf("top functions %+v: want bench.spin first", cp.Top)
	}
}

func TestSummariseCPUProfileRefuses(t *testing.T) {
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	for name, in := range map[string][]byte{
		"not gzip":          []byte("not a profile"),
		"truncated field":   gz([]byte{0x12, 0x05, 0x01}),
		"group wire type":   gz([]byte{0x0b}),
		"no cpu nanosecond": gz(nil),
	} {
		if _, err := SummariseCPUProfile(bytes.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// synthProfile is a small CPU profile in profile.proto, written field by
// field: 4 samples over 6 functions, one location with an inlined frame.
func synthProfile() []byte {
	strs := []string{"", "samples", "count", "cpu", "nanoseconds",
		"runtime.memmove", "github.com/dgraph-io/badger/v4.(*DB).get", "github.com/kairos-engine/kairos/engine.(*worker).apply",
		"runtime.gcBgMarkWorker", "runtime.scanobject", "main.main"}
	msg := func(fields ...[]byte) []byte { return bytes.Join(fields, nil) }
	varint := func(n protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, n, protowire.VarintType), v)
	}
	bytesF := func(n protowire.Number, b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, n, protowire.BytesType), b)
	}
	packed := func(vs ...uint64) []byte {
		var b []byte
		for _, v := range vs {
			b = protowire.AppendVarint(b, v)
		}
		return b
	}
	var out []byte
	out = append(out, bytesF(1, msg(varint(1, 1), varint(2, 2)))...) // samples/count
	out = append(out, bytesF(1, msg(varint(1, 3), varint(2, 4)))...) // cpu/nanoseconds
	// Samples, leaf first: memmove under Badger under the engine (Badger's);
	// the engine alone; a mark worker; main.main alone (other).
	out = append(out, bytesF(2, msg(bytesF(1, packed(1, 2)), bytesF(2, packed(3, 300e6))))...)
	out = append(out, bytesF(2, msg(varint(1, 3), varint(2, 1), varint(2, 100e6)))...) // unpacked
	out = append(out, bytesF(2, msg(bytesF(1, packed(4)), bytesF(2, packed(5, 500e6))))...)
	out = append(out, bytesF(2, msg(bytesF(1, packed(5)), bytesF(2, packed(1, 100e6))))...)
	line := func(fn uint64) []byte { return bytesF(4, varint(1, fn)) }
	out = append(out, bytesF(4, msg(varint(1, 1), line(1), line(2)))...) // memmove inlined into Badger's get
	out = append(out, bytesF(4, msg(varint(1, 2), line(3)))...)
	out = append(out, bytesF(4, msg(varint(1, 3), line(3)))...)
	out = append(out, bytesF(4, msg(varint(1, 4), line(5), line(4)))...) // scanobject in the mark worker
	out = append(out, bytesF(4, msg(varint(1, 5), line(6)))...)
	for id, name := range []uint64{5, 6, 7, 8, 9, 10} {
		out = append(out, bytesF(5, msg(varint(1, uint64(id+1)), varint(2, name)))...)
	}
	for _, s := range strs {
		out = append(out, bytesF(6, []byte(s))...)
	}
	out = append(out, varint(10, 2e9)...)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(out)
	zw.Close()
	return buf.Bytes()
}

// TestSummariseCPUProfileRules checks the attribution on a profile whose
// answer is known.
func TestSummariseCPUProfileRules(t *testing.T) {
	cp, err := SummariseCPUProfile(bytes.NewReader(synthProfile()))
	if err != nil {
		t.Fatal(err)
	}
	if cp.Seconds != 1 || cp.WallSeconds != 2 {
		t.Errorf("%v s of CPU in %v s, want 1 in 2", cp.Seconds, cp.WallSeconds)
	}
	want := []Share{{gcWorkers, 0.5, 0.5}, {"Badger", 0.3, 0.3}, {"kairos engine", 0.1, 0.1}, {otherComponent, 0.1, 0.1}}
	if len(cp.Components) != len(want) {
		t.Fatalf("components %+v, want %+v", cp.Components, want)
	}
	for i, w := range want {
		if c := cp.Components[i]; c.Name != w.Name || c.Seconds != w.Seconds || c.Share != w.Share {
			t.Errorf("component %d: %+v, want %+v", i, c, w)
		}
	}
	if cp.Top[0].Name != "runtime.scanobject" || cp.Top[1].Name != "runtime.memmove" {
		t.Errorf("top %+v", cp.Top)
	}
}

// FuzzSummariseCPUProfile: no input makes the profile reader panic.
func FuzzSummariseCPUProfile(f *testing.F) {
	f.Add(synthProfile())
	if zr, err := gzip.NewReader(bytes.NewReader(synthProfile())); err == nil {
		if raw, err := io.ReadAll(zr); err == nil {
			f.Add(raw) // the fuzzer wraps it in gzip below
		}
	}
	f.Add([]byte{})
	f.Add(stackProfile([]stackSample{
		{[]string{"internal/runtime/syscall/linux.Syscall6", "github.com/nats-io/nats-server/v2/server.(*msgBlock[go.shape.int]).flush.func1"}, 1e6},
		{[]string{"github.com/nats-io/nats-server/v2/server.fastHash.func2.1"}, 1e6},
	}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Write(b)
		zw.Close()
		_, _ = SummariseCPUProfile(bytes.NewReader(b))
		_, _ = SummariseCPUProfile(bytes.NewReader(zb.Bytes()))
	})
}

// stackProfile is a CPU profile in profile.proto of samples given as
// stacks of function names, leaf first, each with its CPU nanoseconds.
func stackProfile(samples []stackSample) []byte {
	bytesF := func(n protowire.Number, b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, n, protowire.BytesType), b)
	}
	varint := func(n protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, n, protowire.VarintType), v)
	}
	strs := []string{"", "cpu", "nanoseconds"}
	ids := map[string]uint64{} // function name → function and location id
	var out, locs []byte
	out = append(out, bytesF(1, append(varint(1, 1), varint(2, 2)...))...)
	for _, s := range samples {
		var stack []byte
		for _, fn := range s.stack {
			id, ok := ids[fn]
			if !ok {
				id = uint64(len(ids) + 1)
				ids[fn] = id
				strs = append(strs, fn)
				locs = append(locs, bytesF(5, append(varint(1, id), varint(2, uint64(len(strs)-1))...))...)
				locs = append(locs, bytesF(4, append(varint(1, id), bytesF(4, varint(1, id))...))...)
			}
			stack = protowire.AppendVarint(stack, id)
		}
		out = append(out, bytesF(2, append(bytesF(1, stack), varint(2, uint64(s.ns))...))...)
	}
	out = append(out, locs...)
	for _, s := range strs {
		out = append(out, bytesF(6, []byte(s))...)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(out)
	zw.Close()
	return buf.Bytes()
}

type stackSample struct {
	stack []string // leaf first
	ns    int64
}

// TestSummariseSyscallsAndNATSServer checks the share in system calls
// and nats-server's parts on a profile whose answer is known.
func TestSummariseSyscallsAndNATSServer(t *testing.T) {
	const srv = "github.com/nats-io/nats-server/v2/server"
	cp, err := SummariseCPUProfile(bytes.NewReader(stackProfile([]stackSample{
		{[]string{"internal/runtime/syscall/linux.Syscall6", "syscall.pwrite", "os.(*File).WriteAt", srv + ".(*msgBlock).flushPendingMsgsLocked", srv + ".(*fileStore).StoreMsg"}, 200e6},
		{[]string{srv + ".(*stream).internalLoop.func1", srv + ".(*stream).internalLoop"}, 100e6},
		{[]string{"runtime.futex", "runtime.notesleep", "runtime.mPark"}, 100e6},
		{[]string{srv + "/stree.(*SubjectTree[go.shape.struct { " + srv + ".total uint64 }]).Find", srv + ".(*fileStore).FilteredState"}, 50e6},
		{[]string{srv + ".fastHash.func2", srv + ".functionOfNoType"}, 50e6},
	})))
	if err != nil {
		t.Fatal(err)
	}
	if cp.Syscalls != 0.6 {
		t.Errorf("system calls %v of the CPU, want 0.6 (the pwrite and the futex)", cp.Syscalls)
	}
	want := []Share{
		{"server.(*msgBlock)", 0.2, 0.4},
		{"server.(*stream)", 0.1, 0.2},
		{"server.fastHash", 0.05, 0.1},
		{"server/stree.(*SubjectTree)", 0.05, 0.1},
	}
	if len(cp.NATSServer) != len(want) {
		t.Fatalf("nats-server parts %+v, want %+v", cp.NATSServer, want)
	}
	for i, w := range want {
		if c := cp.NATSServer[i]; c.Name != w.Name || c.Seconds != w.Seconds || c.Share != w.Share {
			t.Errorf("part %d: %+v, want %+v", i, c, w)
		}
	}
	// A profile without nats-server has no parts of it.
	if cp, err := SummariseCPUProfile(bytes.NewReader(synthProfile())); err != nil || cp.NATSServer != nil || cp.Syscalls != 0 {
		t.Errorf("engine profile: parts %+v, system calls %v, %v", cp.NATSServer, cp.Syscalls, err)
	}
}

func TestNATSArea(t *testing.T) {
	for in, want := range map[string]string{
		"github.com/nats-io/nats-server/v2/server.(*client).processInboundClientMsg": "server.(*client)",
		"github.com/nats-io/nats-server/v2/server.(*client).flushOutbound.func1":     "server.(*client)",
		"github.com/nats-io/nats-server/v2/server.fastHash.func2.1":                  "server.fastHash",
		"github.com/nats-io/nats-server/v2/server.functionOfNoType":                  "server.functionOfNoType",
		"github.com/nats-io/nats-server/v2/server/gsl.matchLevel[go.shape.*uint8]":   "server/gsl.matchLevel",
		"github.com/nats-io/nats-server/v2/server/avl.(*SequenceSet).Insert":         "server/avl.(*SequenceSet)",
	} {
		if got := natsArea(in); got != want {
			t.Errorf("natsArea(%q) = %q, want %q", in, got, want)
		}
	}
}
