package scheduling

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// maxVolumeTerms bounds the node selector terms a pod's volumes may multiply
// its affinity into; real pods have one or two terms per volume.
const maxVolumeTerms = 256

// AnnotationDefaultStorageClass marks the StorageClass a claim without a
// storageClassName gets.
const AnnotationDefaultStorageClass = "storageclass.kubernetes.io/is-default-class"

// annotationBetaDefaultStorageClass is AnnotationDefaultStorageClass's older
// name, which the API server still honours.
const annotationBetaDefaultStorageClass = "storageclass.beta.kubernetes.io/is-default-class"

// NormalizedTopologyKeys maps the topology keys CSI drivers and older
// Kubernetes versions put in PersistentVolume node affinity and StorageClass
// allowed topologies to the well-known labels instance types are described
// by. The CSI driver labels the node with its own key when it starts, in the
// same zone, so planning with the well-known key buys the right machine.
var NormalizedTopologyKeys = map[string]string{
	"failure-domain.beta.kubernetes.io/zone":   v1.LabelZone,
	"failure-domain.beta.kubernetes.io/region": v1.LabelRegion,
	"topology.ebs.csi.aws.com/zone":            v1.LabelZone,
	"topology.gke.io/zone":                     v1.LabelZone,
	"topology.disk.csi.azure.com/zone":         v1.LabelZone,
}

// Volumes is what the cluster holds that confines pods to where their
// storage is: PersistentVolumeClaims, PersistentVolumes and StorageClasses.
type Volumes struct {
	Claims  map[types.NamespacedName]*corev1.PersistentVolumeClaim
	Volumes map[string]*corev1.PersistentVolume
	Classes map[string]*storagev1.StorageClass
	// NodeLimits are the attach limits CSI drivers report per node (see
	// SetNodeLimits); nil when not read.
	NodeLimits map[string]map[corev1.ResourceName]int64
	// NodeZone, when set, tells a node's zone, for claims the scheduler
	// already chose a node for (AnnotationSelectedNode).
	NodeZone func(node string) (string, bool)
	// ClaimUser, when set, names a pod other than except (a UID) that runs
	// with claim namespace/name mounted, or returns "".
	ClaimUser func(namespace, claim string, except types.UID) string
}

// AnnotationSelectedNode is where the kube-scheduler records the node it
// chose for a claim that waits for its first consumer; the volume is then
// provisioned in that node's zone.
const AnnotationSelectedNode = "volume.kubernetes.io/selected-node"

// NewVolumes indexes the objects of a cluster or a set of manifests.
func NewVolumes(claims []*corev1.PersistentVolumeClaim, volumes []*corev1.PersistentVolume, classes []*storagev1.StorageClass) *Volumes {
	v := &Volumes{
		Claims:  make(map[types.NamespacedName]*corev1.PersistentVolumeClaim, len(claims)),
		Volumes: make(map[string]*corev1.PersistentVolume, len(volumes)),
		Classes: make(map[string]*storagev1.StorageClass, len(classes)),
	}
	for _, c := range claims {
		v.Claims[types.NamespacedName{Namespace: c.Namespace, Name: c.Name}] = c
	}
	for _, pv := range volumes {
		v.Volumes[pv.Name] = pv
	}
	for _, sc := range classes {
		v.Classes[sc.Name] = sc
	}
	return v
}

// UsesClaims reports whether a pod mounts PersistentVolumeClaims, directly or
// through generic ephemeral volumes.
func UsesClaims(pod *corev1.Pod) bool {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].PersistentVolumeClaim != nil || pod.Spec.Volumes[i].Ephemeral != nil {
			return true
		}
	}
	return false
}

// ErrVolumeNotReady marks a pod whose storage cannot be placed yet: a claim
// that does not exist, is being deleted, or waits for an immediate binding.
// Buying a node before then could buy it in the wrong zone; the
// kube-scheduler waits too.
var ErrVolumeNotReady = errors.New("volume not ready")

// WithTopology returns pod unchanged when its volumes do not confine it, else
// a copy whose required node affinity also carries their topology: the node
// affinity of each bound PersistentVolume, and the allowed topologies of the
// StorageClass of each claim not bound yet (WaitForFirstConsumer). The solver
// then only plans the pod where its volumes can be attached. An error
// wrapping ErrVolumeNotReady says which claim the pod waits for.
func (v *Volumes) WithTopology(pod *corev1.Pod) (*corev1.Pod, error) {
	return v.withTopology(pod, false)
}

