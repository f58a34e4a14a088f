package fake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

const (
	// Namespace holds one ConfigMap per instance: the fake cloud's "API".
	Namespace = "stowage-fake-cloud"
	// ProviderIDPrefix starts every providerID: fake://<zone>/<instance-id>.
	ProviderIDPrefix = "fake://"
	// LabelCluster tags instance records with Options.ClusterName.
	LabelCluster = "fake.stowage.dev/cluster"
	// ImageID is what every fake instance boots.
	ImageID = "fake-image-1"

	instanceKey = "instance.json"
)

// instance is one machine, stored as JSON in a ConfigMap so that nothing a
// restart would lose lives in memory.
type instance struct {
	ID            string              `json:"id"`
	ProviderID    string              `json:"providerID"`
	Cluster       string              `json:"cluster"`
	ClientToken   string              `json:"clientToken"`
	NodeClaim     string              `json:"nodeClaim"`
	NodeClaimUID  string              `json:"nodeClaimUID,omitempty"`
	NodePool      string              `json:"nodePool,omitempty"`
	InstanceType  string              `json:"instanceType"`
	Zone          string              `json:"zone"`
	CapacityType  string              `json:"capacityType"`
	ReservationID string              `json:"reservationID,omitempty"`
	PricePerHour  float64             `json:"pricePerHour"`
	ImageID       string              `json:"imageID,omitempty"`
	LaunchTime    time.Time           `json:"launchTime"`
	Labels        map[string]string   `json:"labels,omitempty"`
	Taints        []corev1.Taint      `json:"taints,omitempty"`
	StartupTaints []corev1.Taint      `json:"startupTaints,omitempty"`
	Capacity      corev1.ResourceList `json:"capacity,omitempty"`
	Allocatable   corev1.ResourceList `json:"allocatable,omitempty"`
	// PlacementGroup is the placement domain the machine joined, if any.
	PlacementGroup string `json:"placementGroup,omitempty"`
	// GPUSharing is how the pool splits the machine's GPUs (MIG, time
	// slicing), which decides the devices its DRA driver publishes.
	GPUSharing *v1.GPUSharing `json:"gpuSharing,omitempty"`
}

// instanceID derives the instance's ID from the cluster and the claim's
// client token. Being deterministic, it makes Create idempotent without any
// in-memory state: the API server refuses a second record with the same name.
func instanceID(cluster, token string) string {
	sum := sha256.Sum256([]byte(cluster + "\x00" + token))
	return "i-" + hex.EncodeToString(sum[:])[:17]
}

func providerID(zone, id string) string { return ProviderIDPrefix + zone + "/" + id }

// parseProviderID returns the instance ID of fake://<zone>/<id>.
func parseProviderID(pid string) (string, error) {
	rest, ok := strings.CutPrefix(pid, ProviderIDPrefix)
	if !ok {
		return "", fmt.Errorf("providerID %q does not start with %s", pid, ProviderIDPrefix)
	}
	zone, id, ok := strings.Cut(rest, "/")
	if !ok || zone == "" || id == "" || strings.Contains(id, "/") {
		return "", fmt.Errorf("providerID %q is not of the form %s<zone>/<instance-id>", pid, ProviderIDPrefix)
	}
	return id, nil
}

func newInstance(cluster, id, token string, claim *v1.NodeClaim, it *cloudprovider.InstanceType,
	choice v1.OfferingChoice, price float64, reservationID, region string, now time.Time,
) *instance {
	inst := &instance{
		ID:            id,
		ProviderID:    providerID(choice.Zone, id),
		Cluster:       cluster,
		ClientToken:   token,
		NodeClaim:     claim.Name,
		NodeClaimUID:  string(claim.UID),
		NodePool:      claim.Labels[v1.LabelNodePool],
		InstanceType:  it.Name,
		Zone:          choice.Zone,
		CapacityType:  choice.CapacityType,
		ReservationID: reservationID,
		PricePerHour:  price,
		LaunchTime:    now.UTC().Truncate(time.Second),
		Labels:        nodeLabels(claim, it, choice, id, region),
		Taints:        claim.Spec.Taints,
		StartupTaints: claim.Spec.StartupTaints,
	}
	inst.GPUSharing = claim.Spec.GPU
	if claim.Spec.Placement != nil {
		inst.PlacementGroup = claim.Spec.Placement.Group
		inst.Labels[LabelPlacementGroup] = inst.PlacementGroup
	}
	return inst
}

