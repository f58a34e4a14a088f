package manifest

import (
	"strconv"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"

	"k8s.io/apimachinery/pkg/util/validation/field"

	provreqv1 "github.com/stowage-k8s/stowage/pkg/apis/provisioningrequest/v1"
	"github.com/stowage-k8s/stowage/pkg/validation"
)

// What training and DRA manifests add to a Set.
type trainingObjects struct {
	// DeviceClasses, ResourceClaimTemplates and ResourceClaims are what pods'
	// ResourceClaims are planned against (resource.k8s.io/v1).
	DeviceClasses          []*resourceapi.DeviceClass
	ResourceClaimTemplates []*resourceapi.ResourceClaimTemplate
	ResourceClaims         []*resourceapi.ResourceClaim
	// ProvisioningRequests ask for capacity for the pods of PodTemplates.
	ProvisioningRequests []*provreqv1.ProvisioningRequest
	PodTemplates         []*corev1.PodTemplate
	// JobPods is how many pods each Job (namespace/name) runs at once, for
	// planning Indexed Jobs as gangs.
	JobPods map[string]int
}

func (s *trainingObjects) appendTraining(o *trainingObjects) {
	s.DeviceClasses = append(s.DeviceClasses, o.DeviceClasses...)
	s.ResourceClaimTemplates = append(s.ResourceClaimTemplates, o.ResourceClaimTemplates...)
	s.ResourceClaims = append(s.ResourceClaims, o.ResourceClaims...)
	s.ProvisioningRequests = append(s.ProvisioningRequests, o.ProvisioningRequests...)
	s.PodTemplates = append(s.PodTemplates, o.PodTemplates...)
	for k, v := range o.JobPods {
		if s.JobPods == nil {
			s.JobPods = map[string]int{}
		}
		s.JobPods[k] = v
	}
}

func decodeDeviceClass(d *decoder, obj string, j []byte) error {
	var o resourceapi.DeviceClass
	if err := d.decodeTyped(obj, j, &o); err != nil {
		return err
	}
	if o.Namespace != "" {
		return d.errorf(obj, "metadata.namespace", "DeviceClasses are cluster-scoped; remove the namespace")
	}
	for i, s := range o.Spec.Selectors {
		if s.CEL == nil || s.CEL.Expression == "" {
			return d.errorf(obj, "spec.selectors["+strconv.Itoa(i)+"].cel.expression", "required")
		}
	}
	d.set.DeviceClasses = append(d.set.DeviceClasses, &o)
	return nil
}

func decodeResourceClaimTemplate(d *decoder, obj string, j []byte) error {
	var o resourceapi.ResourceClaimTemplate
	if err := d.decodeTyped(obj, j, &o); err != nil {
		return err
	}
	if field, err := checkDeviceRequests(o.Spec.Spec.Devices.Requests, "spec.spec.devices.requests"); err != nil {
		return d.wrap(obj, field, err)
	}
	o.Namespace = namespaceOrDefault(o.Namespace)
	d.set.ResourceClaimTemplates = append(d.set.ResourceClaimTemplates, &o)
	return nil
}

func decodeResourceClaim(d *decoder, obj string, j []byte) error {
	var o resourceapi.ResourceClaim
	if err := d.decodeTyped(obj, j, &o); err != nil {
		return err
	}
	if field, err := checkDeviceRequests(o.Spec.Devices.Requests, "spec.devices.requests"); err != nil {
		return d.wrap(obj, field, err)
	}
	o.Namespace = namespaceOrDefault(o.Namespace)
	d.set.ResourceClaims = append(d.set.ResourceClaims, &o)
	return nil
}

// checkDeviceRequests catches what the API server would refuse and the
// planner could not read: a request needs a name and exactly one of exactly
// or firstAvailable, each naming a device class.
func checkDeviceRequests(reqs []resourceapi.DeviceRequest, field string) (string, error) {
	if len(reqs) == 0 {
		return field, errRequired
	}
	for i, r := range reqs {
		at := field + "[" + strconv.Itoa(i) + "]"
		switch {
		case r.Name == "":
			return at + ".name", errRequired
		case (r.Exactly == nil) == (len(r.FirstAvailable) == 0):
			return at, errExactlyOrFirst
		case r.Exactly != nil && r.Exactly.DeviceClassName == "":
			return at + ".exactly.deviceClassName", errRequired
		}
		for k, s := range r.FirstAvailable {
			if s.DeviceClassName == "" {
				return at + ".firstAvailable[" + strconv.Itoa(k) + "].deviceClassName", errRequired
			}
		}
	}
	return "", nil
}

func decodePodTemplate(d *decoder, obj string, j []byte) error {
	var o corev1.PodTemplate
	if err := d.decodeTyped(obj, j, &o); err != nil {
		return err
	}
	if len(o.Template.Spec.Containers) == 0 {
		return d.errorf(obj, "template.spec.containers", "at least one container is required")
	}
	// Its pods are planned like any other: the same quantity checks.
	if err := d.fieldErrors(obj, append(validation.PodSpec(field.NewPath("template", "spec"), &o.Template.Spec),
		validation.Gang(field.NewPath("template", "metadata", "labels"), o.Template.Labels)...)); err != nil {
		return err
	}
	o.Namespace = namespaceOrDefault(o.Namespace)
	d.set.PodTemplates = append(d.set.PodTemplates, &o)
	return nil
}

func decodeProvisioningRequest(d *decoder, obj string, j []byte) error {
	var o provreqv1.ProvisioningRequest
	if err := d.decodeTyped(obj, j, &o); err != nil {
		return err
	}
	if len(o.Spec.PodSets) == 0 {
		return d.errorf(obj, "spec.podSets", "at least one pod set is required")
	}
	pods := 0
	for i, ps := range o.Spec.PodSets {
		at := "spec.podSets[" + strconv.Itoa(i) + "]"
		if ps.PodTemplateRef.Name == "" {
			return d.errorf(obj, at+".podTemplateRef.name", "required")
		}
		if ps.Count < 1 || ps.Count > MaxPodsPerObject {
			return d.errorf(obj, at+".count", "must be between 1 and %d, got %d", MaxPodsPerObject, ps.Count)
		}
		pods += int(ps.Count)
		// Its pods count toward --max-pods like a workload's replicas.
		if err := d.admit(obj, pods); err != nil {
			e := err.(*Error)
			e.Field = at + ".count"
			return e
		}
	}
	d.loader.requested += pods
	o.Namespace = namespaceOrDefault(o.Namespace)
	d.set.ProvisioningRequests = append(d.set.ProvisioningRequests, &o)
	return nil
}

// legacyJobNameLabel is the Job controller's older name label, still set on
// every Job pod and what many selectors use.
const legacyJobNameLabel = "job-name"

// jobLabels labels a Job's pods as the Job controller does (its name under
// both keys; an Indexed Job's completion index as label and annotation), so
// selectors written against them match and Indexed Jobs can be planned as gangs.
func jobLabels(pods []*corev1.Pod, job *batchv1.Job) {
	indexed := job.Spec.CompletionMode != nil && *job.Spec.CompletionMode == batchv1.IndexedCompletion
	for i, p := range pods {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		p.Labels[batchv1.JobNameLabel] = job.Name
		p.Labels[legacyJobNameLabel] = job.Name
		if !indexed {
			continue
		}
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Labels[batchv1.JobCompletionIndexAnnotation] = strconv.Itoa(i)
		p.Annotations[batchv1.JobCompletionIndexAnnotation] = strconv.Itoa(i)
	}
}
