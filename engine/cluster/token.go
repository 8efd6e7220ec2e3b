package cluster

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"time"
)

// tokenEncoding is base64url without padding: its alphabet is safe in a
// subject token. Strict rejects encodings with non-zero trailing bits, so
// every encoded string has one canonical token.
var tokenEncoding = base64.RawURLEncoding.Strict()

// safeToken reports whether s is non-empty and only [A-Za-z0-9_-].
func safeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Token returns the subject token of a key (a customer id, a seen marker
// id, a counter name): the key itself when it is a safe token, non-empty and
// only [A-Za-z0-9_-], and otherwise "=" followed by the unpadded base64url
// encoding of its bytes. Safe tokens never start with "=" and encoded ones
// always do, so Token is injective; ParseToken inverts it. Token does not
// allocate for a safe key.
func Token(s string) string {
	if safeToken(s) {
		return s
	}
	return "=" + tokenEncoding.EncodeToString([]byte(s))
}

// ParseToken returns the key whose Token is t. It accepts only canonical
// tokens (those Token returns) and wraps ErrCorrupt otherwise.
func ParseToken(t string) (string, error) {
	if safeToken(t) {
		return t, nil
	}
	if len(t) == 0 || t[0] != '=' {
		return "", fmt.Errorf("%w: token %q is neither safe nor encoded", ErrCorrupt, t)
	}
	b, err := tokenEncoding.DecodeString(t[1:])
	if err != nil {
		return "", fmt.Errorf("%w: token %q: %v", ErrCorrupt, t, err)
	}
	if s := string(b); !safeToken(s) {
		return s, nil
	}
	return "", fmt.Errorf("%w: token %q encodes a safe key", ErrCorrupt, t)
}

// appendCounter encodes a counter value: its decimal text.
func appendCounter(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }

// parseCounter decodes a counter value written by appendCounter: a
// canonical decimal int64 ("-0", "+1" and leading zeros are refused, so a
// value has one encoding).
func parseCounter(b []byte) (int64, error) {
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: counter value %q", ErrCorrupt, b)
	}
	if string(appendCounter(nil, v)) != string(b) {
		return 0, fmt.Errorf("%w: counter value %q is not canonical", ErrCorrupt, b)
	}
	return v, nil
}

// formatTTL renders a per-message TTL for the Nats-TTL header: whole
// seconds, rounded up, at least 1 (the server's minimum).
func formatTTL(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// parseTTL decodes a Nats-TTL header as the server does: "never", a Go
// duration of at least one second, or a number of seconds. It returns -1
// for never.
func parseTTL(s string) (time.Duration, error) {
	if s == "never" {
		return -1, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < time.Second {
			return 0, fmt.Errorf("%w: TTL %q under one second", ErrCorrupt, s)
		}
		return d.Truncate(time.Second), nil
	}
	n, err := strconv.ParseUint(s, 10, 63)
	if err != nil || n > uint64(1<<63-1)/uint64(time.Second) {
		return 0, fmt.Errorf("%w: TTL %q", ErrCorrupt, s)
	}
	return time.Duration(n) * time.Second, nil
}
