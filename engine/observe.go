package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// observeTimeout bounds the NATS requests of one scrape; Prometheus'
// default scrape timeout is 10s.
const observeTimeout = 5 * time.Second

// Sources of kairos_engine_collect_errors_total.
const (
	sourceConsumer   = "consumer"
	sourceStream     = "stream"
	sourceOutbox     = "outbox"
	sourceFilesystem = "filesystem"
)

// observer is a prometheus.Collector for what the engine does not count as
// it goes but asks for when scraped: the events consumer's pending and
// unacknowledged messages and the streams' sizes (JetStream requests), the
// outbox records in Badger, and the free space of the data directory's
// filesystem. It needs no goroutine of its own: a scrape pays for it, and
// nothing is asked when nobody scrapes.
//
// The consumer, stream and outbox series exist only while the engine is
// ready: e.js and e.store are set before e.ready turns true (the atomic
// orders them) and never changed after, so reading them after a true
// e.ready.Load() is safe. A request that fails (NATS away, state closing)
// leaves its series out of that scrape and counts an error by source.
type observer struct {
	e    *Engine
	errs *prometheus.CounterVec

	consPending, consAckPending, consRedelivered *prometheus.Desc
	streamMsgs, streamBytes                      *prometheus.Desc
	outbox                                       *prometheus.Desc
	fsAvail, fsSize                              *prometheus.Desc
}

func newObserver(e *Engine) *observer {
	cons := []string{"stream", "consumer"}
	strm := []string{"stream", "role"}
	o := &observer{
		e: e,
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kairos", Subsystem: "engine", Name: "collect_errors_total",
			Help: "Scrape-time reads that failed, by source (consumer, stream, outbox, filesystem); their series are missing from that scrape."}, []string{"source"}),
		consPending: prometheus.NewDesc("kairos_consumer_pending_messages",
			"Events in the events stream not yet delivered to the engine's consumer (the consumer lag).", cons, nil),
		consAckPending: prometheus.NewDesc("kairos_consumer_ack_pending_messages",
			"Events delivered to the engine and not yet acknowledged.", cons, nil),
		consRedelivered: prometheus.NewDesc("kairos_consumer_redelivered_messages",
			"Events delivered more than once and not yet acknowledged.", cons, nil),
		streamMsgs: prometheus.NewDesc("kairos_stream_messages",
			"Messages stored in a Kairos stream, by stream name and role (events, offers, dlq, decisions).", strm, nil),
		streamBytes: prometheus.NewDesc("kairos_stream_bytes",
			"Bytes stored in a Kairos stream, by stream name and role (events, offers, dlq, decisions).", strm, nil),
		outbox: prometheus.NewDesc("kairos_engine_outbox_records",
			"Offers, decision records and dead letters stored in the outbox: committed, and not yet deleted after publishing.", nil, nil),
		fsAvail: prometheus.NewDesc("kairos_data_filesystem_avail_bytes",
			"Bytes available to Kairos on the filesystem of the data directory (state, and the embedded NATS store).", nil, nil),
		fsSize: prometheus.NewDesc("kairos_data_filesystem_size_bytes",
			"Size of the filesystem of the data directory.", nil, nil),
	}
	for _, s := range []string{sourceConsumer, sourceStream, sourceOutbox, sourceFilesystem} {
		o.errs.WithLabelValues(s)
	}
	return o
}

// registerObserver adds the scrape-time collector to the engine's registry.
// Run calls it through httpHandler, before anything else starts: the
// collector serves scrapes, so it exists where /metrics is served (an
// embedding program that gathers Options.Registry itself with http.listen
// off calls httpHandler once, or does without these series). Registering
// twice is harmless.
func (e *Engine) registerObserver() {
	err := e.reg.Register(newObserver(e))
	var are prometheus.AlreadyRegisteredError
	if err != nil && !errors.As(err, &are) {
		e.log.Error("register the scrape-time metrics", "err", err)
	}
}

