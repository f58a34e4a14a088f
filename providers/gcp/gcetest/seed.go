package gcetest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// Cluster facts Seed installs.
const (
	ClusterVersion  = "1.30.6-gke.1029000"
	ClusterEndpoint = "34.118.0.10"
	// ImageCOS and ImageUbuntu are the newest GKE images for ClusterVersion.
	ImageCOS       = "gke-1306-gke1029000-cos-113-18244-236-77-c-pre"
	ImageUbuntu    = "gke-1306-gke1029000-ubuntu-2204-v20261101"
	ImageCOSOlder  = "gke-1306-gke1029000-cos-113-18244-236-70-c-pre"
	ImageCOSOldVer = "gke-1305-gke1100000-cos-113-18244-200-1-c-pre"
	ImageProject   = "gke-node-images"
	UbuntuProject  = "ubuntu-os-gke-cloud"
	NodeTag        = "gke-gke-test-5f1c2a3b-node"
	TemplateName   = "gke-gke-test-default-pool-5f1c2a3b"
	CAData         = "-----BEGIN CERTIFICATE-----\nMIIFAKE\n-----END CERTIFICATE-----\n"
)

type mtSpec struct {
	name   string
	vcpu   int32
	memMB  int32
	accel  string
	count  int32
	zones  string // zone letters
	family string
}

// The machine types Seed serves: general purpose, n1 for attached GPUs and
// the GPU families, with the zones they are sold in.
var seedMachineTypes = []mtSpec{
	{"e2-standard-2", 2, 8192, "", 0, "abcf", "E2"},
	{"e2-standard-4", 4, 16384, "", 0, "abcf", "E2"},
	{"e2-standard-8", 8, 32768, "", 0, "abcf", "E2"},
	{"n1-standard-4", 4, 15360, "", 0, "abcf", "N1"},
	{"n1-standard-8", 8, 30720, "", 0, "abcf", "N1"},
	{"n1-standard-16", 16, 61440, "", 0, "abcf", "N1"},
	{"n1-highmem-8", 8, 53248, "", 0, "abcf", "N1"},
	{"g2-standard-4", 4, 16384, "nvidia-l4", 1, "abc", "G2"},
	{"g2-standard-8", 8, 32768, "nvidia-l4", 1, "abc", "G2"},
	{"g2-standard-24", 24, 98304, "nvidia-l4", 2, "abc", "G2"},
	{"g2-standard-48", 48, 196608, "nvidia-l4", 4, "abc", "G2"},
	{"a2-highgpu-1g", 12, 87040, "nvidia-tesla-a100", 1, "abcf", "A2"},
	{"a2-highgpu-8g", 96, 696320, "nvidia-tesla-a100", 8, "abcf", "A2"},
	{"a3-highgpu-8g", 208, 1916928, "nvidia-h100-80gb", 8, "abc", "A3"},
	{"a3-megagpu-8g", 208, 1916928, "nvidia-h100-mega-80gb", 8, "ac", "A3"},
}

// Attached accelerator types, with the zones they are sold in.
var seedAccelerators = map[string]string{
	"nvidia-tesla-t4":   "abcf",
	"nvidia-tesla-v100": "abc",
	"nvidia-tesla-p4":   "ac",
}

type skuSpec struct {
	desc, group string
	onDemand    float64
	spot        float64
}

