package azure

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
	"github.com/stowage-k8s/stowage/providers/internal/kubelet"
)

// Files the custom data writes on the node.
const (
	fileCA                 = "/etc/kubernetes/certs/ca.crt"
	fileBootstrapConfig    = "/var/lib/kubelet/bootstrap-kubeconfig"
	fileKubeconfig         = "/var/lib/kubelet/kubeconfig"
	fileKubeletConfig      = "/etc/kubernetes/kubelet/config.yaml"
	fileKubeletEnv         = "/etc/default/kubelet"
	fileKubeletUnit        = "/etc/systemd/system/kubelet.service"
	kubeletFlagsVar        = "KUBELET_FLAGS"
	kubeletVersionVar      = "KUBELET_VERSION"
	labelGPUDeployDriver   = "nvidia.com/gpu.deploy.driver"
	defaultClusterDomain   = "cluster.local"
	customDataCloudConfig  = "#cloud-config\n"
	maxCustomDataBytes     = 65535 // Azure takes at most 64 KiB of base64 custom data
	bootstrapKubeconfigFmt = `apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: kubelet-bootstrap
  user:
    token: %s
contexts:
- name: bootstrap
  context:
    cluster: cluster
    user: kubelet-bootstrap
current-context: bootstrap
`
	kubeletUnit = `[Unit]
Description=Kubernetes kubelet (started by Stowage's custom data)
Wants=network-online.target containerd.service
After=network-online.target containerd.service

[Service]
EnvironmentFile=` + fileKubeletEnv + `
ExecStart=/usr/local/bin/kubelet $` + kubeletFlagsVar + `
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
`
)

// ErrBootstrap is wrapped when a node cannot be given a working bootstrap.
var ErrBootstrap = errors.New("cannot bootstrap the node")

// joinConfig is what a node needs to join the cluster and come up labelled
// and tainted the way its pool says.
type joinConfig struct {
	APIServer         string
	CABundle          string // base64 PEM
	BootstrapToken    string
	ClusterDNS        string
	KubernetesVersion string
	ProviderID        string
	Labels            map[string]string
	Taints            []corev1.Taint
	MaxPods           int32
	KubeReserved      map[string]string
	EvictionHard      map[string]string
	Kubelet           *azv1.KubeletConfiguration
}

type cloudConfig struct {
	WriteFiles []cloudFile `json:"write_files"`
	RunCmd     [][]string  `json:"runcmd"`
}

type cloudFile struct {
	Path        string `json:"path"`
	Permissions string `json:"permissions"`
	Encoding    string `json:"encoding,omitempty"`
	Content     string `json:"content"`
}

// kubeletConfigFile is the subset of kubelet.config.k8s.io/v1beta1 written.
type kubeletConfigFile struct {
	APIVersion     string `json:"apiVersion"`
	Kind           string `json:"kind"`
	Authentication struct {
		Anonymous struct {
			Enabled bool `json:"enabled"`
		} `json:"anonymous"`
		Webhook struct {
			Enabled bool `json:"enabled"`
		} `json:"webhook"`
		X509 struct {
			ClientCAFile string `json:"clientCAFile"`
		} `json:"x509"`
	} `json:"authentication"`
	Authorization struct {
		Mode string `json:"mode"`
	} `json:"authorization"`
	ClusterDNS                  []string          `json:"clusterDNS"`
	ClusterDomain               string            `json:"clusterDomain"`
	MaxPods                     int32             `json:"maxPods"`
	RotateCertificates          bool              `json:"rotateCertificates"`
	ServerTLSBootstrap          bool              `json:"serverTLSBootstrap"`
	CgroupDriver                string            `json:"cgroupDriver"`
	KubeReserved                map[string]string `json:"kubeReserved,omitempty"`
	EvictionHard                map[string]string `json:"evictionHard,omitempty"`
	CPUManagerPolicy            string            `json:"cpuManagerPolicy,omitempty"`
	TopologyManagerPolicy       string            `json:"topologyManagerPolicy,omitempty"`
	ImageGCHighThresholdPercent *int32            `json:"imageGCHighThresholdPercent,omitempty"`
	ImageGCLowThresholdPercent  *int32            `json:"imageGCLowThresholdPercent,omitempty"`
	ContainerLogMaxSize         string            `json:"containerLogMaxSize,omitempty"`
	ContainerLogMaxFiles        *int32            `json:"containerLogMaxFiles,omitempty"`
	PodPidsLimit                *int64            `json:"podPidsLimit,omitempty"`
	AllowedUnsafeSysctls        []string          `json:"allowedUnsafeSysctls,omitempty"`
}

