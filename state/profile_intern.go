package state

// Profiles are most of what the customer cache holds for the collector to
// mark: each decoded profile is a map of boxed values, and with 100,000
// cached customers and a handful of fields each that was 59% of the
// engine's live heap objects (an in-use heap profile at 5,000 events/s,
// 100 rules). Most fields take few values across customers (segment,
// branch, channel preference, time zone, tags), so a shard keeps one boxed
// copy of each value it has seen per field and the profiles share it; a
// field that proves to take many values (a name, an e-mail address) stops
// being interned. The values are strings, immutable, so sharing them
// cannot change what a rule reads.

const (
	// maxInternFields bounds the fields a shard interns values of.
	maxInternFields = 64
	// maxFieldValues is the number of distinct values beyond which a
	// field counts as high-cardinality and its values are no longer
	// interned.
	maxFieldValues = 1024
)

// profileValues interns the field names and the string values of a
// shard's profiles. Like the rest of a Shard it is used by one goroutine
// at a time.
type profileValues struct {
	fields map[string]*fieldValues
}

// fieldValues is one field's interned name and values.
type fieldValues struct {
	name string
	vals map[string]any // boxed strings; nil once the field has many values
}

// field returns the interned name of field k and its values, or nil when
// the shard interns no more fields.
func (pv *profileValues) field(k string) (string, *fieldValues) {
	if f, ok := pv.fields[k]; ok {
		return f.name, f
	}
	if pv.fields == nil {
		pv.fields = make(map[string]*fieldValues)
	}
	if len(pv.fields) >= maxInternFields {
		return k, nil
	}
	f := &fieldValues{name: k, vals: make(map[string]any)}
	pv.fields[k] = f
	return k, f
}

// intern returns k's interned name and v with its strings (at the top or
// in a list) replaced by the shard's shared copies. Lists are changed in
// place.
func (pv *profileValues) intern(k string, v any) (string, any) {
	k, f := pv.field(k)
	if f == nil {
		return k, v
	}
	switch t := v.(type) {
	case string:
		return k, f.value(t, v)
	case []any:
		for i, e := range t {
			if s, ok := e.(string); ok {
				t[i] = f.value(s, e)
			}
		}
	}
	return k, v
}

// value returns the shared box of s, keeping boxed (which holds s) as the
// shared one when s is new.
func (f *fieldValues) value(s string, boxed any) any {
	if f.vals == nil {
		return boxed
	}
	if b, ok := f.vals[s]; ok {
		return b
	}
	if len(f.vals) >= maxFieldValues {
		f.vals = nil // many values: not worth a table
		return boxed
	}
	f.vals[s] = boxed
	return boxed
}
