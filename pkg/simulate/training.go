package simulate

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"

	"github.com/stowage-k8s/stowage/pkg/controllers/provisioningrequest"
	"github.com/stowage-k8s/stowage/pkg/manifest"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// requestPods are the pods the manifests' ProvisioningRequests ask capacity
// for, planned as gangs like the controller plans them.
func requestPods(set *manifest.Set) ([]*corev1.Pod, error) {
	templates := map[string]*corev1.PodTemplate{}
	for _, t := range set.PodTemplates {
		templates[t.Namespace+"/"+t.Name] = t
	}
	var out []*corev1.Pod
	for _, pr := range set.ProvisioningRequests {
		pods, err := provisioningrequest.StandIns(pr, func(name string) (*corev1.PodTemplate, error) {
			t, ok := templates[pr.Namespace+"/"+name]
			if !ok {
				return nil, fmt.Errorf("podtemplate %s/%s is not in the manifests", pr.Namespace, name)
			}
			return t, nil
		})
		if err != nil {
			return nil, fmt.Errorf("ProvisioningRequest %s/%s: %w", pr.Namespace, pr.Name, err)
		}
		out = append(out, pods...)
	}
	return out, nil
}

// devices is what the manifests' pods' ResourceClaims are planned against;
// nil when no pod uses claims.
func devices(set *manifest.Set, pods []*corev1.Pod) *scheduling.DRA {
	if !scheduling.UsesResourceClaims(pods) {
		return nil
	}
	d := &scheduling.DRA{
		Classes:   map[string]*resourceapi.DeviceClass{},
		Templates: map[string]*resourceapi.ResourceClaimTemplate{},
		Claims:    map[string]*resourceapi.ResourceClaim{},
	}
	for _, c := range set.DeviceClasses {
		d.Classes[c.Name] = c
	}
	for _, t := range set.ResourceClaimTemplates {
		d.Templates[t.Namespace+"/"+t.Name] = t
	}
	for _, c := range set.ResourceClaims {
		d.Claims[c.Namespace+"/"+c.Name] = c
	}
	return d
}

// manifestSizes sizes opted-in gangs from the manifests: an Indexed Job
// runs the pods it expanded into. JobSets are not expanded by simulate.
type manifestSizes struct{ set *manifest.Set }

func (m manifestSizes) IndexedJobSize(ns, name string) (int, error) {
	n, ok := m.set.JobPods[ns+"/"+name]
	if !ok {
		return 0, fmt.Errorf("job %s/%s is not in the manifests", ns, name)
	}
	return n, nil
}

func (m manifestSizes) JobSetSize(ns, name string) (int, error) {
	return 0, fmt.Errorf("jobset %s/%s: simulate does not expand JobSets", ns, name)
}

// LeaderWorkerSetLeaderFirst is false: simulate does not read
// LeaderWorkerSets, so a replica's pods given to it are planned together.
func (m manifestSizes) LeaderWorkerSetLeaderFirst(string, string) (bool, error) { return false, nil }
