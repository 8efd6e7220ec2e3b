package rules

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestBadRuleFilesGolden loads each file under testdata/bad and compares
// the full error text with the file's .golden twin.
func TestBadRuleFilesGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) == 0 {
		t.Fatal("no bad rule files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load(Options{}, f)
			if err == nil {
				t.Fatal("bad rule file loaded without error")
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./rules -run Golden -update)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestGoodAndExampleFilesLoad(t *testing.T) {
	for _, p := range []string{"testdata/good.yaml", "../examples/rules"} {
		rs, err := Load(Options{}, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs.Rules()) < 2 {
			t.Fatalf("%s: loaded %d rules", p, len(rs.Rules()))
		}
	}
}

func TestDuplicateIDAcrossFiles(t *testing.T) {
	f1, err := ParseFile("a.yaml", []byte("rules:\n  - {id: r, on: [x], when: 'true', offer: {channels: [sms]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	f2, err := ParseFile("b.yaml", []byte("rules:\n\n  - {id: r, on: [x], when: 'true', offer: {channels: [sms]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile([]*File{f1, f2}, Options{})
	want := `b.yaml:3:5: rule "r": duplicate rule id, first defined at a.yaml:2:5`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestEmptyFileHasNoRules(t *testing.T) {
	f, err := ParseFile("e.yaml", []byte("# nothing yet\n"))
	if err != nil || len(f.Rules) != 0 {
		t.Fatalf("got %v, %v", f, err)
	}
}
