package disruption

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

// execute starts a command: it taints the candidates so nothing new lands on
// them, then either deletes them (nothing to launch) or launches the
// replacements and leaves the deletion to progress, once they are Ready.
func (c *Controller) execute(ctx context.Context, st *ClusterState, cmd Command) error {
	logger := log.FromContext(ctx)
	for _, cand := range cmd.Candidates {
		if err := Taint(ctx, c.client, cand.Node); err != nil {
			return errors.Join(err, c.untaintAll(ctx, cmd))
		}
	}
	decisionsTotal.WithLabelValues(string(cmd.Reason), string(cmd.Action())).Inc()
	if len(cmd.Replacements) == 0 {
		logger.Info("disrupting", "command", cmd.String())
		return c.finish(ctx, cmd)
	}
	var created []*v1.NodeClaim
	for _, n := range cmd.Replacements {
		pool := st.Pools[n.NodePool]
		if pool == nil {
			err := fmt.Errorf("plan names nodepool %q, which is not in the cluster", n.NodePool)
			return errors.Join(err, c.rollback(ctx, cmd, created))
		}
		claim, err := ReplacementClaim(pool, n, cmd.Candidates[0].Claim, st.Now)
		if err != nil {
			return errors.Join(err, c.rollback(ctx, cmd, created))
		}
		if err := c.client.Create(ctx, claim); err != nil {
			err = fmt.Errorf("creating replacement nodeclaim in nodepool %s: %w", pool.Name, err)
			return errors.Join(err, c.rollback(ctx, cmd, created))
		}
		created = append(created, claim)
	}
	names := make([]string, 0, len(created))
	for _, claim := range created {
		names = append(names, claim.Name)
	}
	c.events.launching(cmd, created)
	logger.Info("launching replacements before draining", "command", cmd.String(), "replacements", names)
	c.pending = &pendingCommand{cmd: cmd, replacements: names, started: st.Now, seen: map[string]bool{}}
	return nil
}

// progress deletes the pending command's candidates once every replacement
// is Ready, and gives the command up when a replacement fails or takes too long.
func (c *Controller) progress(ctx context.Context, st *ClusterState) error {
	p := c.pending
	ready := 0
	for _, name := range p.replacements {
		claim := claimNamed(st, name)
		if claim == nil && !p.seen[name] {
			continue
		}
		if claim == nil || claim.DeletionTimestamp != nil {
			return c.abandon(ctx, fmt.Sprintf("replacement nodeclaim %s is gone", name))
		}
		p.seen[name] = true
		if conditions.IsTrue(claim.Status.Conditions, v1.ConditionReady) {
			ready++
		}
	}
	if ready == len(p.replacements) {
		c.pending = nil
		log.FromContext(ctx).Info("replacements are ready; draining", "command", p.cmd.String())
		return c.finish(ctx, p.cmd)
	}
	if waited := st.Now.Sub(p.started); waited >= c.opts.ReplacementTimeout {
		return c.abandon(ctx, fmt.Sprintf("replacements not Ready after %s", waited))
	}
	return nil
}

// finish deletes the candidates' claims; termination drains them.
func (c *Controller) finish(ctx context.Context, cmd Command) error {
	c.events.deleting(cmd)
	var errs []error
	for _, cand := range cmd.Candidates {
		if err := c.client.Delete(ctx, cand.Claim); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting nodeclaim %s: %w", cand.Name(), err))
		}
	}
	if cmd.SavingsPerHour > 0 {
		savingsTotal.Add(cmd.SavingsPerHour)
	}
	return errors.Join(errs...)
}

// abandon gives up the pending command: the candidates stay and take pods
// again, and replacements that were launched for it are deleted.
func (c *Controller) abandon(ctx context.Context, why string) error {
	p := c.pending
	c.pending = nil
	log.FromContext(ctx).Info("abandoning disruption", "command", p.cmd.String(), "why", why)
	c.events.abandoned(p.cmd, why)
	abandonedTotal.WithLabelValues(string(p.cmd.Reason)).Inc()
	var claims []*v1.NodeClaim
	for _, name := range p.replacements {
		claims = append(claims, &v1.NodeClaim{})
		claims[len(claims)-1].Name = name
	}
	return c.rollback(ctx, p.cmd, claims)
}

func (c *Controller) rollback(ctx context.Context, cmd Command, created []*v1.NodeClaim) error {
	var errs []error
	for _, claim := range created {
		if err := c.client.Delete(ctx, claim); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting replacement nodeclaim %s: %w", claim.Name, err))
		}
	}
	return errors.Join(append(errs, c.untaintAll(ctx, cmd))...)
}

func (c *Controller) untaintAll(ctx context.Context, cmd Command) error {
	var errs []error
	for _, cand := range cmd.Candidates {
		errs = append(errs, Untaint(ctx, c.client, cand.Node.Name))
	}
	return errors.Join(errs...)
}

// releaseOrphans removes the disrupted taint from nodes no command owns any
// more, e.g. after a restart lost the pending command: termination taints
// only claims being deleted, and interruption marks its claims Interrupted.
// A node must look orphaned on two passes in a row, because the cache may
// deliver another controller's taint before the claim change that explains it.
func (c *Controller) releaseOrphans(ctx context.Context, st *ClusterState) error {
	var errs []error
	orphans := map[string]bool{}
	for _, claim := range st.Claims {
		node := st.NodeOfClaim[claim.Name]
		if node == nil || !hasDisruptedTaint(node) || claim.DeletionTimestamp != nil || node.DeletionTimestamp != nil ||
			conditions.IsTrue(claim.Status.Conditions, v1.ConditionInterrupted) {
			continue
		}
		orphans[node.Name] = true
		if !c.orphans[node.Name] {
			continue
		}
		log.FromContext(ctx).Info("releasing node tainted by a disruption that no longer runs", "node", klog.KObj(node))
		errs = append(errs, Untaint(ctx, c.client, node.Name))
	}
	c.orphans = orphans
	return errors.Join(errs...)
}

// Taint adds Stowage's disrupted taint to node, so the scheduler places
// nothing new on it.
func Taint(ctx context.Context, c client.Client, node *corev1.Node) error {
	fresh := &corev1.Node{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(node), fresh); err != nil {
		return fmt.Errorf("getting node %s to taint it: %w", node.Name, err)
	}
	if hasDisruptedTaint(fresh) {
		return nil
	}
	stored := fresh.DeepCopy()
	fresh.Spec.Taints = append(fresh.Spec.Taints, disruptedTaint)
	if err := c.Patch(ctx, fresh, client.MergeFromWithOptions(stored, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("tainting node %s: %w", node.Name, err)
	}
	return nil
}

// Untaint removes Stowage's disrupted taint from the named node, if present.
func Untaint(ctx context.Context, c client.Client, name string) error {
	node := &corev1.Node{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, node); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("getting node %s to untaint it: %w", name, err))
	}
	stored := node.DeepCopy()
	kept := node.Spec.Taints[:0]
	for _, t := range node.Spec.Taints {
		if t.Key != v1.DisruptedTaintKey {
			kept = append(kept, t)
		}
	}
	if len(kept) == len(stored.Spec.Taints) {
		return nil
	}
	node.Spec.Taints = kept
	if err := c.Patch(ctx, node, client.MergeFromWithOptions(stored, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("untainting node %s: %w", name, err))
	}
	return nil
}
