package rules

import (
	"math/bits"
	"slices"
)

// This file indexes an event type's rules by their string guards, so that
// an evaluation visits the rules an event can match instead of all of
// them.
//
// Large rule sets are mostly variants: the same shape for one page, one
// merchant, one segment or cohort of customers. Each such rule has a guard
// `m.K == "v"` or `m.K in [...]` (guard.go) that is false for every other
// value of K. The index picks one such guard per rule (its index guard) and
// keeps, per key K, the rules by value. For an event it takes:
//
//   - the rules without an index guard;
//   - per indexed key, when the event's (or profile's) K is a string, the
//     rules listed under that value; when K is absent or not a string, all
//     of the key's rules (their guard is then not certainly false, see
//     guard.go, so their program decides).
//
// The rules left out are exactly those whose index guard is certainly
// false, so their when is false: the result is that of visiting every rule.
// The candidates are visited in the list's order (priority), through a
// bitmap of list positions.

// minIndexed is the list length from which a type's rules are indexed:
// below it a plain scan of the guards costs less than the bitmap.
const minIndexed = 32

// ruleIndex indexes one event type's rule list.
type ruleIndex struct {
	words  int      // bitmap words: (len(list)+63)/64
	always []uint64 // rules without an index guard
	keys   []indexKey
}

// indexKey is one key of the index: a map and key that index guards read.
type indexKey struct {
	src     guardSrc
	key     string
	all     []uint64           // every rule indexed under this key
	byValue map[string][]int32 // list positions by guard value
}

// newRuleIndex indexes list, or returns nil when it is too short for an
// index to pay or no rule has an index guard.
func newRuleIndex(list []*Rule) *ruleIndex {
	if len(list) < minIndexed {
		return nil
	}
	type srcKey struct {
		src guardSrc
		key string
	}
	// How many distinct values each key's guards name: a rule is indexed
	// under its most discriminating key.
	values := map[srcKey]map[string]bool{}
	for _, r := range list {
		for i := range r.guards {
			g := &r.guards[i]
			if !indexable(g) {
				continue
			}
			k := srcKey{g.src, g.key}
			if values[k] == nil {
				values[k] = map[string]bool{}
			}
			for _, s := range guardValues(g) {
				values[k][s] = true
			}
		}
	}
	words := (len(list) + 63) / 64
	ix := &ruleIndex{words: words, always: make([]uint64, words)}
	keyAt := map[srcKey]int{}
	indexed := 0
	for pos, r := range list {
		var best *guard
		for i := range r.guards {
			g := &r.guards[i]
			if indexable(g) && (best == nil || len(values[srcKey{g.src, g.key}]) > len(values[srcKey{best.src, best.key}])) {
				best = g
			}
		}
		if best == nil {
			ix.always[pos/64] |= 1 << (pos % 64)
			continue
		}
		indexed++
		k := srcKey{best.src, best.key}
		at, ok := keyAt[k]
		if !ok {
			at = len(ix.keys)
			keyAt[k] = at
			ix.keys = append(ix.keys, indexKey{src: k.src, key: k.key, all: make([]uint64, words), byValue: map[string][]int32{}})
		}
		ik := &ix.keys[at]
		ik.all[pos/64] |= 1 << (pos % 64)
		for _, s := range guardValues(best) {
			ik.byValue[s] = append(ik.byValue[s], int32(pos))
		}
	}
	if indexed == 0 {
		return nil
	}
	return ix
}

// indexable reports whether g is certainly false for every string but the
// ones it names.
func indexable(g *guard) bool { return g.kind == guardStrEq || g.kind == guardStrIn }

// guardValues returns the strings for which an indexable guard holds,
// each once.
func guardValues(g *guard) []string {
	if g.kind == guardStrEq {
		return []string{g.str}
	}
	return slices.Compact(slices.Sorted(slices.Values(g.strs)))
}

// candidates sets in dst (ix.words long) the list positions of the rules an
// event with attrs and profile may match.
func (ix *ruleIndex) candidates(dst []uint64, attrs, profile map[string]any) {
	copy(dst, ix.always)
	for i := range ix.keys {
		k := &ix.keys[i]
		m := attrs
		if k.src == srcProfile {
			m = profile
		}
		s, isStr := guardString(m[k.key])
		if !isStr {
			for w, b := range k.all {
				dst[w] |= b
			}
			continue
		}
		for _, pos := range k.byValue[s] {
			dst[pos/64] |= 1 << (pos % 64)
		}
	}
}

// nextCandidate returns the first position set in bm at or after pos, or
// -1.
func nextCandidate(bm []uint64, pos int) int {
	w := pos / 64
	if w >= len(bm) {
		return -1
	}
	word := bm[w] &^ (1<<(pos%64) - 1)
	for {
		if word != 0 {
			return w*64 + bits.TrailingZeros64(word)
		}
		w++
		if w == len(bm) {
			return -1
		}
		word = bm[w]
	}
}
