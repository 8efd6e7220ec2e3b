package batchgen

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// List formats.
const (
	FormatCSV   = "csv"
	FormatJSONL = "jsonl"
)

// Limits of ReadList.
const (
	// MaxLineBytes is the longest JSONL line; a longer one is a bad row.
	MaxLineBytes = 1 << 20
	// MaxBadRows is how many bad rows ReadList reports before it stops.
	MaxBadRows = 100
)

const colCustomerID = "customer_id"

// ValidCampaign tells whether name can be a campaign's: [a-z0-9_]+, so
// that list_<name> is an event type.
func ValidCampaign(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// ReadList reads a campaign list and calls fn with one event per row:
// type list_<campaign>, id list:<campaign>:<customer>, ts runAt, the row's
// other values as attrs. format is "csv" or "jsonl" ("ndjson" too).
//
// CSV: the first row is the header; it must name a customer_id column and
// no column twice. Every other column is an attribute named by its header
// (trimmed of spaces); in each row, an empty cell is omitted, true and
// false (in any case) are booleans, a JSON-style number is an int64 when it
// is whole and fits, else a float64 (1e3, 2.5), and anything else,
// including 007 and +33612345678 and integers beyond int64, stays a string.
// A UTF-8 byte-order mark before the header is ignored.
//
// JSONL: one JSON object a line, blank lines skipped; customer_id is a
// string and the other members are the attributes, unless the object has
// exactly the members customer_id and attrs (an object), whose members are
// then the attributes. Numbers are int64 when whole and within int64, else
// float64, at any depth, as the engine does for JSON events.
//
// A customer id must be a NATS subject token (no '.', '*', '>', space or
// control character) and keep the event id within 256 bytes. A bad row (a
// bad customer id, a wrong number of CSV fields, a line that is not a JSON
// object) is skipped and reported; ReadList goes on with the next row and
// stops after MaxBadRows of them. A malformed header, a CSV quoting error
// (after which rows cannot be told apart), a read error or an error from fn
// stops it at once. Rows are not deduplicated here: a customer listed
// twice makes the same event id twice and the engine drops the second.
//
// n is the number of events fn accepted (returned nil for). err joins a
// *ListError for each problem, in order, each at file:line (the file is
// r's Name() when r has one, as an *os.File does). Decide with errors.Is:
// ErrList or fn's error means the list was not read to the end; an error
// that is only ErrBadRow means every other row was yielded (ErrCustomerID
// marks the rows skipped for their customer id). An invalid campaign or
// format is an ErrArgument error before anything is read.
func ReadList(r io.Reader, format string, campaign string, runAt time.Time, fn func(Event) error) (n int, err error) {
	if !ValidCampaign(campaign) {
		return 0, argErr("campaign names must match [a-z0-9_]+ (at most 64 bytes)")
	}
	lr := &listReader{
		typ:    ListTypePrefix + campaign,
		prefix: "list:" + campaign,
		ts:     runAt.UnixMilli(),
		fn:     fn,
	}
	if nr, ok := r.(interface{ Name() string }); ok {
		lr.file = nr.Name()
	}
	switch format {
	case FormatCSV:
		lr.readCSV(r)
	case FormatJSONL, "ndjson":
		lr.readJSONL(r)
	default:
		return 0, argErr("list format must be csv or jsonl")
	}
	return lr.n, errors.Join(lr.errs...)
}

type listReader struct {
	file   string
	typ    string
	prefix string
	ts     int64
	fn     func(Event) error
	n      int
	errs   []error
	bad    int
}

// stop records a problem after which reading stops.
func (lr *listReader) stop(line int, msg string) {
	lr.errs = append(lr.errs, &ListError{File: lr.file, Line: line, Msg: msg, Err: ErrList})
}

// badRow records a skipped row; it returns false when reading must stop.
// cause is ErrCustomerID or nil.
func (lr *listReader) badRow(line int, cause error, msg string) bool {
	lr.errs = append(lr.errs, &ListError{File: lr.file, Line: line, Msg: msg, Err: ErrBadRow, cause: cause})
	if lr.bad++; lr.bad >= MaxBadRows {
		lr.stop(line, "too many bad rows: stopped")
		return false
	}
	return true
}

// emit makes the row's event and calls fn; it returns false when reading
// must stop.
func (lr *listReader) emit(line int, customer string, attrs map[string]any) bool {
	if err := checkCustomerID(customer); err != nil {
		return lr.badRow(line, ErrCustomerID, err.Error())
	}
	id, _, err := makeID(lr.prefix, customer, 0, false)
	if err != nil {
		return lr.badRow(line, ErrCustomerID, err.Error())
	}
	if attrs == nil {
		attrs = map[string]any{}
	}
	if err := lr.fn(Event{ID: id, CustomerID: customer, Type: lr.typ, TS: lr.ts, Attrs: attrs}); err != nil {
		lr.errs = append(lr.errs, &ListError{File: lr.file, Line: line, Msg: err.Error(), Err: err})
		return false
	}
	lr.n++
	return true
}

func (lr *listReader) readCSV(r io.Reader) {
	cr := csv.NewReader(bufio.NewReaderSize(r, 64<<10))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		lr.stop(0, "empty list: no header row")
		return
	}
	if err != nil {
		lr.csvError(err)
		return
	}
	names := make([]string, len(header))
	idCol := -1
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff")
		}
		h = strings.TrimSpace(h)
		col := "column " + strconv.Itoa(i+1)
		switch {
		case h == "":
			lr.stop(1, "header: "+col+" has no name")
			return
		case h == colCustomerID:
			idCol = i
		}
		for j := range i {
			if names[j] == h {
				lr.stop(1, "header: "+col+" repeats the name of column "+strconv.Itoa(j+1))
				return
			}
		}
		names[i] = h
	}
	if idCol < 0 {
		lr.stop(1, "header: no customer_id column")
		return
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
				if !lr.badRow(pe.StartLine, nil, strconv.Itoa(len(rec))+" fields, want "+strconv.Itoa(len(names))) {
					return
				}
				continue
			}
			lr.csvError(err)
			return
		}
		line, _ := cr.FieldPos(0)
		attrs := make(map[string]any, len(rec)-1)
		for i, cell := range rec {
			if i != idCol && cell != "" {
				attrs[names[i]] = csvValue(cell)
			}
		}
		if !lr.emit(line, rec[idCol], attrs) {
			return
		}
	}
}

