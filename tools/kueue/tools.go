//go:build tools

// Package tools pins Kueue, whose manager the Kueue end-to-end test runs
// against Stowage (make kueue builds it into bin/kueue). It lives in its own
// module so Kueue's dependencies never touch Stowage's go.mod.
package tools

import _ "sigs.k8s.io/kueue/cmd/kueue"
