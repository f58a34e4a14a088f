package disruption

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	"github.com/stowage-k8s/stowage/pkg/utils/taints"
)

// Annotations that record a command on its NodeClaims, so that a command
// waiting for its replacements survives a restart or a leader change.
const (
	// AnnotationCommand on a candidate holds its command (commandRecord, JSON).
	AnnotationCommand = v1.Group + "/disruption-command"
	// AnnotationReplacementFor on a replacement names its command's ID, or
	// InterruptionReplacementPrefix and the interrupted claim's name.
	AnnotationReplacementFor = v1.Group + "/replacement-for"
	// InterruptionReplacementPrefix starts the replacement-for value of the
	// claims the interruption controller launches: "interruption/<claim>".
	InterruptionReplacementPrefix = "interruption/"
)

// commandRecord is what a candidate's annotation says about its command.
type commandRecord struct {
	ID     string              `json:"id"`
	Method string              `json:"method"`
	Reason v1.DisruptionReason `json:"reason"`
	// Replacements is how many replacement claims the command launches.
	Replacements   int       `json:"replacements"`
	Started        time.Time `json:"started"`
	SavingsPerHour float64   `json:"savingsPerHour"`
}

// inflight is a command waiting for its replacements to become Ready.
type inflight struct {
	rec          commandRecord
	cmd          Command
	replacements []string
	// seen records replacements the cache has shown: one it has not shown
	// yet is still on its way, one that was shown and is missing is gone.
	seen map[string]bool
}

// execute starts a command: it records the command on the candidates, taints
// them so nothing new lands on them, then either deletes them (nothing to
// launch) or launches the replacements and leaves the deletion to
// progressAll, once they are Ready.
func (c *Controller) execute(ctx context.Context, st *ClusterState, cmd Command) error {
	rec := commandRecord{
		ID:     fmt.Sprintf("%s-%d", cmd.Candidates[0].Name(), st.Now.UnixMilli()),
		Method: cmd.Method, Reason: cmd.Reason, Replacements: len(cmd.Replacements),
		Started: st.Now.UTC().Truncate(time.Second), SavingsPerHour: cmd.SavingsPerHour,
	}
	for _, cand := range cmd.Candidates {
		if err := c.annotate(ctx, cand.Claim.Name, &rec); err != nil {
			return errors.Join(err, c.rollback(ctx, cmd, nil))
		}
		if err := Taint(ctx, c.client, cand.Node); err != nil {
			return errors.Join(err, c.rollback(ctx, cmd, nil))
		}
	}
	decisionsTotal.WithLabelValues(string(cmd.Reason), string(cmd.Action())).Inc()
	if len(cmd.Replacements) == 0 {
		log.FromContext(ctx).Info("disrupting", "command", cmd.String())
		return c.finish(ctx, cmd)
	}
	var created []string
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
		claim.Annotations[AnnotationReplacementFor] = rec.ID
		if err := c.client.Create(ctx, claim); err != nil {
			err = fmt.Errorf("creating replacement nodeclaim in nodepool %s: %w", pool.Name, err)
			return errors.Join(err, c.rollback(ctx, cmd, created))
		}
		created = append(created, claim.Name)
	}
	c.events.launching(cmd, created)
	log.FromContext(ctx).Info("launching replacements before draining", "command", cmd.String(), "replacements", created)
	c.inflight[rec.ID] = &inflight{rec: rec, cmd: cmd, replacements: created, seen: map[string]bool{}}
	return nil
}

// annotate records the command on a candidate's claim.
func (c *Controller) annotate(ctx context.Context, name string, rec *commandRecord) error {
	claim := &v1.NodeClaim{}
	if err := c.client.Get(ctx, client.ObjectKey{Name: name}, claim); err != nil {
		return fmt.Errorf("getting nodeclaim %s to record its disruption: %w", name, err)
	}
	value := ""
	if rec != nil {
		b, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encoding the disruption of nodeclaim %s: %w", name, err)
		}
		value = string(b)
	}
	reason := ""
	if rec != nil {
		reason = string(rec.Reason)
	}
	if claim.Annotations[AnnotationCommand] == value && claim.Annotations[v1.AnnotationDisruptionReason] == reason {
		return nil
	}
	stored := claim.DeepCopy()
	if value == "" {
		delete(claim.Annotations, AnnotationCommand)
		delete(claim.Annotations, v1.AnnotationDisruptionReason)
	} else {
		if claim.Annotations == nil {
			claim.Annotations = map[string]string{}
		}
		claim.Annotations[AnnotationCommand] = value
		claim.Annotations[v1.AnnotationDisruptionReason] = reason
	}
	if err := c.client.Patch(ctx, claim, client.MergeFrom(stored)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("recording the disruption of nodeclaim %s: %w", name, err))
	}
	return nil
}

