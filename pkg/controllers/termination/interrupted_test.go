package termination

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// A spot reclaim takes the machine at its deadline, PDB or not. A pod a PDB
// holds until then is killed with the machine, without its grace period;
// deleted at the deadline minus its grace period it stops cleanly. The claim
// has no terminationGracePeriod: the interruption's deadline alone bounds
// the drain.
func TestDrainDeletesPodsInTimeForTheInterruptionDeadline(t *testing.T) {
	grace := func(s int64) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr.To(s) }
	}
	e := newEnv(t, nil, pod("web"), pod("slow", grace(90)))
	claim := &v1.NodeClaim{}
	if err := e.client.Get(context.Background(), client.ObjectKey{Name: "c1"}, claim); err != nil {
		t.Fatal(err)
	}
	claim.Annotations = map[string]string{v1.AnnotationInterruption: "SpotReclaim deadline=" + start.Add(2*time.Minute).Format(time.RFC3339)}
	if err := e.client.Update(context.Background(), claim); err != nil {
		t.Fatal(err)
	}
	e.pdbBlocks.Store(true)
	for _, step := range []struct {
		at   time.Duration
		want []string
	}{
		{29 * time.Second, []string{"slow", "web"}}, // a PDB holds both
		{30 * time.Second, []string{"web"}},         // 90 s before the deadline: slow goes
		{89 * time.Second, []string{"web"}},
		{90 * time.Second, nil}, // 30 s (the default) before it: web goes
	} {
		e.clock.SetTime(start.Add(step.at))
		if _, err := e.reconcileClaim(t); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(step.want, e.podsLeft(t)); diff != "" {
			t.Errorf("at deadline-%s: pods (-want +got):\n%s", 2*time.Minute-step.at, diff)
		}
	}
}

// A pod whose own grace period is longer than what is left before an
// interruption's deadline gets what is left, as for a terminationGracePeriod.
func TestGraceWithinTheInterruptionDeadline(t *testing.T) {
	deleted := metav1.NewTime(start)
	claim := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &deleted,
		Annotations: map[string]string{v1.AnnotationInterruption: "SpotReclaim deadline=" + start.Add(2*time.Minute).Format(time.RFC3339)}}}
	slow := pod("slow", func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](300) })
	for _, tc := range []struct {
		name  string
		grace *time.Duration
		want  string
	}{
		{"no terminationGracePeriod", nil, "120"},
		{"a later terminationGracePeriod", ptr.To(time.Hour), "120"},
		{"an earlier terminationGracePeriod", ptr.To(time.Minute), "60"},
	} {
		c := claim.DeepCopy()
		if tc.grace != nil {
			c.Spec.TerminationGracePeriod = &metav1.Duration{Duration: *tc.grace}
		}
		opts := graceWithin(start, c, slow)
		got := "own"
		if len(opts) > 0 {
			o := &client.DeleteOptions{}
			o.ApplyOptions(opts)
			got = fmt.Sprint(*o.GracePeriodSeconds)
		}
		if got != tc.want {
			t.Errorf("%s: grace %s, want %s", tc.name, got, tc.want)
		}
	}
}
