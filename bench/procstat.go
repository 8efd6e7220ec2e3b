package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// Usage is what a process has used so far.
type Usage struct {
	// CPUSeconds is user plus system CPU time.
	CPUSeconds float64 `json:"cpu_seconds"`
	// RSSBytes is the resident set size now.
	RSSBytes int64 `json:"rss_bytes"`
	// PeakRSSBytes is the largest resident set size so far (VmHWM).
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// AnonRSSBytes is the part of RSSBytes that is anonymous memory (the
	// Go heap, stacks, runtime), not file pages mapped into the process
	// (RssAnon): what the process holds, as against page cache the kernel
	// may take back.
	AnonRSSBytes int64 `json:"anon_rss_bytes"`
	// PageFaults counts the page faults so far, minor and major: each first
	// touch of a page the process had not used, or had given back.
	PageFaults int64 `json:"page_faults"`
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times. It is 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// ProcUsage reads the usage of process pid (0 is this process) from
// /proc/<pid>/stat and /proc/<pid>/status. It works on Linux only.
func ProcUsage(pid int) (Usage, error) {
	if runtime.GOOS != "linux" {
		return Usage{}, errors.New("process usage needs Linux /proc")
	}
	dir := "/proc/self"
	if pid > 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	var u Usage
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return u, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return u, fmt.Errorf("%s/stat: unexpected format", dir)
	}
	f := strings.Fields(string(stat[i+1:]))
	// After ')' come field 3 (state) onwards; minflt is field 10, majflt
	// 12, utime 14, stime 15.
	if len(f) < 13 {
		return u, fmt.Errorf("%s/stat: too few fields", dir)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	minflt, err3 := strconv.ParseInt(f[7], 10, 64)
	majflt, err4 := strconv.ParseInt(f[9], 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return u, fmt.Errorf("%s/stat: %w", dir, err)
	}
	u.CPUSeconds = float64(ut+st) / clockTicks
	u.PageFaults = minflt + majflt
	status, err := os.Open(dir + "/status")
	if err != nil {
		return u, err
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch k {
		case "VmRSS":
			u.RSSBytes = kib(v)
		case "VmHWM":
			u.PeakRSSBytes = kib(v)
		case "RssAnon":
			u.AnonRSSBytes = kib(v)
		}
	}
	return u, sc.Err()
}

// kib reads "  1234 kB".
func kib(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
	return n << 10
}

// DiskUsage is the space the files under dir take on disk (allocated
// blocks, as du counts them; sparse and preallocated files count what is
// allocated).
func DiskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking (Badger compaction)
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking (Badger compaction)
			}
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else if !d.IsDir() {
			total += info.Size()
		}
		return nil
	})
	return total, err
}

// machineBusy is the CPU time the whole machine has spent busy (user,
// nice, system, irq, softirq and steal of /proc/stat), in seconds.
func machineBusy() (float64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, false
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system . . irq softirq steal
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, false
		}
		busy += n
	}
	return float64(busy) / clockTicks, true
}

// memTotal is the machine's memory in bytes (/proc/meminfo), 0 if unknown.
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			return kib(v)
		}
	}
	return 0
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return ""
}
