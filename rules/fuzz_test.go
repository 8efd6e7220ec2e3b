package rules

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// addSeeds adds the files matching the patterns to the fuzz corpus.
func addSeeds(f *testing.F, patterns ...string) {
	for _, p := range patterns {
		names, _ := filepath.Glob(p)
		for _, n := range names {
			data, err := os.ReadFile(n)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
}

// FuzzParseAndCheckRuleFile parses, compiles and lints arbitrary rule
// files: every problem must come back as Errors, never as a panic.
func FuzzParseAndCheckRuleFile(f *testing.F) {
	addSeeds(f, "testdata/*.yaml", "testdata/bad/*.yaml", "testdata/check/*/*.yaml")
	cat, err := LoadCatalogue("testdata/check/catalogue.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseFile("f.yaml", data)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("ParseFile error %v is not Errors", err)
			}
			return
		}
		rs, errs, err := compile([]*File{file}, Options{Catalogue: cat})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range errs {
			if e.Pos.File != "f.yaml" {
				t.Fatalf("error without the file: %v", e)
			}
		}
		rs.lint(len(errs) == 0)
	})
}

// FuzzParseCatalogue parses arbitrary catalogues.
func FuzzParseCatalogue(f *testing.F) {
	addSeeds(f, "testdata/check/catalogue.yaml")
	f.Add([]byte("events: [login, txn]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCatalogue("c.yaml", data)
		if err != nil {
			if !errors.Is(err, ErrCatalogue) {
				t.Fatalf("%v is not ErrCatalogue", err)
			}
			return
		}
		for name, spec := range c.Events {
			if !c.knows(name) || spec.Type != name {
				t.Fatalf("event %q: %+v", name, spec)
			}
		}
	})
}