// nodeLabels are the labels the machine's kubelet registers with: the
// instance type's, single-valued requirements, the claim's own labels, and
// where and how it was bought.
func nodeLabels(claim *v1.NodeClaim, it *cloudprovider.InstanceType, choice v1.OfferingChoice, id, region string) map[string]string {
	labels := maps.Clone(it.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	for _, r := range claim.Spec.Requirements {
		if r.Operator == corev1.NodeSelectorOpIn && len(r.Values) == 1 {
			if _, set := labels[r.Key]; !set {
				labels[r.Key] = r.Values[0]
			}
		}
	}
	maps.Copy(labels, claim.Labels)
	labels[v1.LabelInstanceType] = it.Name
	labels[v1.LabelZone] = choice.Zone
	labels[v1.LabelCapacityType] = choice.CapacityType
	labels[v1.LabelHostname] = id
	if region != "" {
		labels[v1.LabelRegion] = region
	}
	return labels
}

// image is what the machine booted; records from before images could
// change booted ImageID.
func (i *instance) image() string {
	if i.ImageID == "" {
		return ImageID
	}
	return i.ImageID
}

func (i *instance) offeringID() cloudprovider.OfferingID {
	return cloudprovider.OfferingID{InstanceType: i.InstanceType, Zone: i.Zone, CapacityType: i.CapacityType}
}

func (i *instance) fillStatus(s *v1.NodeClaimStatus) {
	s.ProviderID = i.ProviderID
	s.InstanceType = i.InstanceType
	s.Zone = i.Zone
	s.CapacityType = i.CapacityType
	s.PricePerHour = v1.FormatPrice(i.PricePerHour)
	s.ImageID = i.image()
	s.Capacity = i.Capacity.DeepCopy()
	s.Allocatable = i.Allocatable.DeepCopy()
}

// nodeClaim describes the instance as a NodeClaim, for Get and List.
func (i *instance) nodeClaim() *v1.NodeClaim {
	nc := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name:              i.NodeClaim,
			UID:               types.UID(i.NodeClaimUID),
			Labels:            map[string]string{v1.LabelNodeClaim: i.NodeClaim},
			CreationTimestamp: metav1.NewTime(i.LaunchTime),
		},
		Spec: v1.NodeClaimSpec{
			Offerings: []v1.OfferingChoice{{
				InstanceType: i.InstanceType, Zone: i.Zone, CapacityType: i.CapacityType,
				PricePerHour: v1.FormatPrice(i.PricePerHour), ReservationID: i.ReservationID,
			}},
			Taints:        i.Taints,
			StartupTaints: i.StartupTaints,
		},
	}
	if i.PlacementGroup != "" {
		nc.Spec.Placement = &v1.Placement{Group: i.PlacementGroup}
	}
	if i.NodePool != "" {
		nc.Labels[v1.LabelNodePool] = i.NodePool
	}
	i.fillStatus(&nc.Status)
	return nc
}

// configMap is the record's ConfigMap, without data; enough to delete it.
func (i *instance) configMap() *corev1.ConfigMap {
	labels := map[string]string{LabelCluster: i.Cluster}
	for k, v := range map[string]string{v1.LabelNodePool: i.NodePool, v1.LabelNodeClaim: i.NodeClaim} {
		// Labels are for people and selectors; the record itself is the data.
		if v != "" && len(validation.IsValidLabelValue(v)) == 0 {
			labels[k] = v
		}
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: i.ID, Labels: labels},
	}
}