// renderCustomData returns the base64 cloud-config that bootstraps the
// kubelet: the cluster CA, a bootstrap kubeconfig holding the bootstrap
// token (the kubelet trades it for a client certificate through TLS
// bootstrapping), the kubelet configuration, and flags carrying the node's
// labels, taints and providerID, so the Node registers by itself exactly as
// the NodeClaim says.
func renderCustomData(jc joinConfig) (string, error) {
	var missing []string
	for what, v := range map[string]string{"API server URL": jc.APIServer, "cluster CA bundle": jc.CABundle,
		"bootstrap token": jc.BootstrapToken, "Kubernetes version": jc.KubernetesVersion} {
		if v == "" {
			missing = append(missing, what)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return "", fmt.Errorf("%w: no %s configured (see docs/install-azure.md)", ErrBootstrap, strings.Join(missing, ", "))
	}
	if _, err := base64.StdEncoding.DecodeString(jc.CABundle); err != nil {
		return "", fmt.Errorf("%w: the cluster CA bundle is not base64: %v", ErrBootstrap, err)
	}
	kc := kubeletConfigFile{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration",
		ClusterDNS: []string{jc.ClusterDNS}, ClusterDomain: defaultClusterDomain, MaxPods: jc.MaxPods,
		RotateCertificates: true, ServerTLSBootstrap: true, CgroupDriver: "systemd",
		KubeReserved: jc.KubeReserved, EvictionHard: jc.EvictionHard}
	kc.Authentication.Webhook.Enabled = true
	kc.Authentication.X509.ClientCAFile = fileCA
	kc.Authorization.Mode = "Webhook"
	if k := jc.Kubelet; k != nil {
		kc.CPUManagerPolicy, kc.TopologyManagerPolicy = k.CPUManagerPolicy, k.TopologyManagerPolicy
		kc.ImageGCHighThresholdPercent, kc.ImageGCLowThresholdPercent = k.ImageGCHighThresholdPercent, k.ImageGCLowThresholdPercent
		kc.ContainerLogMaxSize, kc.ContainerLogMaxFiles = k.ContainerLogMaxSize, k.ContainerLogMaxFiles
		kc.PodPidsLimit, kc.AllowedUnsafeSysctls = k.PodPidsLimit, k.AllowedUnsafeSysctls
	}
	kcYAML, err := yaml.Marshal(kc)
	if err != nil {
		return "", fmt.Errorf("rendering the kubelet configuration: %w", err)
	}
	flags := []string{
		"--config=" + fileKubeletConfig,
		"--bootstrap-kubeconfig=" + fileBootstrapConfig,
		"--kubeconfig=" + fileKubeconfig,
		"--cloud-provider=external",
		"--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
		"--provider-id=" + jc.ProviderID,
	}
	if l := kubelet.MapFlag(jc.Labels); l != "" {
		flags = append(flags, "--node-labels="+l)
	}
	if t := kubelet.TaintFlag(jc.Taints); t != "" {
		flags = append(flags, "--register-with-taints="+t)
	}
	env := fmt.Sprintf("%s=%q\n%s=%s\n", kubeletFlagsVar, strings.Join(flags, " "), kubeletVersionVar, jc.KubernetesVersion)
	cc := cloudConfig{
		WriteFiles: []cloudFile{
			{Path: fileCA, Permissions: "0644", Encoding: "b64", Content: jc.CABundle},
			{Path: fileBootstrapConfig, Permissions: "0600", Content: fmt.Sprintf(bootstrapKubeconfigFmt, jc.APIServer, fileCA, jc.BootstrapToken)},
			{Path: fileKubeletConfig, Permissions: "0644", Content: string(kcYAML)},
			{Path: fileKubeletEnv, Permissions: "0644", Content: env},
			{Path: fileKubeletUnit, Permissions: "0644", Content: kubeletUnit},
		},
		RunCmd: [][]string{
			// AKS node images cache the kubelet of every supported version
			// beside the default one; use the cluster's.
			{"sh", "-c", "if [ -x /usr/local/bin/kubelet-" + jc.KubernetesVersion + " ]; then ln -sf /usr/local/bin/kubelet-" +
				jc.KubernetesVersion + " /usr/local/bin/kubelet; fi"},
			{"systemctl", "daemon-reload"},
			{"systemctl", "enable", "--now", "containerd"},
			{"systemctl", "enable", "--now", "kubelet"},
		},
	}
	body, err := yaml.Marshal(cc)
	if err != nil {
		return "", fmt.Errorf("rendering custom data: %w", err)
	}
	out := base64.StdEncoding.EncodeToString(append([]byte(customDataCloudConfig), body...))
	if len(out) > maxCustomDataBytes {
		return "", fmt.Errorf("%w: custom data is %d bytes, Azure takes at most %d (too many labels or taints?)", ErrBootstrap, len(out), maxCustomDataBytes)
	}
	return out, nil
}

// NodeBootstrap is what a node learns from its custom data: enough for a
// stand-in kubelet in tests to register the Node the real one would.
type NodeBootstrap struct {
	APIServer         string
	BootstrapToken    string
	KubernetesVersion string
	ProviderID        string
	Labels            map[string]string
	Taints            []corev1.Taint
	MaxPods           int32
	KubeReserved      map[string]string
}

// ParseCustomData reads back base64 custom data that renderCustomData made.
func ParseCustomData(b64 string) (*NodeBootstrap, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("custom data is not base64: %w", err)
	}
	if !strings.HasPrefix(string(raw), customDataCloudConfig) {
		return nil, errors.New("custom data is not a #cloud-config document")
	}
	var cc cloudConfig
	if err := yaml.UnmarshalStrict(raw[len(customDataCloudConfig):], &cc); err != nil {
		return nil, fmt.Errorf("custom data: %w", err)
	}
	nb := &NodeBootstrap{Labels: map[string]string{}}
	for _, f := range cc.WriteFiles {
		switch f.Path {
		case fileBootstrapConfig:
			for _, line := range strings.Split(f.Content, "\n") {
				line = strings.TrimSpace(line)
				if v, ok := strings.CutPrefix(line, "server: "); ok {
					nb.APIServer = v
				}
				if v, ok := strings.CutPrefix(line, "token: "); ok {
					nb.BootstrapToken = v
				}
			}
		case fileKubeletConfig:
			var kc kubeletConfigFile
			if err := yaml.Unmarshal([]byte(f.Content), &kc); err != nil {
				return nil, fmt.Errorf("custom data %s: %w", f.Path, err)
			}
			nb.MaxPods, nb.KubeReserved = kc.MaxPods, kc.KubeReserved
		case fileKubeletEnv:
			if err := nb.parseEnv(f.Content); err != nil {
				return nil, fmt.Errorf("custom data %s: %w", f.Path, err)
			}
		}
	}
	if nb.ProviderID == "" || nb.APIServer == "" {
		return nil, errors.New("custom data has no providerID or API server")
	}
	return nb, nil
}

func (nb *NodeBootstrap) parseEnv(content string) error {
	for _, line := range strings.Split(content, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch k {
		case kubeletVersionVar:
			nb.KubernetesVersion = v
		case kubeletFlagsVar:
			flags, err := strconv.Unquote(v)
			if err != nil {
				return fmt.Errorf("%s: %w", kubeletFlagsVar, err)
			}
			for _, f := range strings.Fields(flags) {
				name, val, _ := strings.Cut(f, "=")
				switch name {
				case "--provider-id":
					nb.ProviderID = val
				case "--node-labels":
					for _, kv := range strings.Split(val, ",") {
						lk, lv, _ := strings.Cut(kv, "=")
						nb.Labels[lk] = lv
					}
				case "--register-with-taints":
					for _, t := range strings.Split(val, ",") {
						kv, effect, _ := strings.Cut(t, ":")
						tk, tv, _ := strings.Cut(kv, "=")
						nb.Taints = append(nb.Taints, corev1.Taint{Key: tk, Value: tv, Effect: corev1.TaintEffect(effect)})
					}
				}
			}
		}
	}
	return nil
}
