package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers. The Nats-* ones are nats-server's (server/stream.go); the
// Kairos-* ones are this package's.
const (
	hdrBatchID      = "Nats-Batch-Id"
	hdrBatchSeq     = "Nats-Batch-Sequence"
	hdrBatchCommit  = "Nats-Batch-Commit"
	hdrExpectSubSeq = "Nats-Expected-Last-Subject-Sequence"
	hdrTTL          = "Nats-TTL"

	// hdrOwner names the instance that wrote a mark.
	hdrOwner = "Kairos-Owner"
	// hdrEpoch is on the marks a commit writes: the sequence of the
	// takeover mark of the owner that wrote it. A takeover mark has none:
	// its epoch is its own sequence.
	hdrEpoch = "Kairos-Epoch"
	// hdrCommit is the id of the attempt that wrote a mark, counter or
	// takeover mark: it tells an attempt whose reply was lost whether it
	// was stored.
	hdrCommit = "Kairos-Commit"
	// hdrOp is "del" on a record tombstone.
	hdrOp = "Kairos-Op"
)

// JetStream API error codes this package decides on (nats-server's
// server/jetstream_errors_generated.go).
//
// Others are transient for a commit and need no decision: 10164
// (JSStreamWrongLastSequenceConstantErr, "subject in process": a write to
// the checked subject is in flight on a replicated stream), 10176 (batch
// incomplete: a message was lost or the leader changed), 10210 (too many
// batches in flight), 10009 (not the leader).
const (
	codeNotFound       jetstream.ErrorCode = 10037 // JSNoMessageFoundErr
	codeMsgTooBig      jetstream.ErrorCode = 10054 // JSStreamMessageExceedsMaximumErr
	codeWrongLastSeq   jetstream.ErrorCode = 10071 // JSStreamWrongLastSequenceErrF
	codeAtomicDisabled jetstream.ErrorCode = 10174 // JSAtomicPublishDisabledErr
	codeBatchTooLarge  jetstream.ErrorCode = 10199 // JSAtomicPublishTooLargeBatchErrF
)

// apiCode returns the JetStream error code of err, 0 when it is not an API
// error.
func apiCode(err error) jetstream.ErrorCode {
	var e *jetstream.APIError
	if errors.As(err, &e) {
		return e.ErrorCode
	}
	return 0
}

// apiPrefix returns the prefix js sends JetStream API requests to.
func apiPrefix(js jetstream.JetStream) string {
	o := js.Options()
	if o.Domain != "" {
		return "$JS." + o.Domain + ".API."
	}
	p := o.APIPrefix
	if p == "" {
		p = jetstream.DefaultAPIPrefix
	}
	if !strings.HasSuffix(p, ".") {
		p += "."
	}
	return p
}

// streamRequestTimeout bounds the first stream create or update request of
// CreateOrUpdateStream; a retry waits twice as long, up to
// maxStreamRequestTimeout. Such a request takes well under 100ms on a
// healthy cluster.
const (
	streamRequestTimeout    = time.Second
	maxStreamRequestTimeout = 8 * time.Second
)

// CreateOrUpdateStream is js.CreateOrUpdateStream, retried while ctx lasts
// when a request gets no reply. When several clients create the same
// replicated stream at once, as the instances of a cluster starting
// together do, a clustered nats-server (2.15 at least) creates the stream
// but may never answer the requests that lost the race: without a retry
// the losers wait for their whole deadline and fail. A retry is harmless:
// creating or updating a stream to the same configuration is idempotent.
func CreateOrUpdateStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	timeout := streamRequestTimeout
	for {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		s, err := js.CreateOrUpdateStream(rctx, cfg)
		cancel()
		if err == nil || ctx.Err() != nil || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)) {
			return s, err
		}
		timeout = min(2*timeout, maxStreamRequestTimeout)
	}
}

// storedMsg is a message read from a stream.
type storedMsg struct {
	Subject string
	Seq     uint64
	Header  nats.Header
	Data    []byte
	Time    time.Time
}

// withTimeout bounds ctx by d when it has no deadline.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// getLast reads the last message of subject in stream through the stream
// leader's STREAM.MSG.GET API. Not a direct get: any replica may answer
// those, possibly one lagging behind, and the fence decisions need the
// latest state. It returns nil, nil when the subject has no message.
func getLast(ctx context.Context, nc *nats.Conn, api, subject string, timeout time.Duration) (*storedMsg, error) {
	ctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{subject})
	if err != nil {
		return nil, err
	}
	resp, err := nc.RequestWithContext(ctx, api, req)
	if err != nil {
		return nil, fmt.Errorf("cluster: read last of %s: %w", subject, err)
	}
	var r struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, fmt.Errorf("cluster: read last of %s: decode reply: %w", subject, err)
	}
	if r.Error != nil {
		if r.Error.ErrorCode == codeNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("cluster: read last of %s: %w", subject, r.Error)
	}
	if r.Message == nil {
		return nil, fmt.Errorf("cluster: read last of %s: empty reply", subject)
	}
	m := &storedMsg{Subject: r.Message.Subject, Seq: r.Message.Seq, Data: r.Message.Data, Time: r.Message.Time}
	if len(r.Message.Header) > 0 {
		if m.Header, err = nats.DecodeHeadersMsg(r.Message.Header); err != nil {
			return nil, fmt.Errorf("%w: %s seq %d: headers: %v", ErrCorrupt, subject, m.Seq, err)
		}
	}
	return m, nil
}

// pubAck is the reply to a JetStream publish, and to the commit of an
// atomic batch (with Batch and Count).
type pubAck struct {
	Error  *jetstream.APIError `json:"error"`
	Stream string              `json:"stream"`
	Seq    uint64              `json:"seq"`
	Batch  string              `json:"batch"`
	Count  int                 `json:"count"`
}

// headerLen is the size nats.go gives a header block on the wire.
func headerLen(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}
