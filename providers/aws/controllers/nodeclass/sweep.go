package nodeclass

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"sigs.k8s.io/controller-runtime/pkg/log"

	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// sweepLoop runs Sweep every resync until ctx ends. It runs on the leader
// only (a manager runnable without NeedLeaderElection).
func (c *Controller) sweepLoop(ctx context.Context) error {
	for {
		if err := c.Sweep(ctx); err != nil {
			log.FromContext(ctx).Error(err, "sweeping orphaned instance profiles")
		}
		t := c.d.Clock.NewTimer(c.d.Resync)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// Sweep deletes this cluster's managed instance profiles that no node class
// uses any more (their role changed, or the controller was down when the node
// class went) and no live machine runs with. The profiles are found by name,
// so nothing has to be remembered across restarts.
func (c *Controller) Sweep(ctx context.Context) error {
	if c.d.IAM == nil {
		return nil
	}
	list := &awsv1.EC2NodeClassList{}
	if err := c.d.Client.List(ctx, list); err != nil {
		return fmt.Errorf("listing EC2NodeClasses: %w", err)
	}
	wanted := map[string]bool{}
	for _, nc := range list.Items {
		wanted[nc.Status.InstanceProfile] = true
		if nc.Spec.Role != "" {
			wanted[InstanceProfileName(c.d.ClusterName, nc.Spec.Role)] = true
		}
	}
	var errs []error
	pages := iam.NewListInstanceProfilesPaginator(c.d.IAM, &iam.ListInstanceProfilesInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing instance profiles: %w", err)
		}
		for _, p := range page.InstanceProfiles {
			name := aws.ToString(p.InstanceProfileName)
			if !managedProfile(c.d.ClusterName, name) || wanted[name] {
				continue
			}
			gone, err := deleteInstanceProfileIfUnused(ctx, c.d.IAM, c.d.EC2, c.d.ClusterName, name)
			if err != nil {
				errs = append(errs, err)
			} else if gone {
				log.FromContext(ctx).Info("deleted an instance profile no node class uses", "instanceProfile", name)
			}
		}
	}
	return errors.Join(errs...)
}