func (o *observer) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{o.consPending, o.consAckPending, o.consRedelivered, o.streamMsgs, o.streamBytes, o.outbox, o.fsAvail, o.fsSize} {
		ch <- d
	}
	o.errs.Describe(ch)
}

func (o *observer) Collect(ch chan<- prometheus.Metric) {
	e := o.e
	// The registry collects on goroutines of its own, where a panic would
	// end the process: a scrape must never take the engine down.
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("scrape-time metrics failed", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	if avail, size, err := fsUsage(e.cfg.Data); err == nil {
		ch <- prometheus.MustNewConstMetric(o.fsAvail, prometheus.GaugeValue, float64(avail))
		ch <- prometheus.MustNewConstMetric(o.fsSize, prometheus.GaugeValue, float64(size))
	} else if !errors.Is(err, errNoFsUsage) && !errors.Is(err, fs.ErrNotExist) { // created by Run
		o.errs.WithLabelValues(sourceFilesystem).Inc()
	}
	if e.ready.Load() {
		o.collectJetStream(ch)
		n := 0
		err := e.store.Outbox(func(_, v []byte) error { n += outValueRecords(v); return nil })
		switch {
		case err == nil:
			ch <- prometheus.MustNewConstMetric(o.outbox, prometheus.GaugeValue, float64(n))
		case e.ready.Load(): // not a failure when the engine is stopping
			o.errs.WithLabelValues(sourceOutbox).Inc()
		}
	}
	o.errs.Collect(ch)
}

func (o *observer) collectJetStream(ch chan<- prometheus.Metric) {
	e := o.e
	ctx, cancel := context.WithTimeout(context.Background(), observeTimeout)
	defer cancel()
	type cons struct{ stream, durable string }
	consumers := []cons{{e.cfg.Streams.Events.Name, e.cfg.Consumer.Durable}}
	if e.sc != nil {
		// Cluster mode: the consumers of the partitions this instance
		// owns (at most two per partition, so the labels stay bounded).
		consumers = consumers[:0]
		for p, ok := range e.sc.ownedSnapshot() {
			if ok {
				ps := strconv.Itoa(p)
				consumers = append(consumers, cons{e.cfg.Streams.Events.Name, e.cfg.Consumer.Durable + "-p" + ps},
					cons{e.cfg.Streams.Batch.Name, e.cfg.Consumer.BatchDurable + "-p" + ps})
			}
		}
	}
	for _, cs := range consumers {
		if c, err := e.js.Consumer(ctx, cs.stream, cs.durable); err == nil {
			info := c.CachedInfo()
			ch <- prometheus.MustNewConstMetric(o.consPending, prometheus.GaugeValue, float64(info.NumPending), cs.stream, cs.durable)
			ch <- prometheus.MustNewConstMetric(o.consAckPending, prometheus.GaugeValue, float64(info.NumAckPending), cs.stream, cs.durable)
			ch <- prometheus.MustNewConstMetric(o.consRedelivered, prometheus.GaugeValue, float64(info.NumRedelivered), cs.stream, cs.durable)
		} else if e.ready.Load() {
			o.errs.WithLabelValues(sourceConsumer).Inc()
		}
	}
	for _, s := range []struct{ role, name string }{
		{"events", e.cfg.Streams.Events.Name}, {"offers", e.cfg.Streams.Offers.Name},
		{"dlq", e.cfg.Streams.DLQ.Name}, {"decisions", e.cfg.Streams.Decisions.Name},
	} {
		st, err := e.js.Stream(ctx, s.name)
		if err != nil {
			if e.ready.Load() {
				o.errs.WithLabelValues(sourceStream).Inc()
			}
			continue
		}
		info := st.CachedInfo()
		ch <- prometheus.MustNewConstMetric(o.streamMsgs, prometheus.GaugeValue, float64(info.State.Msgs), s.name, s.role)
		ch <- prometheus.MustNewConstMetric(o.streamBytes, prometheus.GaugeValue, float64(info.State.Bytes), s.name, s.role)
	}
}

// errNoFsUsage: the platform cannot tell a filesystem's free space.
var errNoFsUsage = errors.New("filesystem usage not supported on this platform")
