//go:build race

package state_test

// raceEnabled tells whether the race detector is on (it allocates).
const raceEnabled = true
