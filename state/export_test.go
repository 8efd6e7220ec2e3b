package state

import "github.com/dgraph-io/badger/v4"

// Test hooks for the external tests.

// SetBadgerOptions makes Open adjust the Badger options with f.
func SetBadgerOptions(o *Options, f func(badger.Options) badger.Options) { o.badgerOptions = f }

// WriteRaw writes key=value straight to Badger, bypassing the encoders.
func WriteRaw(s *Store, key string, value []byte) error {
	return s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(key), value) })
}

// ReadRaw reads a key straight from Badger; nil when absent.
func ReadRaw(s *Store, key string) ([]byte, uint64, error) {
	var v []byte
	var expires uint64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if err == badger.ErrKeyNotFound {
			return nil
		}
		if err != nil {
			return err
		}
		expires = item.ExpiresAt()
		v, err = item.ValueCopy(nil)
		return err
	})
	return v, expires, err
}

// SeriesCount returns the number of series c holds.
func SeriesCount(c *Customer) int { return len(c.series) }
