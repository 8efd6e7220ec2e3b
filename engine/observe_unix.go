//go:build unix

package engine

import "syscall"

// fsUsage returns the bytes available to an unprivileged user and the size
// of the filesystem that holds path.
func fsUsage(path string) (avail, size uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	bs := uint64(st.Bsize) //nolint:unconvert // int64 on Linux, uint32 on Darwin
	return uint64(st.Bavail) * bs, uint64(st.Blocks) * bs, nil
}
