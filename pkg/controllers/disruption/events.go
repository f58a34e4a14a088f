package disruption

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Event reasons the disruption controller emits on NodeClaims and Nodes
// (and one on NodePools).
const (
	ReasonDisruptionLaunching = "DisruptionLaunchingReplacement"
	ReasonDisruptionDeleting  = "DisruptionDeleting"
	ReasonDisruptionAbandoned = "DisruptionAbandoned"
	ReasonDisruptionBlocked   = "DisruptionBlocked"
	// ReasonBudgetExhausted is sent on a NodePool.
	ReasonBudgetExhausted = "DisruptionBudgetExhausted"
)

const eventAction = "Disrupt"

// maxNoteLength is the API server's limit on an event's note.
const maxNoteLength = 1024

type recorder struct{ r events.EventRecorder }

// each sends one event about every candidate's NodeClaim and Node.
func (r recorder) each(cmd Command, eventType, reason, note string) {
	if len(note) > maxNoteLength {
		note = note[:maxNoteLength]
	}
	for _, c := range cmd.Candidates {
		r.r.Eventf(c.Claim, nil, eventType, reason, eventAction, "%s", note)
		if c.Node != nil {
			r.r.Eventf(c.Node, c.Claim, eventType, reason, eventAction, "%s", note)
		}
	}
}

func (r recorder) launching(cmd Command, names []string) {
	r.each(cmd, corev1.EventTypeNormal, ReasonDisruptionLaunching,
		fmt.Sprintf("%s (%s): launching %v before draining; saving $%.4f/h", cmd.Reason, cmd.Method, names, cmd.SavingsPerHour))
}

func (r recorder) deleting(cmd Command) {
	r.each(cmd, corev1.EventTypeNormal, ReasonDisruptionDeleting,
		fmt.Sprintf("%s (%s): %s; saving $%.4f/h", cmd.Reason, cmd.Method, cmd.Action(), cmd.SavingsPerHour))
}

// blocked tells a node's owner why a method that wants the node (named
// by want) does not disrupt it.
func (r recorder) blocked(c *Candidate, want []string, why string) {
	note := fmt.Sprintf("%s, but %s", strings.Join(want, " and "), why)
	if len(note) > maxNoteLength {
		note = note[:maxNoteLength]
	}
	r.r.Eventf(c.Claim, nil, corev1.EventTypeNormal, ReasonDisruptionBlocked, eventAction, "%s", note)
	r.r.Eventf(c.Node, c.Claim, corev1.EventTypeNormal, ReasonDisruptionBlocked, eventAction, "%s", note)
}

// budgetExhausted tells a pool's owner that n nodes due for reason wait
// for its disruption budget.
func (r recorder) budgetExhausted(pool *v1.NodePool, reason v1.DisruptionReason, n, disrupting, notReady int) {
	r.r.Eventf(pool, nil, corev1.EventTypeNormal, ReasonBudgetExhausted, eventAction,
		"%d node(s) due for %s wait: the pool's disruption budget allows no more now (%d being disrupted, %d not Ready)",
		n, reason, disrupting, notReady)
}

func (r recorder) abandoned(cmd Command, why string) {
	r.each(cmd, corev1.EventTypeWarning, ReasonDisruptionAbandoned,
		fmt.Sprintf("%s (%s) abandoned: %s", cmd.Reason, cmd.Method, why))
}