// WithTopologyMoved is WithTopology for a running pod that a disruption
// would evict: the copy its controller makes gets generic ephemeral volumes
// of its own (the old claims go with the old pod), so those are placed as
// not created yet, by their class, rather than pinning the pod to where
// its old scratch volume lives.
func (v *Volumes) WithTopologyMoved(pod *corev1.Pod) (*corev1.Pod, error) {
	return v.withTopology(pod, true)
}

func (v *Volumes) withTopology(pod *corev1.Pod, moved bool) (*corev1.Pod, error) {
	var constraints [][]corev1.NodeSelectorTerm
	for i := range pod.Spec.Volumes {
		terms, err := v.volumeTerms(pod, &pod.Spec.Volumes[i], moved)
		if err != nil {
			return nil, err
		}
		if len(terms) > 0 {
			constraints = append(constraints, terms)
		}
	}
	if len(constraints) == 0 {
		return pod, nil
	}
	terms := requiredTerms(pod)
	if len(terms) == 0 {
		// Its own affinity matches no node; the volumes cannot widen that.
		return pod, nil
	}
	for _, c := range constraints {
		terms = prune(crossTerms(terms, c))
		if len(terms) > maxVolumeTerms {
			return nil, fmt.Errorf("pod %s/%s: its volumes' topologies multiply its node affinity into more than %d terms",
				pod.Namespace, pod.Name, maxVolumeTerms)
		}
	}
	out := pod.DeepCopy()
	if out.Spec.Affinity == nil {
		out.Spec.Affinity = &corev1.Affinity{}
	}
	if out.Spec.Affinity.NodeAffinity == nil {
		out.Spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	out.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: terms}
	return out, nil
}

// volumeTerms returns the alternatives (ORed) one volume allows, or nil when
// it allows any node.
func (v *Volumes) volumeTerms(pod *corev1.Pod, vol *corev1.Volume, moved bool) ([]corev1.NodeSelectorTerm, error) {
	ref, ok := claimRef(pod, vol)
	if !ok {
		return nil, nil
	}
	name, className, ephemeral := ref.name, ref.className, ref.ephemeral
	where := fmt.Sprintf("persistentvolumeclaim %s/%s of volume %s", pod.Namespace, name, vol.Name)
	pvc := v.Claims[types.NamespacedName{Namespace: pod.Namespace, Name: name}]
	if moved && ephemeral {
		pvc = nil
	}
	holder := ""
	if pvc != nil && v.ClaimUser != nil && slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteOncePod) {
		holder = v.ClaimUser(pod.Namespace, name, pod.UID)
	}
	switch {
	case pvc == nil && !ephemeral:
		return nil, fmt.Errorf("%s does not exist: %w", where, ErrVolumeNotReady)
	case pvc != nil && pvc.DeletionTimestamp != nil:
		return nil, fmt.Errorf("%s is being deleted: %w", where, ErrVolumeNotReady)
	case holder != "":
		// The scheduler keeps the pod off every node while another pod
		// holds the claim: a machine bought now would stand idle.
		return nil, fmt.Errorf("%s is ReadWriteOncePod and pod %s uses it: %w", where, holder, ErrVolumeNotReady)
	case pvc != nil && pvc.Spec.VolumeName != "":
		pv := v.Volumes[pvc.Spec.VolumeName]
		if pv == nil {
			return nil, fmt.Errorf("%s is bound to persistentvolume %s, which does not exist: %w", where, pvc.Spec.VolumeName, ErrVolumeNotReady)
		}
		return pvTerms(pv), nil
	case pvc != nil:
		className = claimClass(pvc.Annotations, pvc.Spec.StorageClassName)
	}
	sc, err := v.class(className)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if moved && ephemeral && sc != nil {
		// A new claim, bound wherever its class allows.
		return allowedTopologyTerms(sc.AllowedTopologies), nil
	}
	if sc == nil || sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
		// Bound as soon as it exists, wherever the provisioner likes: wait for it.
		return nil, fmt.Errorf("%s is not bound yet and its storage class binds immediately: %w", where, ErrVolumeNotReady)
	}
	if node := selectedNode(pvc); node != "" && v.NodeZone != nil {
		// The volume is being provisioned for that node, in its zone; a
		// machine elsewhere could not mount it. A node that is gone no
		// longer pins it (the annotation is dropped and a node chosen again).
		if zone, ok := v.NodeZone(node); ok && zone != "" {
			return []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
				{Key: v1.LabelZone, Operator: corev1.NodeSelectorOpIn, Values: []string{zone}}}}}, nil
		}
	}
	return allowedTopologyTerms(sc.AllowedTopologies), nil
}

