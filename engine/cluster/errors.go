package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Sentinel errors. Callers decide with errors.Is or errors.As; the returned
// errors wrap these with the partition, counter or field at fault.
var (
	// ErrFenced means a commit or load touched a partition whose mark was
	// moved by another owner since this Changelog last wrote or read it:
	// the partition's ownership is lost. The error is a *FencedError naming
	// the partitions. Stop processing them and Forget them; nothing of the
	// commit was stored.
	ErrFenced = errors.New("cluster: partition fenced by another owner")

	// ErrConflict means only counters moved since the caller read them:
	// nothing of the commit was stored. The error is a *ConflictError; re-read
	// the counters (Counter), recompute their values and commit again.
	ErrConflict = errors.New("cluster: counter changed concurrently")

	// ErrTooLarge means the commit has more messages than one atomic batch
	// may hold (ChangelogConfig.MaxBatch, the server's max_batch_size) or a
	// message exceeds the connection's max payload. Nothing was sent; split
	// the commit.
	ErrTooLarge = errors.New("cluster: commit too large for one atomic batch")

	// ErrNotTakenOver means a commit marks a partition this Changelog has not
	// taken over (Takeover), or that it forgot (Forget).
	ErrNotTakenOver = errors.New("cluster: partition not taken over")

	// ErrInvalid means a commit, a configuration or an argument is malformed
	// (a duplicate mark or counter, a record without the mark of its
	// partition, a bad instance id). Retrying does not help.
	ErrInvalid = errors.New("cluster: invalid argument")

	// ErrCorrupt means a stored changelog message could not be decoded: a
	// subject token, a counter value or a TTL header. The error names the
	// subject.
	ErrCorrupt = errors.New("cluster: corrupt changelog message")

	// ErrConfigMismatch means the membership bucket exists with a lease TTL
	// or a partition count different from this Manager's: every instance of
	// a cluster must use the same ones.
	ErrConfigMismatch = errors.New("cluster: bucket configuration differs")

	// ErrRunning is returned by a second call to Manager.Run.
	ErrRunning = errors.New("cluster: manager already run")
)

// FencedError names the partitions whose marks moved under a commit. It
// matches ErrFenced with errors.Is.
type FencedError struct {
	Partitions []int // sorted
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("%v: partitions %s", ErrFenced, joinInts(e.Partitions))
}

// Is reports whether target is ErrFenced.
func (e *FencedError) Is(target error) bool { return target == ErrFenced }

// ConflictError names the counters that moved under a commit; it may be
// empty when the conflict was with a commit of this Changelog whose outcome
// was not known. It matches ErrConflict with errors.Is.
type ConflictError struct {
	Counters []string // counter names, sorted
}

func (e *ConflictError) Error() string {
	if len(e.Counters) == 0 {
		return ErrConflict.Error()
	}
	return fmt.Sprintf("%v: counters %s", ErrConflict, strings.Join(e.Counters, ", "))
}

// Is reports whether target is ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

func joinInts(v []int) string {
	v = slices.Clone(v)
	slices.Sort(v)
	var b strings.Builder
	for i, p := range v {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(p))
	}
	return b.String()
}
