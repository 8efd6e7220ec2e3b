package engine

import (
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// opsCopyDir copies a directory tree (regular files and directories).
func opsCopyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o750)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRestoringAnOlderStateReplaysTheEventsSinceIt follows the restore
// procedure of docs/operations.md: the state directory of a stopped
// engine is copied; later the state is lost and the copy put back while
// the streams are intact. The engine must start from the copy's
// watermark, replay the events published since from the events stream,
// rebuild the customers' state from them, and publish no offer twice.
func TestRestoringAnOlderStateReplaysTheEventsSinceIt(t *testing.T) {
	dir := t.TempDir()
	opsWriteRules(t, dir, opsRules)
	stateDir := filepath.Join(dir, "data", "state")
	base := time.Now().UnixMilli()

	te := startTestEngine(t, dir, nil)
	te.publishEvent(t, ev{ID: "t1", CustomerID: "C1", Type: "txn", TS: base, Attrs: map[string]any{"amount": 500, "divisor": 1000}}, false)
	seq1 := te.publishEvent(t, ev{ID: "l1", CustomerID: "C1", Type: "login", TS: base + 1, Attrs: map[string]any{"channel": "app"}}, false)
	te.waitApplied(t, seq1)
	te.stop(t)

	backup := filepath.Join(t.TempDir(), "state")
	opsCopyDir(t, stateDir, backup) // the backup: a copy of the stopped engine's state

	te = startTestEngine(t, dir, nil)
	te.publishEvent(t, ev{ID: "t2", CustomerID: "C2", Type: "txn", TS: base + 2, Attrs: map[string]any{"amount": 500, "divisor": 1000}}, false)
	seq2 := te.publishEvent(t, ev{ID: "l2", CustomerID: "C2", Type: "login", TS: base + 3, Attrs: map[string]any{"channel": "app"}}, false)
	te.waitApplied(t, seq2)
	te.stop(t)

	// The state is lost; the backup is restored.
	if err := os.RemoveAll(stateDir); err != nil {
		t.Fatal(err)
	}
	opsCopyDir(t, backup, stateDir)

	te = startTestEngine(t, dir, nil)
	te.waitApplied(t, seq2) // the events since the backup were replayed
	offers := te.offers(t)
	if len(offers) != 2 {
		t.Fatalf("%d offers in the stream after the restore, want 2 (the replayed one deduplicated)", len(offers))
	}
	code, body := te.opsGet(t, "/v1/customers/C2", "")
	var x Explanation
	if err := json.Unmarshal([]byte(body), &x); code != 200 || err != nil {
		t.Fatalf("explain C2 after the restore: %d %v %s", code, err, body)
	}
	if len(x.Contacts) != 1 || x.Contacts[0].Rule != "first-login" {
		t.Errorf("C2's contact history was not rebuilt by the replay: %+v", x.Contacts)
	}
}
