//go:build race

package scenarios

// raceEnabled skips the generated scenarios in tests under the race detector,
// where solving 10,000 pods takes minutes; the benchmarks measure them.
const raceEnabled = true
