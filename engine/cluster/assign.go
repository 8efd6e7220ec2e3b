package cluster

import (
	"cmp"
	"slices"
)

// Assign maps each of n partitions to one of members and returns the
// owner of every partition (index = partition). It is:
//
//   - deterministic: it depends only on the set of members, not on their
//     order or duplicates, so every instance that sees the same members
//     computes the same assignment;
//   - balanced: each member gets floor(n/m) or ceil(n/m) partitions;
//   - stable: each partition ranks the members by rendezvous (highest
//     random weight) hashing, and the (partition, member) pairs are granted
//     in descending weight while the member has capacity, so a join or a
//     leave moves about n/m partitions, not a reshuffle.
//
// Empty member names are ignored. With no members every owner is "". n <= 0 yields an empty slice.
func Assign(members []string, n int) []string {
	if n <= 0 {
		return []string{}
	}
	out := make([]string, n)
	ms := slices.Clone(members)
	slices.Sort(ms)
	ms = slices.Compact(ms)
	ms = slices.DeleteFunc(ms, func(s string) bool { return s == "" })
	m := len(ms)
	if m == 0 {
		return out
	}
	type pair struct {
		weight uint64
		p, mi  int32
	}
	pairs := make([]pair, 0, n*m)
	for i, member := range ms {
		h := fnv64(member)
		for p := range n {
			pairs = append(pairs, pair{weight: mix64(h ^ (uint64(p)+1)*0x9e3779b97f4a7c15), p: int32(p), mi: int32(i)})
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := cmp.Compare(b.weight, a.weight); c != 0 {
			return c
		}
		if c := cmp.Compare(a.p, b.p); c != 0 {
			return c
		}
		return cmp.Compare(a.mi, b.mi)
	})
	// Exactly n%m members may hold floor+1 partitions, the others floor:
	// with both caps enforced the greedy fills every partition (the total
	// capacity is exactly n, and a member once full stays full).
	floor, extra := n/m, n%m
	count := make([]int, m)
	atCeil, assigned := 0, 0
	for _, pr := range pairs {
		if out[pr.p] != "" {
			continue
		}
		c := count[pr.mi]
		if c > floor || c == floor && atCeil == extra {
			continue
		}
		if c == floor {
			atCeil++
		}
		count[pr.mi]++
		out[pr.p] = ms[pr.mi]
		if assigned++; assigned == n {
			break
		}
	}
	return out
}

// fnv64 is FNV-1a, 64 bits.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix64 is the splitmix64 finalizer: it spreads every input bit over the
// output, so weights of neighbouring partitions are independent.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
