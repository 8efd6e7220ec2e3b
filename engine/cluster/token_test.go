package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestToken(t *testing.T) {
	cases := []struct{ name, key, token string }{
		{"a safe id is itself", "cust-42_x", "cust-42_x"},
		{"an empty key is encoded", "", "="},
		{"a dot is encoded", "a.b", "=YS5i"},
		{"a wildcard is encoded", "*", "=Kg"},
		{"unicode is encoded", "客户", "=5a6i5oi3"},
		{"a leading equals sign is encoded", "=x", "=PXg"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Token(c.key); got != c.token {
				t.Errorf("Token(%q) = %q, want %q", c.key, got, c.token)
			}
			if got, err := ParseToken(c.token); err != nil || got != c.key {
				t.Errorf("ParseToken(%q) = %q, %v; want %q", c.token, got, err, c.key)
			}
		})
	}
	for _, bad := range []string{"a.b", "=YWJj" /* encodes the safe "abc" */, "=!!", "=YS5", "=Kh" /* non-zero trailing bits */, " "} {
		if _, err := ParseToken(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("ParseToken(%q) = %v, want ErrCorrupt", bad, err)
		}
	}
	if a := testing.AllocsPerRun(100, func() { _ = Token("cust-42") }); a != 0 {
		t.Errorf("Token of a safe id allocates %v times", a)
	}
}

func FuzzToken(f *testing.F) {
	for _, s := range []string{"", "cust-1", "a.b", "=", "客户", "a b\r\n", strings.Repeat("x", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		tok := Token(key)
		if tok == "" || strings.ContainsAny(tok, ". *>\t\r\n") {
			t.Fatalf("Token(%q) = %q is not a subject token", key, tok)
		}
		if got, err := ParseToken(tok); err != nil || got != key {
			t.Fatalf("ParseToken(Token(%q)) = %q, %v", key, got, err)
		}
	})
}

func FuzzParseToken(f *testing.F) {
	for _, s := range []string{"abc", "=", "=YS5i", "=YWJj", "=Kh", "=!", "a.b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		key, err := ParseToken(tok)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ParseToken(%q): %v is not ErrCorrupt", tok, err)
			}
			return
		}
		if again := Token(key); again != tok {
			t.Fatalf("ParseToken(%q) = %q, whose Token is %q: not canonical", tok, key, again)
		}
	})
}

func TestParseCounter(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"42", 42, true}, {"-7", -7, true},
		{"9223372036854775807", 1<<63 - 1, true},
		{"", 0, false}, {"+1", 0, false}, {"01", 0, false}, {"-0", 0, false},
		{"1e3", 0, false}, {"9223372036854775808", 0, false}, {" 1", 0, false},
	} {
		got, err := parseCounter([]byte(c.in))
		if c.ok != (err == nil) || got != c.want {
			t.Errorf("parseCounter(%q) = %d, %v", c.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Errorf("parseCounter(%q): %v is not ErrCorrupt", c.in, err)
		}
	}
}

func FuzzParseCounter(f *testing.F) {
	for _, s := range []string{"0", "-1", "123", "+1", "01", "-0", "x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseCounter(b)
		if err != nil {
			return
		}
		if got := string(appendCounter(nil, v)); got != string(b) {
			t.Fatalf("parseCounter(%q) = %d, encoded back as %q", b, v, got)
		}
	})
}

func TestTTLHeader(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{{time.Millisecond, "1"}, {time.Second, "1"}, {1500 * time.Millisecond, "2"}, {time.Hour, "3600"}} {
		if got := formatTTL(c.d); got != c.want {
			t.Errorf("formatTTL(%v) = %q, want %q", c.d, got, c.want)
		}
	}
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1", time.Second, true}, {"90", 90 * time.Second, true}, {"1m30s", 90 * time.Second, true},
		{"never", -1, true}, {"500ms", 0, false}, {"-5", 0, false}, {"x", 0, false}, {"", 0, false},
	} {
		got, err := parseTTL(c.in)
		if c.ok != (err == nil) || got != c.want {
			t.Errorf("parseTTL(%q) = %v, %v", c.in, got, err)
		}
	}
}

func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"1", "60", "1h", "never", "0.5s", "-1", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseTTL(s)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parseTTL(%q): %v is not ErrCorrupt", s, err)
			}
			return
		}
		if d != -1 && (d < 0 || d%time.Second != 0) {
			t.Fatalf("parseTTL(%q) = %v", s, d)
		}
	})
}