func (c *Cloud) createInstance(ctx context.Context, inst *instance) error {
	data, err := json.Marshal(inst)
	if err != nil {
		return fmt.Errorf("encoding instance %s: %w", inst.ID, err)
	}
	cm := inst.configMap()
	cm.Data = map[string]string{instanceKey: string(data)}
	return c.client.Create(ctx, cm)
}

// getInstance reads one record; a NotFoundError (naming the ID) when there
// is none for this cluster.
func (c *Cloud) getInstance(ctx context.Context, id string) (*instance, error) {
	cm := &corev1.ConfigMap{}
	if err := c.reader.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: id}, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, cloudprovider.NewNotFoundError(id)
		}
		return nil, fmt.Errorf("reading instance record %s/%s: %w", Namespace, id, err)
	}
	inst, err := decodeInstance(cm)
	if err != nil {
		return nil, err
	}
	if inst.Cluster != c.cluster {
		return nil, cloudprovider.NewNotFoundError(inst.ProviderID)
	}
	return inst, nil
}

// listInstances returns this cluster's instances ordered by ID.
func (c *Cloud) listInstances(ctx context.Context) ([]*instance, error) {
	list := &corev1.ConfigMapList{}
	if err := c.reader.List(ctx, list, client.InNamespace(Namespace), client.MatchingLabels{LabelCluster: c.cluster}); err != nil {
		return nil, fmt.Errorf("listing instance records in %s: %w", Namespace, err)
	}
	out := make([]*instance, 0, len(list.Items))
	for i := range list.Items {
		inst, err := decodeInstance(&list.Items[i])
		if err != nil {
			return nil, err
		}
		if inst.Cluster == c.cluster {
			out = append(out, inst)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out, nil
}

func decodeInstance(cm *corev1.ConfigMap) (*instance, error) {
	inst := &instance{}
	data, ok := cm.Data[instanceKey]
	if !ok {
		return nil, fmt.Errorf("instance record %s/%s: data.%s is missing", cm.Namespace, cm.Name, instanceKey)
	}
	if err := json.Unmarshal([]byte(data), inst); err != nil {
		return nil, fmt.Errorf("instance record %s/%s: data.%s: %w", cm.Namespace, cm.Name, instanceKey, err)
	}
	if inst.ID != cm.Name {
		return nil, fmt.Errorf("instance record %s/%s: data.%s: id %q does not match the name", cm.Namespace, cm.Name, instanceKey, inst.ID)
	}
	return inst, nil
}

func (c *Cloud) ensureNamespace(ctx context.Context) error {
	c.mu.Lock()
	ready := c.nsReady
	c.mu.Unlock()
	if ready {
		return nil
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}
	if err := c.client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("fake cloud: creating namespace %s: %w", Namespace, err)
	}
	c.mu.Lock()
	c.nsReady = true
	c.mu.Unlock()
	return nil
}

func cloneInstanceType(it *cloudprovider.InstanceType) *cloudprovider.InstanceType {
	out := *it
	out.Labels = maps.Clone(it.Labels)
	out.Capacity = it.Capacity.DeepCopy()
	out.Overhead = cloudprovider.Overhead{
		KubeReserved:      it.Overhead.KubeReserved.DeepCopy(),
		SystemReserved:    it.Overhead.SystemReserved.DeepCopy(),
		EvictionThreshold: it.Overhead.EvictionThreshold.DeepCopy(),
	}
	if it.GPU != nil {
		gpu := *it.GPU
		gpu.MIGProfiles = maps.Clone(it.GPU.MIGProfiles)
		out.GPU = &gpu
	}
	out.Offerings = append([]cloudprovider.Offering(nil), it.Offerings...)
	return &out
}
