package state

import "errors"

// Sentinel errors. Callers decide with errors.Is; the returned errors wrap
// these with the key or customer at fault.
var (
	// ErrCorrupt means a stored record could not be decoded. The error names
	// the Badger key of the record; for a replication record given to
	// Store.ImportRecords, the customer.
	ErrCorrupt = errors.New("state: corrupt record")

	// ErrBatchTooBig means a Batch does not fit in one Badger transaction
	// (badger.ErrTxnTooBig). Nothing of the batch was written; commit
	// smaller batches.
	ErrBatchTooBig = errors.New("state: batch too big for one transaction")

	// ErrClosed is returned by every method of a closed Store, and by Close
	// when called twice.
	ErrClosed = errors.New("state: store closed")

	// ErrSchema means the directory holds a store written by a newer schema
	// than this binary understands; Open refuses it.
	ErrSchema = errors.New("state: unsupported schema version")
)
