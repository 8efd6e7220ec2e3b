package state

import "encoding/binary"

// A kept decision in memory is encoded as a zigzag varint TS, then Rule,
// OfferID, EventID, Outcome, Reason and Channel, each a uvarint length and
// its bytes. It is written only by appendDecision, so readDecision trusts
// it.

func appendDecision(dst []byte, d *Decision) []byte {
	dst = binary.AppendVarint(dst, d.TS)
	for _, s := range [...]string{d.Rule, d.OfferID, d.EventID, d.Outcome, d.Reason, d.Channel} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

// decisionFields are the encoded fields of a decision, in order: Rule,
// OfferID, EventID, Outcome, Reason, Channel.
type decisionFields [6][]byte

const (
	fieldRule = iota
	fieldOfferID
	fieldEventID
	fieldOutcome
	fieldReason
	fieldChannel
)

// readDecision reads the decision that b starts with into f (slices of b)
// and returns its time.
func readDecision(b []byte, f *decisionFields) int64 {
	ts, n := binary.Varint(b)
	b = b[n:]
	for i := range f {
		l, n := binary.Uvarint(b)
		f[i], b = b[n:n+int(l)], b[n+int(l):]
	}
	return ts
}

// addDecision appends d and drops the oldest beyond keep (> 0). The
// oldest go first, so that a full ring takes the new decision in the
// array it has.
func (p *policy) addDecision(d *Decision, keep int) {
	p.view = nil
	if over := len(p.decAt) + 1 - keep; over > 0 {
		if over >= len(p.decAt) {
			p.decs, p.decAt = p.decs[:0], p.decAt[:0]
		} else {
			cut := p.decAt[over]
			p.decs = p.decs[:copy(p.decs, p.decs[cut:])]
			for i, at := range p.decAt[over:] {
				p.decAt[i] = at - cut
			}
			p.decAt = p.decAt[:len(p.decAt)-over]
		}
	}
	p.decAt = append(p.decAt, uint32(len(p.decs)))
	p.decs = appendDecision(p.decs, d)
}

// decisionBytes is what a decision is expected to take encoded, to size
// the array of a decoded ring at once: an engine's decision is 60-90
// bytes.
const decisionBytes = 96

func (p *policy) clearDecisions() {
	p.decs, p.decAt = p.decs[:0], p.decAt[:0]
	clear(p.view)
	p.view = nil
}

// decision reads kept decision i into f (slices of p.decs) and returns
// its time.
func (p *policy) decision(i int, f *decisionFields) int64 {
	return readDecision(p.decs[p.decAt[i]:], f)
}

// decisions decodes the kept decisions into p.view, once per change.
func (p *policy) decisions() []Decision {
	if p.view != nil || len(p.decAt) == 0 {
		return p.view
	}
	all := string(p.decs)
	str := func(b []byte) string {
		// b is a slice of p.decs: its offset is what its capacity lacks.
		at := cap(p.decs) - cap(b)
		return all[at : at+len(b)]
	}
	view := make([]Decision, len(p.decAt))
	var f decisionFields
	for i := range view {
		ts := p.decision(i, &f)
		view[i] = Decision{TS: ts, Rule: str(f[fieldRule]), OfferID: str(f[fieldOfferID]), EventID: str(f[fieldEventID]),
			Outcome: str(f[fieldOutcome]), Reason: str(f[fieldReason]), Channel: str(f[fieldChannel])}
	}
	p.view = view
	return view
}
