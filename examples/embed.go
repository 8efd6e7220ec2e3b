// Package examples ships the example rule files, so that kairos demo and
// the tests run them from any directory.
package examples

import "embed"

// Rules holds rules/*.yaml.
//
//go:embed rules/*.yaml
var Rules embed.FS
