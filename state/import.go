package state

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"
)

// ErrOpen marks an import into a store another process holds (the engine
// runs): import through the engine instead (profile events).
var ErrOpen = errors.New("the state directory is in use")

// ProfileRow is one profile to import.
type ProfileRow struct {
	ID    string
	Attrs map[string]any // merged into the stored profile; a nil value deletes the key
}

// ImportProfiles merges profiles into the store in bulk: rows are read in
// chunks, the stored profiles of a chunk read in one transaction, and the
// merged ones written through a Badger WriteBatch — not one transaction
// per row. It is for a store no engine has open (kairos profiles import
// --data); the customers' caches are not updated, so the engine must not
// run meanwhile. next returns io.EOF at the end; progress, when
// set, is called after each chunk with the rows done.
func (s *Store) ImportProfiles(next func() (ProfileRow, error), progress func(int)) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	const chunk = 4096
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	rows := make([]ProfileRow, 0, chunk)
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	done := 0
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		merged := make([]map[string]any, len(rows))
		err := s.db.View(func(txn *badger.Txn) error {
			for i, r := range rows {
				m := map[string]any{}
				item, err := txn.Get([]byte(prefixProfile + r.ID))
				switch {
				case errors.Is(err, badger.ErrKeyNotFound):
				case err != nil:
					return err
				default:
					if err := item.Value(func(v []byte) error { return decodeProfileBytes(m, v) }); err != nil {
						return fmt.Errorf("profile %q: %w", r.ID, err)
					}
				}
				for k, v := range r.Attrs {
					if v == nil {
						delete(m, k)
					} else {
						m[k] = v
					}
				}
				merged[i] = m
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i, r := range rows {
			key := []byte(prefixProfile + r.ID)
			if len(merged[i]) == 0 {
				if err := wb.Delete(key); err != nil {
					return err
				}
				continue
			}
			buf.Reset()
			if err := enc.Encode(merged[i]); err != nil {
				return fmt.Errorf("profile %q: %w", r.ID, err)
			}
			if err := wb.Set(key, bytes.Clone(buf.Bytes())); err != nil {
				return err
			}
		}
		done += len(rows)
		rows = rows[:0]
		if progress != nil {
			progress(done)
		}
		return nil
	}
	for {
		r, err := next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return done, err
		}
		if r.ID == "" {
			return done, errors.New("a profile row without a customer id")
		}
		rows = append(rows, r)
		if len(rows) == chunk {
			if err := flush(); err != nil {
				return done, err
			}
		}
	}
	if err := flush(); err != nil {
		return done, err
	}
	return done, wb.Flush()
}
