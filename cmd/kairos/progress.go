package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress shows how far a long command is: a bar redrawn in place on a
// terminal, a plain line every few seconds otherwise.
type progress struct {
	w        io.Writer
	what     string
	fraction func() float64 // 0..1, or negative when unknown
	tty      bool
	start    time.Time
	last     time.Time
	n        int
	ended    bool
}

func newProgress(w io.Writer, what string, fraction func() float64) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, what: what, fraction: fraction, tty: tty, start: time.Now()}
}

// set records n items done and redraws when it is time.
func (p *progress) set(n int) {
	p.n = n
	every := 5 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if time.Since(p.last) < every {
		return
	}
	p.last = time.Now()
	p.draw(false)
}

func (p *progress) draw(final bool) {
	el := time.Since(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(p.n) / el
	}
	f := -1.0
	if p.fraction != nil {
		f = p.fraction()
	}
	if !p.tty {
		if f >= 0 {
			fmt.Fprintf(p.w, "%d %s (%.0f%%), %.0f/s\n", p.n, p.what, 100*f, rate)
		} else {
			fmt.Fprintf(p.w, "%d %s, %.0f/s\n", p.n, p.what, rate)
		}
		return
	}
	const width = 30
	bar := strings.Repeat("·", width)
	if f >= 0 {
		k := int(f * width)
		bar = strings.Repeat("█", k) + strings.Repeat("·", width-k)
	}
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\r%s %d %s, %.0f/s%s", bar, p.n, p.what, rate, end)
}

// done draws the last state (the terminal line is ended), once.
func (p *progress) done() {
	if p.tty && p.n > 0 && !p.ended {
		p.draw(true)
	}
	p.ended = true
}