// Billing SKUs: per-family vCPU and RAM rates and per-GPU rates for
// us-central1 (US$/hour), close to the public list prices.
var seedSKUs = []skuSpec{
	{"E2 Instance Core", "CPU", 0.021811, 0.00654},
	{"E2 Instance Ram", "RAM", 0.002923, 0.000877},
	{"N1 Predefined Instance Core", "N1Standard", 0.031611, 0.00698},
	{"N1 Predefined Instance Ram", "N1Standard", 0.004237, 0.000936},
	{"G2 Instance Core", "CPU", 0.02236, 0.00894},
	{"G2 Instance Ram", "RAM", 0.002616, 0.001046},
	{"A2 Instance Core", "CPU", 0.031611, 0.01264},
	{"A2 Instance Ram", "RAM", 0.004237, 0.001695},
	{"A3 Instance Core", "CPU", 0.0395, 0.0102},
	{"A3 Instance Ram", "RAM", 0.0034, 0.000888},
	{"Nvidia Tesla T4 GPU", "GPU", 0.35, 0.14},
	{"Nvidia Tesla V100 GPU", "GPU", 2.48, 0.992},
	{"Nvidia Tesla P4 GPU", "GPU", 0.60, 0.24},
	{"Nvidia L4 GPU", "GPU", 0.56, 0.224},
	{"Nvidia Tesla A100 GPU", "GPU", 2.933908, 1.5},
	{"Nvidia H100 80GB GPU", "GPU", 9.239, 5.85},
	{"Nvidia H100 80GB Mega GPU", "GPU", 10.10, 6.10},
	// Rates the provider must not mistake for on-demand machine prices.
	{"Commitment v1: N1 Cpu in Americas for 1 Year", "CPU", 0.0199, 0},
	{"N1 Predefined Instance Core running in Belgium", "N1Standard", 0.0348, 0},
}

