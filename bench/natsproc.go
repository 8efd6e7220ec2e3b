package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// NATSServerFlag is the hidden kairos bench flag that turns the process
// into the bench's nats-server (kairos bench --nats-server-child DIR), for
// Config.NATSExe.
const NATSServerFlag = "nats-server-child"

// NATSProfilingFlag is the hidden flag that, with NATSServerFlag, makes
// the nats-server child serve /debug/pprof/ (--nats-cpuprofile).
const NATSProfilingFlag = "nats-server-child-pprof"

// natsURLLine prefixes the line on which a nats-server child gives its
// client URL once it accepts connections; natsPprofLine the one before it
// with the base URL of its /debug/pprof/, when it serves one.
const (
	natsURLLine   = "nats-url "
	natsPprofLine = "nats-pprof "
)

// ServeNATS is the nats-server child's process: it starts the server the
// bench would start in its own process (startNATS) storing under dir,
// writes its client URL to w (after the URL of its /debug/pprof/, with
// profiling), and serves until ctx ends (the bench sends SIGINT) or stdin
// closes (the bench is gone).
func ServeNATS(ctx context.Context, dir string, profiling bool, stdin io.Reader, w io.Writer) error {
	ns, err := startNATS(dir, profiling)
	if err != nil {
		return err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	if profiling {
		a := ns.ProfilerAddr()
		if a == nil {
			return errors.New("nats-server: no profiling port")
		}
		if _, err := fmt.Fprintf(w, "%shttp://%s/debug/pprof/\n", natsPprofLine, a); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(w, "%s%s\n", natsURLLine, ns.ClientURL()); err != nil {
		return err
	}
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, stdin)
		close(gone)
	}()
	select {
	case <-ctx.Done():
	case <-gone:
	}
	return nil
}

// natsChild is a nats-server in a process of its own (Config.NATSExe).
type natsChild struct {
	cmd   *exec.Cmd
	stdin io.Closer
	url   string
	pprof string // base URL of its /debug/pprof/, with profiling
	done  chan struct{}
	err   error
}

// startNATSChild starts `exe bench --nats-server-child dir` and waits until
// it gives its URL (at most timeout); with profiling, it serves
// /debug/pprof/ too. What it writes besides those lines goes to
// dir+".log".
func startNATSChild(exe, dir string, profiling bool, timeout time.Duration) (*natsChild, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	logf, err := os.Create(dir + ".log")
	if err != nil {
		return nil, err
	}
	args := []string{"bench", "--" + NATSServerFlag, dir}
	if profiling {
		args = append(args, "--"+NATSProfilingFlag)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = logf
	// It dies with the bench, even on kill -9 of the bench.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Pipes of our own rather than cmd's: Wait closes those of
	// StdoutPipe while the reader may still read.
	out, outw, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	inr, in, err := os.Pipe()
	if err != nil {
		logf.Close()
		out.Close()
		outw.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stdin = outw, inr
	err = cmd.Start()
	outw.Close()
	inr.Close()
	if err != nil {
		logf.Close()
		out.Close()
		in.Close()
		return nil, fmt.Errorf("start the nats-server process: %w", err)
	}
	c := &natsChild{cmd: cmd, stdin: in, done: make(chan struct{})}
	type urlPair struct{ client, pprof string }
	urls := make(chan urlPair, 1)
	go func() {
		sc := bufio.NewScanner(out)
		var pprof string
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), natsPprofLine); ok {
				pprof = u
				continue
			}
			if u, ok := strings.CutPrefix(sc.Text(), natsURLLine); ok {
				urls <- urlPair{u, pprof}
				break
			}
			fmt.Fprintln(logf, sc.Text())
		}
		io.Copy(logf, out)
		out.Close()
		logf.Close()
	}()
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	select {
	case u := <-urls:
		c.url, c.pprof = u.client, u.pprof
		if profiling && c.pprof == "" {
			c.stop()
			return nil, errors.New("the nats-server process gave no profiling URL")
		}
		return c, nil
	case <-c.done:
		in.Close()
		return nil, fmt.Errorf("the nats-server process ended before it served (%v): %s", c.err, tail(dir+".log", 5))
	case <-time.After(timeout):
		c.stop()
		return nil, errors.New("the nats-server process did not start")
	}
}

// pid is the process's id, for its usage.
func (c *natsChild) pid() int { return c.cmd.Process.Pid }

// stop asks the server to shut down and waits for it (killing it after 30
// s).
func (c *natsChild) stop() {
	c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
	c.stdin.Close()
}