// progressAll advances every command waiting for replacements: it deletes
// the candidates once every replacement is Ready, and gives a command up
// when a replacement fails or takes too long. Commands are independent: a
// slow replacement holds only its own.
func (c *Controller) progressAll(ctx context.Context, st *ClusterState) error {
	ids := make([]string, 0, len(c.inflight))
	for id := range c.inflight {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var errs []error
	for _, id := range ids {
		errs = append(errs, c.progress(ctx, st, c.inflight[id]))
	}
	return joinErrs(errs...)
}

// unseenReplacement is how long a replacement may stay out of the cache
// after its command started before it counts as gone: the cache lags by
// far less, and a claim deleted at once (a launch refused outright) never
// shows, which would otherwise hold the candidates cordoned and the budget
// taken for the whole ReplacementTimeout.
const unseenReplacement = 2 * time.Minute

func (c *Controller) progress(ctx context.Context, st *ClusterState, p *inflight) error {
	ready := 0
	for _, name := range p.replacements {
		claim := claimNamed(st, name)
		if claim == nil && !p.seen[name] {
			if st.Now.Sub(p.rec.Started) < unseenReplacement {
				continue
			}
			return c.abandon(ctx, p, fmt.Sprintf("replacement nodeclaim %s never appeared", name))
		}
		if claim == nil || claim.DeletionTimestamp != nil {
			return c.abandon(ctx, p, fmt.Sprintf("replacement nodeclaim %s is gone", name))
		}
		p.seen[name] = true
		if conditions.IsTrue(claim.Status.Conditions, v1.ConditionReady) {
			ready++
		}
	}
	if ready == len(p.replacements) {
		delete(c.inflight, p.rec.ID)
		log.FromContext(ctx).Info("replacements are ready; draining", "command", p.cmd.String())
		return c.finish(ctx, p.cmd)
	}
	if waited := st.Now.Sub(p.rec.Started); waited >= c.opts.ReplacementTimeout {
		return c.abandon(ctx, p, fmt.Sprintf("replacements not Ready after %s", waited.Round(time.Second)))
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
	return joinErrs(errs...)
}

// abandon gives a command up: the candidates stay and take pods again, and
// the replacements launched for it are deleted.
func (c *Controller) abandon(ctx context.Context, p *inflight, why string) error {
	delete(c.inflight, p.rec.ID)
	log.FromContext(ctx).Info("abandoning disruption", "command", p.cmd.String(), "why", why)
	c.events.abandoned(p.cmd, why)
	abandonedTotal.WithLabelValues(string(p.rec.Reason)).Inc()
	return c.rollback(ctx, p.cmd, p.replacements)
}

// rollback deletes replacements, forgets the command on the candidates and
// untaints them.
func (c *Controller) rollback(ctx context.Context, cmd Command, replacements []string) error {
	var errs []error
	for _, name := range replacements {
		claim := &v1.NodeClaim{}
		claim.Name = name
		if err := c.client.Delete(ctx, claim); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting replacement nodeclaim %s: %w", name, err))
		}
	}
	for _, cand := range cmd.Candidates {
		errs = append(errs, c.annotate(ctx, cand.Claim.Name, nil))
		// A candidate the cloud has since interrupted, or whose claim is
		// being deleted, keeps its cordon: the interruption or termination
		// controller drains it.
		if cand.Node != nil && !c.drainedElsewhere(ctx, cand.Claim.Name) {
			errs = append(errs, Untaint(ctx, c.client, cand.Node.Name))
		}
	}
	return joinErrs(errs...)
}

// drainedElsewhere reports whether the named claim is Interrupted or being
// deleted now (or cannot be read, which keeps a cordon rather than lifting
// it wrongly): another controller owns its node's taint.
func (c *Controller) drainedElsewhere(ctx context.Context, name string) bool {
	claim := &v1.NodeClaim{}
	if err := c.client.Get(ctx, client.ObjectKey{Name: name}, claim); err != nil {
		return client.IgnoreNotFound(err) != nil
	}
	return claim.DeletionTimestamp != nil || conditions.IsTrue(claim.Status.Conditions, v1.ConditionInterrupted)
}

// ReplacedBy is the AnnotationReplacementFor values of the claims launched
// to replace claim: its disruption command's ID, if it is part of one, and
// the interruption controller's InterruptionReplacementPrefix and its name.
func ReplacedBy(claim *v1.NodeClaim) []string {
	out := []string{InterruptionReplacementPrefix + claim.Name}
	if id := CommandID(claim); id != "" {
		out = append(out, id)
	}
	return out
}

// CommandID is the ID of the disruption command claim is part of ("" for
// none): its replacements carry it in AnnotationReplacementFor.
func CommandID(claim *v1.NodeClaim) string {
	rec := commandRecord{}
	if raw := claim.Annotations[AnnotationCommand]; raw == "" || json.Unmarshal([]byte(raw), &rec) != nil {
		return ""
	}
	return rec.ID
}

// resume adopts the commands recorded on claims that this controller does
// not know, e.g. after a leader change: a command whose replacements are
// all there waits for them as before; one that lost some (the old leader
// stopped while creating them) is given up.
func (c *Controller) resume(ctx context.Context, st *ClusterState) {
	found := map[string]*inflight{}
	for _, claim := range st.Claims {
		raw := claim.Annotations[AnnotationCommand]
		if raw == "" || claim.DeletionTimestamp != nil {
			continue
		}
		rec := commandRecord{}
		if err := json.Unmarshal([]byte(raw), &rec); err != nil || rec.ID == "" {
			log.FromContext(ctx).Error(err, "unreadable disruption record; forgetting it", "nodeclaim", claim.Name)
			_ = c.annotate(ctx, claim.Name, nil)
			continue
		}
		if _, known := c.inflight[rec.ID]; known {
			continue
		}
		p := found[rec.ID]
		if p == nil {
			p = &inflight{rec: rec, cmd: Command{Method: rec.Method, Reason: rec.Reason, SavingsPerHour: rec.SavingsPerHour}, seen: map[string]bool{}}
			found[rec.ID] = p
		}
		p.cmd.Candidates = append(p.cmd.Candidates, &Candidate{Claim: claim, Node: st.NodeOfClaim[claim.Name]})
	}
	if len(found) == 0 {
		return
	}
	for _, claim := range st.Claims {
		if p := found[claim.Annotations[AnnotationReplacementFor]]; p != nil && claim.DeletionTimestamp == nil {
			p.replacements = append(p.replacements, claim.Name)
			p.seen[claim.Name] = true
		}
	}
	for id, p := range found {
		untainted := slices.ContainsFunc(p.cmd.Candidates, func(c *Candidate) bool { return c.Node != nil && !hasDisruptedTaint(c.Node) })
		if untainted {
			// The earlier leader stopped while starting it: pods may have
			// landed on the untainted node since, and nothing was checked
			// again. Rolled back; a later pass decides afresh.
			if err := c.abandon(ctx, p, "a candidate was never tainted: an earlier leader stopped while starting it"); err != nil {
				log.FromContext(ctx).Error(err, "abandoning a disruption found after a restart", "command", id)
			}
			continue
		}
		if len(p.replacements) < p.rec.Replacements {
			why := fmt.Sprintf("found %d of its %d replacements after a restart", len(p.replacements), p.rec.Replacements)
			if err := c.abandon(ctx, p, why); err != nil {
				log.FromContext(ctx).Error(err, "abandoning a disruption found after a restart", "command", id)
			}
			continue
		}
		log.FromContext(ctx).Info("resuming disruption recorded by an earlier leader", "command", p.cmd.String(),
			"replacements", p.replacements)
		c.inflight[id] = p
	}
}

// releaseOrphans removes the disrupted taint from nodes no command owns any
// more: termination taints only claims being deleted, interruption marks its
// claims Interrupted, and commands are recorded on their candidates. A node
// must look orphaned on two passes in a row, because the cache may deliver
// another controller's taint before the claim change that explains it.
func (c *Controller) releaseOrphans(ctx context.Context, st *ClusterState) error {
	owned := map[string]bool{}
	for _, p := range c.inflight {
		for _, cand := range p.cmd.Candidates {
			owned[cand.Claim.Name] = true
		}
	}
	var errs []error
	orphans := map[string]bool{}
	for _, claim := range st.Claims {
		node := st.NodeOfClaim[claim.Name]
		if node == nil || !hasDisruptedTaint(node) || claim.DeletionTimestamp != nil || node.DeletionTimestamp != nil ||
			owned[claim.Name] || claim.Annotations[AnnotationCommand] != "" ||
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
	return joinErrs(errs...)
}

// Taint adds Stowage's disrupted taint to node, so the scheduler places
// nothing new on it.
func Taint(ctx context.Context, c client.Client, node *corev1.Node) error {
	_, err := taints.Add(ctx, c, node.Name, disruptedTaint)
	return err
}

// Untaint removes Stowage's disrupted taint from the named node, if present.
func Untaint(ctx context.Context, c client.Client, name string) error {
	_, err := taints.Remove(ctx, c, name, v1.DisruptedTaintKey)
	return err
}

// joinErrs is errors.Join without the nils.
func joinErrs(errs ...error) error { return errors.Join(errs...) }
