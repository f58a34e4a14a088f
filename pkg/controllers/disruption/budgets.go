package disruption

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// cronParser accepts the five-field form and descriptors such as @daily, the
// same syntax Kubernetes CronJobs use.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// AllowedDisruptions returns how many more of a pool's nodes may be disrupted
// for reason right now: the minimum over every active budget that applies to
// the reason, less the nodes already being disrupted. A pool with no budgets
// allows 10% of its nodes, as the API's default does.
//
// Percentages round up so that a small pool can still make progress (10% of
// 3 nodes is 1), except that "0%" always means zero.
func AllowedDisruptions(pool *v1.NodePool, reason v1.DisruptionReason, totalNodes, disrupting int, now time.Time) (int, error) {
	budgets := pool.Spec.Disruption.Budgets
	if len(budgets) == 0 {
		budgets = []v1.Budget{{Nodes: "10%"}}
	}
	allowed := math.MaxInt
	for i, b := range budgets {
		if !appliesTo(b, reason) {
			continue
		}
		active, err := isActive(b, now)
		if err != nil {
			return 0, fmt.Errorf("nodepool %s: spec.disruption.budgets[%d]: %w", pool.Name, i, err)
		}
		if !active {
			continue
		}
		n, err := budgetNodes(b.Nodes, totalNodes)
		if err != nil {
			return 0, fmt.Errorf("nodepool %s: spec.disruption.budgets[%d].nodes: %w", pool.Name, i, err)
		}
		allowed = min(allowed, n)
	}
	if allowed == math.MaxInt {
		// No active budget applies: nothing caps this reason.
		allowed = totalNodes
	}
	return max(0, allowed-disrupting), nil
}

func appliesTo(b v1.Budget, reason v1.DisruptionReason) bool {
	if len(b.Reasons) == 0 {
		return true
	}
	for _, r := range b.Reasons {
		if r == reason {
			return true
		}
	}
	return false
}

// isActive reports whether now falls in one of the budget's windows: the
// schedule's most recent firing at or before now, plus duration.
func isActive(b v1.Budget, now time.Time) (bool, error) {
	if b.Schedule == nil {
		return true, nil
	}
	if b.Duration == nil {
		return false, fmt.Errorf("schedule %q needs a duration", *b.Schedule)
	}
	sched, err := cronParser.Parse(*b.Schedule)
	if err != nil {
		return false, fmt.Errorf("schedule %q: %w", *b.Schedule, err)
	}
	now = now.UTC()
	// Windows are [firing, firing+duration). The earliest firing that could
	// still cover now is the first one strictly after now-duration, which is
	// what Next returns: a window that ends at now does not hide one that
	// starts at now.
	firing := sched.Next(now.Add(-b.Duration.Duration))
	return !firing.After(now) && now.Before(firing.Add(b.Duration.Duration)), nil
}

func budgetNodes(nodes string, total int) (int, error) {
	if strings.HasSuffix(nodes, "%") {
		pct, err := strconv.Atoi(strings.TrimSuffix(nodes, "%"))
		if err != nil || pct < 0 || pct > 100 {
			return 0, fmt.Errorf("%q is not a percentage between 0%% and 100%%", nodes)
		}
		return int(math.Ceil(float64(total) * float64(pct) / 100)), nil
	}
	n, err := strconv.Atoi(nodes)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is neither a node count nor a percentage", nodes)
	}
	return n, nil
}
