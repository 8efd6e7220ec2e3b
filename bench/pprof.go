package bench

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// CPUProfile summarises the CPU profile of a run (--cpuprofile): where
// the process's CPU went, by component and by function. In-process, the
// process is the engine, its embedded nats-server and the load generator
// together, so the components say which of them used what; with a child
// engine, it is the engine's process alone.
type CPUProfile struct {
	File string `json:"file"`
	// Scope says which process was profiled.
	Scope string `json:"scope,omitempty"`
	// Seconds is the CPU time the profile sampled, over WallSeconds.
	Seconds     float64 `json:"cpu_seconds"`
	WallSeconds float64 `json:"wall_seconds"`
	// Components are the sampled CPU by component, largest first: each
	// sample goes to the innermost frame of its stack that belongs to a
	// known component (so a memmove under Badger counts as Badger), or to
	// the collector's background workers, or else to "other".
	Components []Share `json:"components"`
	// Top are the functions with the most CPU in their own code (flat).
	Top []Share `json:"top_functions"`
	// Syscalls is the share of the CPU sampled in system calls (the
	// sample's innermost frame enters the kernel: the syscall packages,
	// and the runtime's futex, epoll and memory calls), the kernel's time
	// in them included.
	Syscalls float64 `json:"syscall_share"`
	// NATSServer is nats-server's CPU (its component) by the type of the
	// sample's innermost nats-server frame, server.(*fileStore) say, or
	// by function where that has no receiver: which part of the server
	// spent it, system calls included. Empty when the profile has none.
	NATSServer []Share `json:"nats_server,omitempty"`
}