// zoneLabels are the PersistentVolume labels the kube-scheduler's VolumeZone
// filter reads, whatever the volume's node affinity says: volumes made by
// older provisioners carry their zone only there.
var zoneLabels = []string{v1.LabelZone, v1.LabelRegion, "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region"}

// pvTerms are where pv can be mounted: its node affinity, each term also
// asking for the zone and region its labels name (a label may list several
// zones, joined by "__"); nil when it can be mounted anywhere.
func pvTerms(pv *corev1.PersistentVolume) []corev1.NodeSelectorTerm {
	var labelled []corev1.NodeSelectorRequirement
	for _, k := range zoneLabels {
		if val := pv.Labels[k]; val != "" {
			labelled = append(labelled, corev1.NodeSelectorRequirement{Key: normalizedKey(k), Operator: corev1.NodeSelectorOpIn, Values: strings.Split(val, "__")})
		}
	}
	var terms []corev1.NodeSelectorTerm
	if pv.Spec.NodeAffinity != nil && pv.Spec.NodeAffinity.Required != nil {
		terms = normalizeTerms(pv.Spec.NodeAffinity.Required.NodeSelectorTerms)
	}
	if len(labelled) == 0 {
		return terms
	}
	if terms == nil {
		return []corev1.NodeSelectorTerm{{MatchExpressions: labelled}}
	}
	for i := range terms {
		terms[i].MatchExpressions = append(terms[i].MatchExpressions, labelled...)
	}
	return terms
}

// volumeClaim is the claim a pod volume mounts.
type volumeClaim struct {
	name string
	// className is the ephemeral volume template's class; a claim's own
	// class is on the claim.
	className *string
	ephemeral bool
}

// claimRef returns the claim vol mounts, directly or as a generic ephemeral
// volume; ok is false for volumes of other kinds.
func claimRef(pod *corev1.Pod, vol *corev1.Volume) (ref volumeClaim, ok bool) {
	switch {
	case vol.PersistentVolumeClaim != nil:
		return volumeClaim{name: vol.PersistentVolumeClaim.ClaimName}, true
	case vol.Ephemeral != nil:
		// The ephemeral volume controller names the claim after pod and volume.
		ref = volumeClaim{name: pod.Name + "-" + vol.Name, ephemeral: true}
		if tmpl := vol.Ephemeral.VolumeClaimTemplate; tmpl != nil {
			// The claim gets the template's annotations too.
			ref.className = claimClass(tmpl.Annotations, tmpl.Spec.StorageClassName)
		}
		return ref, true
	}
	return volumeClaim{}, false
}

// claimClass is the class a claim names: the legacy annotation
// volume.beta.kubernetes.io/storage-class before spec.storageClassName, as
// the kube-scheduler and the PersistentVolume controller read it (a claim
// with the annotation is never given the default class).
func claimClass(annotations map[string]string, spec *string) *string {
	if name, ok := annotations[corev1.BetaStorageClassAnnotation]; ok {
		return &name
	}
	return spec
}

// class returns the named StorageClass, the default one when name is nil,
// or nil when there is no default. A claim naming "" asks for no class.
func (v *Volumes) class(name *string) (*storagev1.StorageClass, error) {
	if name != nil {
		if *name == "" {
			return nil, nil
		}
		if sc := v.Classes[*name]; sc != nil {
			return sc, nil
		}
		return nil, fmt.Errorf("storageclass %s does not exist: %w", *name, ErrVolumeNotReady)
	}
	var def *storagev1.StorageClass
	for _, sc := range v.Classes {
		if sc.Annotations[AnnotationDefaultStorageClass] != "true" && sc.Annotations[annotationBetaDefaultStorageClass] != "true" {
			continue
		}
		// The API server picks the newest default, the first by name of
		// those created at once, as here.
		if def == nil || sc.CreationTimestamp.After(def.CreationTimestamp.Time) ||
			sc.CreationTimestamp.Equal(&def.CreationTimestamp) && sc.Name < def.Name {
			def = sc
		}
	}
	return def, nil
}

