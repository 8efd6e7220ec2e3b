package connectors

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
)

// FileSettings configure the file connector.
type FileSettings struct {
	Path string `yaml:"path"`
}

// File appends each offer as a JSON line to a file (or standard output):
// for tests, audits and systems that read files. Each line is written and
// flushed (and for a file, synced) before Deliver returns.
type File struct {
	mu   sync.Mutex
	path string // opened at the first delivery
	f    *os.File
	w    *bufio.Writer
	sync bool
}

var _ Connector = (*File)(nil)

// NewFile builds a file connector.
func NewFile(cfg Config) (Connector, error) {
	var s FileSettings
	if err := decodeSettings(cfg.Settings, &s); err != nil {
		return nil, err
	}
	if s.Path == "" {
		return nil, fmt.Errorf("path is required")
	}
	return &File{path: s.Path, sync: true}, nil
}

// NewStdout builds a connector writing JSON lines to standard output.
func NewStdout(cfg Config) (Connector, error) {
	if len(cfg.Settings) > 0 {
		return nil, fmt.Errorf("stdout takes no settings")
	}
	return &File{w: bufio.NewWriter(os.Stdout)}, nil
}

// NewWriterConnector writes JSON lines to w (tests).
func NewWriterConnector(w io.Writer) *File { return &File{w: bufio.NewWriter(w)} }

// Deliver writes the offer as one JSON line.
func (c *File) Deliver(_ context.Context, o *Offer) error {
	b, err := json.Marshal(o)
	if err != nil {
		return &PermanentError{Err: err}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.w == nil {
		f, err := os.OpenFile(c.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return err
		}
		c.f, c.w = f, bufio.NewWriter(f)
	}
	c.w.Write(b)
	c.w.WriteByte('\n')
	if err := c.w.Flush(); err != nil {
		return err
	}
	if c.sync && c.f != nil {
		return c.f.Sync()
	}
	return nil
}

// Close flushes and closes the file.
func (c *File) Close(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.w == nil {
		return nil
	}
	err := c.w.Flush()
	if c.f != nil {
		if cerr := c.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
