package connectors

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// nestedClaims is a map {"a": [[[...]]]} of levels lists, each claiming a
// million elements: the msgpack library allocates 16 MB a level for it.
func nestedClaims(levels int) []byte {
	p := []byte{0x81, 0xa1, 'a'}
	return append(p, bytes.Repeat([]byte{0xdd, 0x00, 0x0f, 0x42, 0x40}, levels)...)
}

// TestDecodeRefusesClaims: an offer or a decision whose params claim
// lists the data cannot hold is refused before the library allocates for
// the claims.
func TestDecodeRefusesClaims(t *testing.T) {
	offer := append([]byte{0x82, 0xa2, 'i', 'd', 0xa1, 'o', 0xa6, 'p', 'a', 'r', 'a', 'm', 's'}, nestedClaims(100)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, oerr := DecodeOffer(offer)
	_, derr := DecodeDecision(offer)
	runtime.ReadMemStats(&after)
	if !errors.Is(oerr, ErrDecode) || !errors.Is(derr, ErrDecode) {
		t.Errorf("offer: %v; decision: %v; want ErrDecode", oerr, derr)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("%d bytes allocated for %d bytes of data", alloc, len(offer))
	}
}

func TestCheckMsgpack(t *testing.T) {
	nest := func(levels int) any {
		var v any = 1
		for range levels {
			v = []any{v}
		}
		return v
	}
	for _, v := range []any{
		nil, true, 7, -7, 300, -300, 1 << 40, uint64(1) << 63, 1.5, float32(2.5), "", "s", strings.Repeat("x", 300), strings.Repeat("y", 70000),
		[]byte{1, 2}, bytes.Repeat([]byte{3}, 70000), []any{1, "a", nil}, map[string]any{"k": []any{map[string]any{"n": 1}}},
		make([]any, 20), make([]any, 70000), nest(maxNesting),
		&Offer{ID: "o-1", RuleID: "r", CustomerID: "C1", Channel: "sms", Params: map[string]any{"x": []any{1, 2.5, "z"}}},
	} {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkMsgpack(b); err != nil {
			t.Errorf("%T %.40v: %v", v, v, err)
		}
		if n, err := skipValue(b, 0); err != nil || n != len(b) {
			t.Errorf("%T %.40v: length %d of %d, %v", v, v, n, len(b), err)
		}
		if len(b) > 1 {
			if err := checkMsgpack(b[:len(b)-1]); err == nil {
				t.Errorf("%T %.40v: cut short, accepted", v, v)
			}
		}
	}
	deep, _ := msgpack.Marshal(nest(maxNesting + 1))
	if err := checkMsgpack(deep); err == nil || !strings.Contains(err.Error(), "nest deeper") {
		t.Errorf("%d levels: %v", maxNesting+1, err)
	}
	if err := checkMsgpack(nestedClaims(1)); !errors.Is(err, errClaim) {
		t.Errorf("a list claiming a million elements: %v", err)
	}
	if err := checkMsgpack([]byte{0xc1}); err == nil {
		t.Error("0xc1 accepted")
	}
}

// FuzzCheckMsgpack: what checkMsgpack accepts, the msgpack library skips
// as one value of the same length; and nothing panics.
func FuzzCheckMsgpack(f *testing.F) {
	for _, v := range []any{map[string]any{"a": []any{1, "x", 2.5, nil, true, []byte{1}}}, &Offer{ID: "o", Params: map[string]any{"n": map[string]any{"m": 1}}}} {
		b, _ := msgpack.Marshal(v)
		f.Add(b)
	}
	f.Add(nestedClaims(3))
	f.Add([]byte{0xd8, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := skipValue(b, 0)
		if err != nil {
			return
		}
		if n < 1 || n > len(b) {
			t.Fatalf("length %d of %d bytes", n, len(b))
		}
		rd := bytes.NewReader(b)
		if err := msgpack.NewDecoder(rd).Skip(); err != nil {
			t.Fatalf("accepted, but the library cannot skip it: %v", err)
		}
		if got := len(b) - rd.Len(); got != n {
			t.Fatalf("length %d, the library skipped %d", n, got)
		}
	})
}

// FuzzDecodeOffer: no data panics the offer or the decision decoder, and
// what fails is ErrDecode.
func FuzzDecodeOffer(f *testing.F) {
	b, _ := msgpack.Marshal(&Offer{ID: "o-1", RuleID: "r", CustomerID: "C1", Channel: "sms", Params: map[string]any{"x": []any{1, "z"}}})
	f.Add(b)
	f.Add([]byte(`{"id":"o-1","rule_id":"r","params":{"x":[1,"z"]}}`))
	f.Add(nestedClaims(3))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := DecodeOffer(b); err != nil && !errors.Is(err, ErrDecode) {
			t.Fatalf("offer: %v is not ErrDecode", err)
		}
		if _, err := DecodeDecision(b); err != nil && !errors.Is(err, ErrDecode) {
			t.Fatalf("decision: %v is not ErrDecode", err)
		}
	})
}