// Seed installs a realistic region: machine and accelerator types, billing
// SKUs, the cluster, a node pool template with GKE's bootstrap metadata,
// GKE node images and the default subnetwork.
func (s *Server) Seed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range seedMachineTypes {
		mt := &computepb.MachineType{Name: proto.String(m.name), GuestCpus: proto.Int32(m.vcpu), MemoryMb: proto.Int32(m.memMB),
			Architecture: proto.String("X86_64"), Description: proto.String(fmt.Sprintf("%d vCPUs, %d MB RAM", m.vcpu, m.memMB))}
		if m.accel != "" {
			// a3-megagpu lists its GPUs as two entries of four, as some
			// multi-accelerator types do: the GPU count is the sum.
			if m.count == 8 && strings.HasPrefix(m.name, "a3-mega") {
				mt.Accelerators = []*computepb.Accelerators{
					{GuestAcceleratorType: proto.String(m.accel), GuestAcceleratorCount: proto.Int32(4)},
					{GuestAcceleratorType: proto.String(m.accel), GuestAcceleratorCount: proto.Int32(4)},
				}
			} else {
				mt.Accelerators = []*computepb.Accelerators{{GuestAcceleratorType: proto.String(m.accel), GuestAcceleratorCount: proto.Int32(m.count)}}
			}
		}
		for _, l := range m.zones {
			zone := s.Region + "-" + string(l)
			c := proto.Clone(mt).(*computepb.MachineType)
			c.Zone = proto.String(zone)
			c.SelfLink = proto.String(s.ComputeURL() + "/zones/" + zone + "/machineTypes/" + m.name)
			s.machineTypes[zone] = append(s.machineTypes[zone], c)
		}
	}
	for name, zones := range seedAccelerators {
		for _, l := range zones {
			zone := s.Region + "-" + string(l)
			s.accelerators[zone] = append(s.accelerators[zone], &computepb.AcceleratorType{
				Name: proto.String(name), Zone: proto.String(zone), MaximumCardsPerInstance: proto.Int32(4),
				SelfLink: proto.String(s.ComputeURL() + "/zones/" + zone + "/acceleratorTypes/" + name),
			})
		}
	}
	s.skus = nil
	n := 0
	for _, k := range seedSKUs {
		region, desc := s.Region, k.desc
		if strings.Contains(desc, "Belgium") {
			region = "europe-west1"
		}
		if !strings.Contains(desc, " in ") {
			desc += " running in Americas"
		}
		n++
		s.skus = append(s.skus, sku(n, desc, k.group, "OnDemand", region, k.onDemand))
		if k.spot > 0 {
			// The Billing Catalog names spot machine rates "Spot Preemptible
			// N1 Predefined Instance Core running in ..." but spot GPU rates
			// "Nvidia Tesla T4 GPU attached to Spot Preemptible VMs running in ...".
			spotDesc := "Spot Preemptible " + desc
			if k.group == "GPU" {
				spotDesc = strings.Replace(desc, " GPU running in ", " GPU attached to Spot Preemptible VMs running in ", 1)
			}
			n++
			s.skus = append(s.skus, sku(n, spotDesc, k.group, "Preemptible", region, k.spot))
		}
	}
	s.subnetworks[s.Region+"/default"] = &computepb.Subnetwork{
		Name: proto.String("default"), Region: proto.String(s.ComputeURL() + "/regions/" + s.Region),
		Network:  proto.String(s.ComputeURL() + "/global/networks/default"),
		SelfLink: proto.String(s.ComputeURL() + "/regions/" + s.Region + "/subnetworks/default"), IpCidrRange: proto.String("10.128.0.0/20"),
	}
	s.images[ImageProject] = map[string]*computepb.Image{}
	s.images[UbuntuProject] = map[string]*computepb.Image{}
	for i, name := range []string{ImageCOSOldVer, ImageCOSOlder, ImageCOS} {
		s.images[ImageProject][name] = image(ImageProject, name, fmt.Sprintf("2026-1%d-01T00:00:00Z", i))
	}
	s.images[UbuntuProject][ImageUbuntu] = image(UbuntuProject, ImageUbuntu, "2026-11-01T00:00:00Z")
	s.cluster = map[string]any{
		"name": s.Cluster, "location": s.Region, "endpoint": ClusterEndpoint,
		"currentMasterVersion": ClusterVersion, "currentNodeVersion": ClusterVersion,
		"network": "default", "subnetwork": "default", "status": "RUNNING",
		"masterAuth": map[string]any{"clusterCaCertificate": base64.StdEncoding.EncodeToString([]byte(CAData))},
		"nodePools": []map[string]any{{"name": "default-pool", "version": ClusterVersion,
			"instanceGroupUrls": []string{s.ComputeURL() + "/zones/" + s.Zones[0] + "/instanceGroupManagers/gke-gke-test-default-pool-5f1c2a3b-grp"}}},
	}
	s.templates[TemplateName] = &computepb.InstanceTemplate{
		Name: proto.String(TemplateName), SelfLink: proto.String(s.ComputeURL() + "/global/instanceTemplates/" + TemplateName),
		CreationTimestamp: proto.String("2026-11-20T00:00:00Z"),
		Properties: &computepb.InstanceProperties{
			MachineType: proto.String("e2-standard-4"),
			Tags:        &computepb.Tags{Items: []string{NodeTag}},
			Labels:      map[string]string{"goog-gke-node": "", "goog-k8s-cluster-name": s.Cluster, "goog-k8s-node-pool-name": "default-pool"},
			Metadata: &computepb.Metadata{Items: []*computepb.Items{
				{Key: proto.String("cluster-name"), Value: proto.String(s.Cluster)},
				{Key: proto.String("cluster-location"), Value: proto.String(s.Region)},
				{Key: proto.String("cluster-uid"), Value: proto.String("5f1c2a3b9d8e4f6a8b7c6d5e4f3a2b1c")},
				{Key: proto.String("configure-sh"), Value: proto.String("#!/bin/bash\n# GKE node configuration script\n")},
				{Key: proto.String("user-data"), Value: proto.String("#cloud-config\n")},
				{Key: proto.String("gci-update-strategy"), Value: proto.String("update_disabled")},
				{Key: proto.String("kube-labels"), Value: proto.String("cloud.google.com/gke-boot-disk=pd-balanced,cloud.google.com/gke-nodepool=default-pool,cloud.google.com/gke-os-distribution=cos")},
				{Key: proto.String("kube-env"), Value: proto.String(KubeEnv)},
			}},
		},
	}
}

