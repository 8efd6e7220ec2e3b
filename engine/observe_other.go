//go:build !unix

package engine

// fsUsage is not measured on this platform: the filesystem series are left out.
func fsUsage(string) (avail, size uint64, err error) { return 0, 0, errNoFsUsage }
