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

// FullWindow reads the window record of the customer as ExportCustomer
// gives it: with the entries of its chunks.
func FullWindow(s *Store, customerID string) ([]byte, error) {
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(prefixCustomer + customerID))
		if err != nil {
			return err
		}
		if v, err = item.ValueCopy(nil); err != nil {
			return err
		}
		v, err = fullWindow(txn, customerID, v)
		return err
	})
	return v, err
}

// ChunkKeys returns the chunk keys of the store.
func ChunkKeys(s *Store) []string {
	var keys []string
	s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixChunk)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, string(it.Item().KeyCopy(nil)))
		}
		return nil
	})
	return keys
}

// Chunks returns how many chunks c's window record lists.
func Chunks(c *Customer) int { return len(c.chunks) }

// ShardOf returns the shard of c.
func ShardOf(c *Customer) *Shard { return c.shard }

// LevelsWithTables returns the LSM levels of s that hold tables.
func LevelsWithTables(s *Store) []int {
	var ls []int
	for _, l := range s.db.Levels() {
		if l.NumTables > 0 {
			ls = append(ls, l.Level)
		}
	}
	return ls
}

// L0Tables returns the number of tables in level 0 of s.
func L0Tables(s *Store) int {
	for _, l := range s.db.Levels() {
		if l.Level == 0 {
			return l.NumTables
		}
	}
	return 0
}