// KubeEnv is the node pool's kube-env as GKE writes it (abridged).
var KubeEnv = strings.Join([]string{
	"CLUSTER_NAME: gke-test",
	"KUBERNETES_MASTER_NAME: " + ClusterEndpoint,
	"CA_CERT: " + base64.StdEncoding.EncodeToString([]byte(CAData)),
	"KUBELET_ARGS: --v=2 --cloud-provider=external --experimental-mounter-path=/home/kubernetes/containerized_mounter/mounter --cert-dir=/var/lib/kubelet/pki/ --kubeconfig=/var/lib/kubelet/kubeconfig --max-pods=110",
	"NODE_LABELS: cloud.google.com/gke-boot-disk=pd-balanced,cloud.google.com/gke-nodepool=default-pool,cloud.google.com/gke-os-distribution=cos",
	"NODE_TAINTS: ''",
	"TPM_BOOTSTRAP_CERT: ZmFrZQ==",
	"TPM_BOOTSTRAP_KEY: ZmFrZQ==",
}, "\n") + "\n"

func image(project, name, created string) *computepb.Image {
	return &computepb.Image{Name: proto.String(name), Status: proto.String("READY"), CreationTimestamp: proto.String(created),
		SelfLink: proto.String("https://www.googleapis.com/compute/v1/projects/" + project + "/global/images/" + name)}
}

func sku(n int, desc, group, usage, region string, usd float64) json.RawMessage {
	units := math.Floor(usd)
	nanos := math.Round((usd - units) * 1e9)
	raw, _ := json.Marshal(map[string]any{
		"name": fmt.Sprintf("services/6F81-5844-456A/skus/FAKE-%04d", n), "skuId": fmt.Sprintf("FAKE-%04d", n), "description": desc,
		"category":       map[string]any{"serviceDisplayName": "Compute Engine", "resourceFamily": "Compute", "resourceGroup": group, "usageType": usage},
		"serviceRegions": []string{region},
		"pricingInfo": []map[string]any{{"pricingExpression": map[string]any{"usageUnit": "h", "tieredRates": []map[string]any{
			{"startUsageAmount": 0, "unitPrice": map[string]any{"currencyCode": "USD", "units": fmt.Sprint(int64(units)), "nanos": int64(nanos)}},
		}}}},
	})
	return raw
}

// AddReservation adds a specific reservation of count machineType VMs in zone.
// specificOnly reservations are consumed only by VMs that name them.
func (s *Server) AddReservation(zone, name, machineType string, count int64, specificOnly bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reservations[zone+"/"+name] = &computepb.Reservation{
		Name: proto.String(name), Zone: proto.String(s.ComputeURL() + "/zones/" + zone), Status: proto.String("READY"),
		SelfLink:                    proto.String(s.ComputeURL() + "/zones/" + zone + "/reservations/" + name),
		SpecificReservationRequired: proto.Bool(specificOnly),
		SpecificReservation: &computepb.AllocationSpecificSKUReservation{Count: proto.Int64(count), InUseCount: proto.Int64(0),
			InstanceProperties: &computepb.AllocationSpecificSKUAllocationReservedInstanceProperties{MachineType: proto.String(machineType)}},
	}
}

// AddSubnetwork adds a subnetwork in the server's region.
func (s *Server) AddSubnetwork(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subnetworks[s.Region+"/"+name] = &computepb.Subnetwork{
		Name: proto.String(name), Region: proto.String(s.ComputeURL() + "/regions/" + s.Region),
		Network:  proto.String(s.ComputeURL() + "/global/networks/default"),
		SelfLink: proto.String(s.ComputeURL() + "/regions/" + s.Region + "/subnetworks/" + name),
	}
}

// AddImage adds an image to project.
func (s *Server) AddImage(project, name, created string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.images[project] == nil {
		s.images[project] = map[string]*computepb.Image{}
	}
	s.images[project][name] = image(project, name, created)
}

// SetClusterVersion changes the cluster's node version, as an upgrade does.
func (s *Server) SetClusterVersion(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cluster["currentNodeVersion"] = v
	s.cluster["currentMasterVersion"] = v
}

// Reservation returns a copy of a reservation, or nil.
func (s *Server) Reservation(zone, name string) *computepb.Reservation {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.reservations[zone+"/"+name]; r != nil {
		return proto.Clone(r).(*computepb.Reservation)
	}
	return nil
}
