package cluster

import (
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultPartitions is the partition count when a configuration leaves it
// zero.
const DefaultPartitions = 32

// FNV-1a, 32 bits: hash/fnv's New32a, inlined so Partition does not
// allocate.
const (
	fnvOffset32 = 2166136261
	fnvPrime32  = 16777619
)

// Partition returns the partition of a customer: the FNV-1a 32-bit hash of
// the id's bytes modulo n, which is what nats-server's {{partition(n,k)}}
// subject mapping computes for the same token (getHashPartition in
// server/subject_transform.go), so the partition the server writes into a
// subject and the one an engine computes always agree. It returns 0 when
// n <= 0, as the server does for partition(0). It does not allocate.
func Partition(customerID string, n int) int {
	if n <= 0 {
		return 0
	}
	h := uint32(fnvOffset32)
	for i := 0; i < len(customerID); i++ {
		h ^= uint32(customerID[i])
		h *= fnvPrime32
	}
	return int(h % uint32(n))
}

// PartitionTransform returns the subject transform of a stream that
// partitions <prefix>.<kind>.<type>.<customer> by customer into n
// partitions: the stream stores <prefix>.<kind>.<partition>.<type>.<customer>
// where partition = Partition(customer, n). Publishers keep publishing the
// unpartitioned subject; the stream's Subjects must contain the source
// <prefix>.<kind>.*.*.
func PartitionTransform(prefix, kind string, n int) *jetstream.SubjectTransformConfig {
	return &jetstream.SubjectTransformConfig{
		Source:      prefix + "." + kind + ".*.*",
		Destination: prefix + "." + kind + ".{{partition(" + strconv.Itoa(n) + ",2)}}.{{wildcard(1)}}.{{wildcard(2)}}",
	}
}

// PartitionFilter returns the consumer filter subject of partition p of a
// stream partitioned by PartitionTransform: <prefix>.<kind>.<p>.*.*.
func PartitionFilter(prefix, kind string, p int) string {
	return prefix + "." + kind + "." + strconv.Itoa(p) + ".*.*"
}

// ParsePartitioned splits a subject stored by a stream partitioned with
// PartitionTransform, <prefix>.<kind>.<partition>.<type>.<customer>, into
// its partition, type and customer. ok is false unless the subject has
// exactly that shape with a decimal partition and non-empty tokens. The
// returned strings share the subject's memory; it does not allocate.
func ParsePartitioned(subject, prefix, kind string) (partition int, typ, customer string, ok bool) {
	rest, found := strings.CutPrefix(subject, prefix)
	if !found || len(rest) < len(kind)+2 || rest[0] != '.' {
		return 0, "", "", false
	}
	rest, found = strings.CutPrefix(rest[1:], kind)
	if !found || len(rest) == 0 || rest[0] != '.' {
		return 0, "", "", false
	}
	rest = rest[1:]
	i := strings.IndexByte(rest, '.')
	if i <= 0 || i > 9 {
		return 0, "", "", false
	}
	p := 0
	for _, c := range []byte(rest[:i]) {
		if c < '0' || c > '9' {
			return 0, "", "", false
		}
		p = p*10 + int(c-'0')
	}
	if i > 1 && rest[0] == '0' {
		return 0, "", "", false // not canonical: the server writes no leading zero
	}
	rest = rest[i+1:]
	j := strings.IndexByte(rest, '.')
	if j <= 0 || j == len(rest)-1 || strings.IndexByte(rest[j+1:], '.') >= 0 {
		return 0, "", "", false
	}
	return p, rest[:j], rest[j+1:], true
}