// Share is the CPU of one component or function in a CPUProfile.
type Share struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"cpu_seconds"`
	Share   float64 `json:"share"` // of CPUProfile.Seconds
}

// Components of a CPUProfile, by the import path prefix of a frame's
// function. pprof writes the dots of a module path's last element as
// %2e (nats.go is github.com/nats-io/nats%2ego).
var profileComponents = []struct{ prefix, name string }{
	{"github.com/nats-io/nats-server/", "nats-server"},
	{"github.com/dgraph-io/badger/", "Badger"},
	{"github.com/dgraph-io/ristretto/", "Badger"},
	{"github.com/nats-io/nats%2ego", "nats.go client"},
	{"github.com/nats-io/nats.go", "nats.go client"},
	{"github.com/kairos-engine/kairos/state", "kairos state"},
	{"github.com/kairos-engine/kairos/engine", "kairos engine"},
	{"github.com/kairos-engine/kairos/rules", "kairos rules"},
	{"github.com/kairos-engine/kairos/connectors", "kairos connectors"},
	{"github.com/kairos-engine/kairos/bench", "kairos bench (load generator, offers consumer)"},
	{"github.com/google/cel-go/", "cel-go"},
	{"github.com/vmihailenco/msgpack/", "msgpack"},
	{"github.com/prometheus/", "Prometheus client"},
}

// syscallPrefixes and syscallFuncs name the functions in which a
// sample's innermost frame is a system call.
var (
	syscallPrefixes = []string{"internal/runtime/syscall", "runtime/internal/syscall", "syscall.", "golang.org/x/sys/unix."}
	syscallFuncs    = []string{"runtime.futex", "runtime.epollwait", "runtime.usleep", "runtime.osyield", "runtime.nanosleep",
		"runtime.madvise", "runtime.sysMmap", "runtime.munmap", "runtime.write1", "runtime.read", "runtime.tgkill",
		"runtime.rtsigprocmask", "runtime.sched_getaffinity"}
)

// isSyscall tells whether fn enters the kernel.
func isSyscall(fn string) bool {
	for _, p := range syscallPrefixes {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return slices.Contains(syscallFuncs, fn)
}

// natsServerPkg prefixes the functions of nats-server's packages (server,
// server/stree, server/gsl, ...).
const natsServerPkg = "github.com/nats-io/nats-server/v2/"

// natsArea names the part of nats-server a function of it belongs to:
// its receiver type (server.(*fileStore) for
// server.(*fileStore).writeMsgRecord and its closures), or the function
// itself when it has none; without the type arguments of generics.
func natsArea(fn string) string {
	fn = strings.TrimPrefix(fn, natsServerPkg)
	if i := strings.Index(fn, ".(*"); i >= 0 {
		typ := fn[i+len(".(*"):]
		if j := strings.IndexAny(typ, "[)"); j >= 0 {
			return fn[:i] + ".(*" + typ[:j] + ")"
		}
	}
	if i := strings.IndexByte(fn, '['); i >= 0 {
		fn = fn[:i]
	}
	// A closure, fn.func1 or fn.func1.2, is its function's.
	for i := strings.Index(fn, ".func"); i >= 0; {
		if rest := fn[i+len(".func"):]; rest != "" && rest[0] >= '0' && rest[0] <= '9' {
			return fn[:i]
		}
		j := strings.Index(fn[i+1:], ".func")
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return fn
}

const (
	gcWorkers      = "garbage collection (background workers)"
	otherComponent = "other (runtime, syscalls, standard library)"
	profileTop     = 15
)

// component names the component of a function, "" for none.
func component(fn string) string {
	for _, c := range profileComponents {
		if strings.HasPrefix(fn, c.prefix) {
			return c.name
		}
	}
	return ""
}

// SummariseCPUProfile reads a CPU profile as runtime/pprof writes it
// (gzipped profile.proto) and attributes its samples.
func SummariseCPUProfile(r io.Reader) (*CPUProfile, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(zr, 1<<30))
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	p, err := decodeProfile(b)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return p.summarise()
}

// profile is the part of profile.proto a summary needs.
type profile struct {
	sampleTypes []valueType
	samples     []sample
	locations   map[uint64][]uint64 // location id → function ids, innermost first
	functions   map[uint64]int64    // function id → name (string table index)
	strings     []string
	duration    int64 // ns
}

type valueType struct{ typ, unit int64 }

type sample struct {
	locations []uint64 // leaf first
	values    []int64
}

func (p *profile) str(i int64) string {
	if i < 0 || i >= int64(len(p.strings)) {
		return ""
	}
	return p.strings[i]
}

func (p *profile) summarise() (*CPUProfile, error) {
	// The CPU time is the value whose unit is nanoseconds (runtime/pprof:
	// samples/count, cpu/nanoseconds).
	vi := slices.IndexFunc(p.sampleTypes, func(v valueType) bool { return p.str(v.unit) == "nanoseconds" })
	if vi < 0 {
		return nil, errors.New("cpu profile: no value in nanoseconds (not a CPU profile)")
	}
	// What each location says, once: samples share their locations, and
	// a sample's stack may repeat one (fuzzed input does).
	type locInfo struct {
		leaf, comp string // innermost function, innermost known component
		nats       string // innermost nats-server frame's area
		gc         bool   // a frame of the collector's background workers
	}
	locs := make(map[uint64]locInfo, len(p.locations))
	for id, fns := range p.locations {
		var li locInfo
		for _, fid := range fns {
			fn := p.str(p.functions[fid])
			if li.leaf == "" {
				li.leaf = fn
			}
			li.gc = li.gc || strings.HasPrefix(fn, "runtime.gcBgMarkWorker")
			if li.comp == "" {
				li.comp = component(fn)
			}
			if li.nats == "" && strings.HasPrefix(fn, natsServerPkg) {
				li.nats = natsArea(fn)
			}
		}
		locs[id] = li
	}
	byComp := map[string]int64{}
	flat := map[string]int64{}
	byArea := map[string]int64{}
	var total, sys, natsTotal int64
	for _, s := range p.samples {
		if vi >= len(s.values) {
			continue
		}
		v := s.values[vi]
		total += v
		comp, leaf, area := "", "", ""
		gc := false
		for i, loc := range s.locations {
			li := locs[loc]
			if i == 0 {
				leaf = li.leaf
			}
			if li.gc {
				gc = true
				break
			}
			if comp == "" {
				comp = li.comp
				area = li.nats
			}
		}
		if isSyscall(leaf) {
			sys += v
		}
		if comp == "nats-server" && area != "" {
			byArea[area] += v
			natsTotal += v
		}
		switch {
		case gc:
			comp = gcWorkers
		case comp == "":
			comp = otherComponent
		}
		byComp[comp] += v
		if leaf != "" {
			flat[leaf] += v
		}
	}
	out := &CPUProfile{Seconds: float64(total) / 1e9, WallSeconds: float64(p.duration) / 1e9}
	out.Components = shares(byComp, total, 0)
	out.Top = shares(flat, total, profileTop)
	if total > 0 {
		out.Syscalls = float64(sys) / float64(total)
	}
	if natsTotal > 0 {
		out.NATSServer = shares(byArea, total, profileTop)
	}
	return out, nil
}

// shares orders m by value, largest first (names break ties), keeping at
// most n (all when 0).
func shares(m map[string]int64, total int64, n int) []Share {
	out := make([]Share, 0, len(m))
	for name, v := range m {
		s := Share{Name: name, Seconds: float64(v) / 1e9}
		if total > 0 {
			s.Share = float64(v) / float64(total)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Share) int {
		if a.Seconds != b.Seconds {
			if a.Seconds > b.Seconds {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// decodeProfile decodes the fields of profile.proto (github.com/google/
// pprof, proto/profile.proto) that a summary uses and skips the rest.
func decodeProfile(b []byte) (*profile, error) {
	p := &profile{locations: map[uint64][]uint64{}, functions: map[uint64]int64{}}
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v uint64, sub []byte) error {
		switch {
		case num == 1 && typ == protowire.BytesType: // sample_type
			var vt valueType
			err := eachField(sub, func(n protowire.Number, t protowire.Type, v uint64, _ []byte) error {
				switch {
				case n == 1 && t == protowire.VarintType:
					vt.typ = int64(v)
				case n == 2 && t == protowire.VarintType:
					vt.unit = int64(v)
				}
				return nil
			})
			p.sampleTypes = append(p.sampleTypes, vt)
			return err
		case num == 2 && typ == protowire.BytesType: // sample
			var s sample
			err := eachField(sub, func(n protowire.Number, t protowire.Type, v uint64, sub []byte) error {
				switch n {
				case 1:
					return appendVarints(&s.locations, t, v, sub, func(x uint64) uint64 { return x })
				case 2:
					return appendVarints(&s.values, t, v, sub, func(x uint64) int64 { return int64(x) })
				}
				return nil
			})
			p.samples = append(p.samples, s)
			return err
		case num == 4 && typ == protowire.BytesType: // location
			var id uint64
			var fns []uint64
			err := eachField(sub, func(n protowire.Number, t protowire.Type, v uint64, sub []byte) error {
				switch {
				case n == 1 && t == protowire.VarintType:
					id = v
				case n == 4 && t == protowire.BytesType: // line
					return eachField(sub, func(n protowire.Number, t protowire.Type, v uint64, _ []byte) error {
						if n == 1 && t == protowire.VarintType {
							fns = append(fns, v)
						}
						return nil
					})
				}
				return nil
			})
			p.locations[id] = fns
			return err
		case num == 5 && typ == protowire.BytesType: // function
			var id uint64
			var name int64
			err := eachField(sub, func(n protowire.Number, t protowire.Type, v uint64, _ []byte) error {
				switch {
				case n == 1 && t == protowire.VarintType:
					id = v
				case n == 2 && t == protowire.VarintType:
					name = int64(v)
				}
				return nil
			})
			p.functions[id] = name
			return err
		case num == 6 && typ == protowire.BytesType: // string_table
			p.strings = append(p.strings, string(sub))
		case num == 10 && typ == protowire.VarintType: // duration_nanos
			p.duration = int64(v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// eachField calls f with each field of the message b: its number, wire
// type, and its value (varints and fixed-size) or its bytes (length
// delimited). Groups are refused: profile.proto has none.
func eachField(b []byte, f func(protowire.Number, protowire.Type, uint64, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v uint64
		var sub []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(b)
			v = uint64(x)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			sub, n = protowire.ConsumeBytes(b)
		default:
			return fmt.Errorf("field %d: wire type %d not in profile.proto", num, typ)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := f(num, typ, v, sub); err != nil {
			return err
		}
	}
	return nil
}

// appendVarints appends a repeated varint field, packed (one bytes field)
// or not (one varint per field), to *dst.
func appendVarints[T any](dst *[]T, typ protowire.Type, v uint64, sub []byte, conv func(uint64) T) error {
	switch typ {
	case protowire.VarintType:
		*dst = append(*dst, conv(v))
	case protowire.BytesType:
		for len(sub) > 0 {
			x, n := protowire.ConsumeVarint(sub)
			if n < 0 {
				return protowire.ParseError(n)
			}
			*dst = append(*dst, conv(x))
			sub = sub[n:]
		}
	}
	return nil
}

// readCPUProfile summarises the profile file at path.
func readCPUProfile(path string) (*CPUProfile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := SummariseCPUProfile(f)
	if err != nil {
		return nil, err
	}
	p.File = path
	return p, nil
}