func allowedTopologyTerms(topologies []corev1.TopologySelectorTerm) []corev1.NodeSelectorTerm {
	var out []corev1.NodeSelectorTerm
	for _, t := range topologies {
		term := corev1.NodeSelectorTerm{}
		for _, e := range t.MatchLabelExpressions {
			term.MatchExpressions = append(term.MatchExpressions, corev1.NodeSelectorRequirement{
				Key: normalizedKey(e.Key), Operator: corev1.NodeSelectorOpIn, Values: normalizedValues(e.Key, e.Values),
			})
		}
		if len(term.MatchExpressions) > 0 {
			out = append(out, term)
		}
	}
	return out
}

func normalizeTerms(terms []corev1.NodeSelectorTerm) []corev1.NodeSelectorTerm {
	out := make([]corev1.NodeSelectorTerm, 0, len(terms))
	for _, t := range terms {
		t = *t.DeepCopy()
		for i := range t.MatchExpressions {
			e := &t.MatchExpressions[i]
			e.Key, e.Values = normalizedKey(e.Key), normalizedValues(e.Key, e.Values)
		}
		out = append(out, t)
	}
	return out
}

// nonZonal are the zone values a CSI driver's empty zone stands for: the
// Azure disk driver gives a disk that is not zonal the zone "", and it
// attaches to any node outside availability zones, which AKS labels with
// its fault domain ("0", "1", "2") as topology.kubernetes.io/zone.
var nonZonal = map[string][]string{
	"topology.disk.csi.azure.com/zone": {"0", "1", "2"},
}

// normalizedValues are key's values with a driver's empty zone replaced by
// the zone values it stands for.
func normalizedValues(key string, values []string) []string {
	out := make([]string, 0, len(values))
	for _, v := range values {
		if alias, ok := nonZonal[key]; ok && v == "" {
			out = append(out, alias...)
			continue
		}
		out = append(out, v)
	}
	return out
}

func normalizedKey(k string) string {
	if n, ok := NormalizedTopologyKeys[k]; ok {
		return n
	}
	return k
}

// requiredTerms is the pod's required node affinity without the terms that
// match no node (an empty term selects nothing), or one empty term standing
// for any node when the pod has no required node affinity.
func requiredTerms(pod *corev1.Pod) []corev1.NodeSelectorTerm {
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return []corev1.NodeSelectorTerm{{}}
	}
	var out []corev1.NodeSelectorTerm
	for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		if len(t.MatchExpressions) > 0 || len(t.MatchFields) > 0 {
			out = append(out, t)
		}
	}
	return out
}

// prune drops the terms no node can match (a zone In [a] and In [b]) and
// repeats: four zone-redundant disks of five terms each cross into 625
// terms of which five can match. When none can, one is kept, so the pod is
// reported unschedulable rather than planned without its volumes.
func prune(terms []corev1.NodeSelectorTerm) []corev1.NodeSelectorTerm {
	out := terms[:0:0]
	seen := map[string]bool{}
	for _, t := range terms {
		reqs, err := FromNodeSelector(t.MatchExpressions)
		if err == nil && reqs.Satisfiable() != nil {
			continue
		}
		key := fmt.Sprint(t.MatchFields)
		if err == nil {
			key += reqs.String()
		} else {
			key += fmt.Sprint(t.MatchExpressions)
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, t)
		}
	}
	if len(out) == 0 && len(terms) > 0 {
		return terms[:1]
	}
	return out
}

// crossTerms ANDs two ORed lists of terms: every pair, merged.
func crossTerms(a, b []corev1.NodeSelectorTerm) []corev1.NodeSelectorTerm {
	out := make([]corev1.NodeSelectorTerm, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			t := corev1.NodeSelectorTerm{}
			t.MatchExpressions = append(append(t.MatchExpressions, x.MatchExpressions...), y.MatchExpressions...)
			t.MatchFields = append(append(t.MatchFields, x.MatchFields...), y.MatchFields...)
			out = append(out, t)
		}
	}
	return out
}

// selectedNode is the node the scheduler chose for a claim not yet bound, or "".
func selectedNode(pvc *corev1.PersistentVolumeClaim) string {
	if pvc == nil {
		return ""
	}
	return pvc.Annotations[AnnotationSelectedNode]
}