// csvError records a CSV error that stops reading.
func (lr *listReader) csvError(err error) {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		// pe.Err texts name the problem, not the cell.
		msg := "csv: " + pe.Err.Error()
		if pe.Line != pe.StartLine {
			msg += " (at line " + strconv.Itoa(pe.Line) + ")"
		}
		lr.stop(pe.StartLine, msg)
		return
	}
	lr.stop(0, "read: "+err.Error())
}

// csvValue types a CSV cell: a boolean, a number or a string.
func csvValue(s string) any {
	switch len(s) {
	case 4:
		if strings.EqualFold(s, "true") {
			return true
		}
	case 5:
		if strings.EqualFold(s, "false") {
			return false
		}
	}
	isInt, ok := jsonNumber(s)
	if !ok {
		return s
	}
	if isInt {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i
		}
		return s // beyond int64: an identifier, most likely; keep every digit
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) {
		return f
	}
	return s
}

// jsonNumber tells whether s is a number in JSON's grammar
// (-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?) and whether it is an
// integer (no fraction or exponent).
func jsonNumber(s string) (isInt, ok bool) {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - j
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false, false
	}
	isInt = true
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false, false
		}
		isInt = false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false, false
		}
		isInt = false
	}
	return isInt, i == len(s)
}

func (lr *listReader) readJSONL(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for line := 1; ; line++ {
		b, tooLong, err := readLine(br, &buf)
		if err != nil && err != io.EOF {
			lr.stop(line, "read: "+err.Error())
			return
		}
		if tooLong {
			if !lr.badRow(line, nil, "line longer than "+strconv.Itoa(MaxLineBytes)+" bytes") {
				return
			}
		} else {
			if line == 1 {
				b = bytes.TrimPrefix(b, []byte("\ufeff"))
			}
			if b = bytes.TrimSpace(b); len(b) > 0 {
				customer, attrs, msg := decodeJSONRow(b)
				if msg != "" {
					if !lr.badRow(line, nil, msg) {
						return
					}
				} else if !lr.emit(line, customer, attrs) {
					return
				}
			}
		}
		if err == io.EOF {
			return
		}
	}
}

// readLine returns the next line without its newline, reading into buf.
// A line longer than MaxLineBytes is consumed and reported with tooLong.
// err is io.EOF with the last line, which may be empty.
func readLine(br *bufio.Reader, buf *[]byte) (line []byte, tooLong bool, err error) {
	*buf = (*buf)[:0]
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			n := len(*buf) + len(chunk)
			if err == nil {
				n-- // the newline
			}
			if n > MaxLineBytes {
				tooLong = true
				*buf = (*buf)[:0]
			} else if len(*buf) == 0 && err == nil {
				// The common case: the whole line is in br's buffer.
				return chunk[:len(chunk)-1], false, nil
			} else {
				*buf = append(*buf, chunk...)
			}
		}
		switch err {
		case bufio.ErrBufferFull:
			continue
		case nil:
			if tooLong {
				return nil, true, nil
			}
			return (*buf)[:len(*buf)-1], false, nil
		default:
			return *buf, tooLong, err
		}
	}
}

// decodeJSONRow decodes one JSONL row. msg, when set, says what is wrong
// without quoting the row.
func decodeJSONRow(b []byte) (customer string, attrs map[string]any, msg string) {
	if b[0] != '{' {
		return "", nil, "not a JSON object"
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return "", nil, "invalid JSON (syntax error at byte " + strconv.FormatInt(se.Offset, 10) + ")"
		}
		return "", nil, "invalid JSON"
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", nil, "data after the JSON object"
	}
	v, ok := m[colCustomerID]
	if !ok {
		return "", nil, "no customer_id"
	}
	customer, ok = v.(string)
	if !ok {
		return "", nil, "customer_id is not a string"
	}
	delete(m, colCustomerID)
	if nested, ok := m["attrs"].(map[string]any); ok && len(m) == 1 {
		m = nested
	}
	for k, v := range m {
		m[k] = normalizeJSON(v)
	}
	return customer, m, ""
}

// normalizeJSON turns json.Number into int64 when whole and in range, and
// float64 otherwise, at any depth, as the engine does for JSON events.
func normalizeJSON(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case map[string]any:
		for k, e := range t {
			t[k] = normalizeJSON(e)
		}
	case []any:
		for i, e := range t {
			t[i] = normalizeJSON(e)
		}
	}
	return v
}
