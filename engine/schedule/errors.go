package schedule

import (
	"errors"
	"strconv"
	"strings"
)

// ErrSyntax marks an expression Parse rejects. Decide with errors.Is; the
// texts may change. Every error Parse returns is a *ParseError wrapping it.
var ErrSyntax = errors.New("invalid cron expression")

// ParseError is why Parse rejected an expression: the field and the token
// at fault.
type ParseError struct {
	Expr  string // the whole expression, as given
	Field string // "minute", "hour", "day-of-month", "month", "day-of-week"; empty for the whole expression
	Token string // the offending list item, macro or field
	Msg   string
}

const maxErrExpr = 80

func (e *ParseError) Error() string {
	var b strings.Builder
	expr := e.Expr
	if len(expr) > maxErrExpr {
		expr = expr[:maxErrExpr] + "…"
	}
	b.WriteString("cron expression ")
	b.WriteString(strconv.Quote(expr))
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(" field: ")
	}
	if e.Token != "" {
		tok := e.Token
		if len(tok) > maxErrExpr {
			tok = tok[:maxErrExpr] + "…"
		}
		b.WriteString(strconv.Quote(tok))
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns ErrSyntax.
func (e *ParseError) Unwrap() error { return ErrSyntax }
