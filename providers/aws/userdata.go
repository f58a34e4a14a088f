package aws

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	corev1 "k8s.io/api/core/v1"

	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
	"github.com/stowage-k8s/stowage/providers/internal/kubelet"
)

// joinConfig is what a node needs to join the cluster and come up labelled,
// tainted and configured the way the pool and node class say.
type joinConfig struct {
	ClusterName string
	Endpoint    string
	CABundle    string
	CIDR        string
	Labels      map[string]string
	Taints      []corev1.Taint
	Kubelet     *awsv1.KubeletConfiguration
}

// ErrUserData is wrapped when a node class's user data cannot be merged.
var ErrUserData = errors.New("invalid userData")

// renderUserData returns base64 user data: the node class's own part first,
// then Stowage's bootstrap, so the user's commands run before the node joins.
// Custom images get the node class's user data unchanged.
func renderUserData(family, custom string, jc joinConfig) (string, error) {
	var out string
	var err error
	switch family {
	case awsv1.AMIFamilyCustom:
		out = custom
	case awsv1.AMIFamilyBottlerocket:
		out, err = bottlerocketUserData(custom, jc)
	default:
		out, err = al2023UserData(custom, jc)
	}
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString([]byte(out)), nil
}

// mimePart is one part of a multi-part user data document.
type mimePart struct {
	header textproto.MIMEHeader
	body   []byte
}

// al2023UserData is a MIME multi-part document nodeadm reads: the user's
// parts (a shell script, a NodeConfig, or every part of their own MIME
// document) and then Stowage's NodeConfig, which nodeadm merges over theirs.
func al2023UserData(custom string, jc joinConfig) (string, error) {
	parts, err := userParts(custom)
	if err != nil {
		return "", err
	}
	parts = append(parts, mimePart{
		header: textproto.MIMEHeader{"Content-Type": {"application/node.eks.aws"}},
		body:   []byte(nodeConfig(jc)),
	})
	boundary := uniqueBoundary(parts)
	var b bytes.Buffer
	b.WriteString("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"" + boundary + "\"\n\n")
	w := multipart.NewWriter(&b)
	if err := w.SetBoundary(boundary); err != nil {
		return "", fmt.Errorf("mime boundary %q: %w", boundary, err)
	}
	for _, p := range parts {
		pw, err := w.CreatePart(p.header)
		if err != nil {
			return "", err
		}
		if _, err := pw.Write(p.body); err != nil {
			return "", err
		}
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// userParts splits the node class's user data into MIME parts: a MIME
// document's own parts, or one part typed by its content.
func userParts(custom string) ([]mimePart, error) {
	custom = strings.TrimSpace(custom)
	if custom == "" {
		return nil, nil
	}
	if !strings.HasPrefix(custom, "MIME-Version:") && !strings.HasPrefix(strings.ToLower(custom), "content-type: multipart/") {
		ct := `text/x-shellscript; charset="us-ascii"`
		if strings.Contains(custom, "kind: NodeConfig") {
			ct = "application/node.eks.aws"
		}
		return []mimePart{{header: textproto.MIMEHeader{"Content-Type": {ct}}, body: []byte(custom + "\n")}}, nil
	}
	// mail.ReadMessage wants CRLF or LF line ends and a blank line after the headers.
	msg, err := mail.ReadMessage(strings.NewReader(custom + "\n"))
	if err != nil {
		return nil, fmt.Errorf("%w: reading MIME headers: %v", ErrUserData, err)
	}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mediaType, "multipart/") || params["boundary"] == "" {
		return nil, fmt.Errorf("%w: a MIME document must be multipart with a boundary (Content-Type %q)", ErrUserData, msg.Header.Get("Content-Type"))
	}
	r := multipart.NewReader(msg.Body, params["boundary"])
	var out []mimePart
	for i := 0; ; i++ {
		p, err := r.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: MIME part %d: %v", ErrUserData, i, err)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			return nil, fmt.Errorf("%w: MIME part %d: %v", ErrUserData, i, err)
		}
		out = append(out, mimePart{header: p.Header, body: body})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: the MIME document has no parts", ErrUserData)
	}
	return out, nil
}

// uniqueBoundary derives the boundary from the parts, so one node class
// renders one launch template, and makes sure no part contains it: a user's
// document that happens to hold the boundary line would otherwise end
// Stowage's document before the join configuration.
func uniqueBoundary(parts []mimePart) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p.body)
	}
	sum := fmt.Sprintf("%x", h.Sum(nil))
	for n := 0; ; n++ {
		b := "stowage-" + sum[:32]
		if n > 0 {
			b += "-" + strconv.Itoa(n)
		}
		if !slices.ContainsFunc(parts, func(p mimePart) bool { return bytes.Contains(p.body, []byte(b)) }) {
			return b
		}
	}
}

// nodeConfig is nodeadm's NodeConfig with the cluster and kubelet settings.
func nodeConfig(jc joinConfig) string {
	var b strings.Builder
	b.WriteString("apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n")
	fmt.Fprintf(&b, "    name: %s\n", strconv.Quote(jc.ClusterName))
	if jc.Endpoint != "" {
		fmt.Fprintf(&b, "    apiServerEndpoint: %s\n", strconv.Quote(jc.Endpoint))
	}
	if jc.CABundle != "" {
		fmt.Fprintf(&b, "    certificateAuthority: %s\n", strconv.Quote(jc.CABundle))
	}
	if jc.CIDR != "" {
		fmt.Fprintf(&b, "    cidr: %s\n", strconv.Quote(jc.CIDR))
	}
	b.WriteString("  kubelet:\n")
	if k := jc.Kubelet; k != nil && kubeletSet(k) {
		b.WriteString("    config:\n")
		if k.MaxPods != nil {
			fmt.Fprintf(&b, "      maxPods: %d\n", *k.MaxPods)
		}
		yamlMap(&b, "      ", "systemReserved", k.SystemReserved)
		yamlMap(&b, "      ", "kubeReserved", k.KubeReserved)
		yamlMap(&b, "      ", "evictionHard", k.EvictionHard)
		yamlMap(&b, "      ", "evictionSoft", k.EvictionSoft)
		if len(k.EvictionSoftGracePeriod) > 0 {
			grace := make(map[string]string, len(k.EvictionSoftGracePeriod))
			for s, d := range k.EvictionSoftGracePeriod {
				grace[s] = d.Duration.String()
			}
			yamlMap(&b, "      ", "evictionSoftGracePeriod", grace)
		}
		if k.ImageGCHighThresholdPercent != nil {
			fmt.Fprintf(&b, "      imageGCHighThresholdPercent: %d\n", *k.ImageGCHighThresholdPercent)
		}
		if k.ImageGCLowThresholdPercent != nil {
			fmt.Fprintf(&b, "      imageGCLowThresholdPercent: %d\n", *k.ImageGCLowThresholdPercent)
		}
	}
	b.WriteString("    flags:\n")
	if l := kubelet.MapFlag(jc.Labels); l != "" {
		fmt.Fprintf(&b, "      - %s\n", strconv.Quote("--node-labels="+l))
	}
	if t := kubelet.TaintFlag(jc.Taints); t != "" {
		fmt.Fprintf(&b, "      - %s\n", strconv.Quote("--register-with-taints="+t))
	}
	return b.String()
}

func kubeletSet(k *awsv1.KubeletConfiguration) bool {
	return k.MaxPods != nil || len(k.SystemReserved) > 0 || len(k.KubeReserved) > 0 || len(k.EvictionHard) > 0 ||
		len(k.EvictionSoft) > 0 || k.ImageGCHighThresholdPercent != nil || k.ImageGCLowThresholdPercent != nil
}

func yamlMap[V ~string](b *strings.Builder, indent, key string, m map[string]V) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(b, "%s%s:\n", indent, key)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(b, "%s  %s: %s\n", indent, strconv.Quote(k), strconv.Quote(string(m[k])))
	}
}

// bottlerocketOwned are the settings.kubernetes keys Stowage writes. A user's
// value for one is refused rather than merged: the solver plans with
// Stowage's (labels and taints from the NodePool, kubelet settings from
// spec.kubelet), and either side silently winning would hide a mistake.
var bottlerocketOwned = []string{"cluster-name", "api-server", "cluster-certificate", "max-pods",
	"image-gc-high-threshold-percent", "image-gc-low-threshold-percent", "node-labels", "node-taints",
	"kube-reserved", "system-reserved", "eviction-hard", "eviction-soft", "eviction-soft-grace-period"}

// bottlerocketUserData merges the node class's TOML with Stowage's
// settings.kubernetes into one document. Appending a [settings.kubernetes]
// table to the user's text breaks when that text reaches settings.kubernetes
// through dotted keys or an inline table: TOML forbids defining the table
// again, and Bottlerocket then rejects the whole document.
func bottlerocketUserData(custom string, jc joinConfig) (string, error) {
	doc := map[string]any{}
	if _, err := toml.Decode(custom, &doc); err != nil {
		return "", fmt.Errorf("%w: Bottlerocket userData is not valid TOML: %v", ErrUserData, err)
	}
	settings, err := tomlSubTable(doc, "settings", "settings")
	if err != nil {
		return "", err
	}
	kube, err := tomlSubTable(settings, "kubernetes", "settings.kubernetes")
	if err != nil {
		return "", err
	}
	for _, k := range bottlerocketOwned {
		if _, ok := kube[k]; ok {
			return "", fmt.Errorf("%w: Bottlerocket userData must not set settings.kubernetes.%s: Stowage writes it in [settings.kubernetes] "+
				"(labels and taints come from the NodePool, kubelet settings from spec.kubelet)", ErrUserData, k)
		}
	}
	kube["cluster-name"] = jc.ClusterName
	if jc.Endpoint != "" {
		kube["api-server"] = jc.Endpoint
	}
	if jc.CABundle != "" {
		kube["cluster-certificate"] = jc.CABundle
	}
	if len(jc.Labels) > 0 {
		kube["node-labels"] = jc.Labels
	}
	if len(jc.Taints) > 0 {
		byKey := map[string][]string{}
		for _, t := range jc.Taints {
			byKey[t.Key] = append(byKey[t.Key], t.Value+":"+string(t.Effect))
		}
		kube["node-taints"] = byKey
	}
	if k := jc.Kubelet; k != nil {
		if k.MaxPods != nil {
			kube["max-pods"] = int64(*k.MaxPods)
		}
		if k.ImageGCHighThresholdPercent != nil {
			kube["image-gc-high-threshold-percent"] = int64(*k.ImageGCHighThresholdPercent)
		}
		if k.ImageGCLowThresholdPercent != nil {
			kube["image-gc-low-threshold-percent"] = int64(*k.ImageGCLowThresholdPercent)
		}
		tomlSet(kube, "kube-reserved", k.KubeReserved)
		tomlSet(kube, "system-reserved", k.SystemReserved)
		tomlSet(kube, "eviction-hard", k.EvictionHard)
		tomlSet(kube, "eviction-soft", k.EvictionSoft)
		if len(k.EvictionSoftGracePeriod) > 0 {
			grace := make(map[string]string, len(k.EvictionSoftGracePeriod))
			for s, d := range k.EvictionSoftGracePeriod {
				grace[s] = d.Duration.String()
			}
			kube["eviction-soft-grace-period"] = grace
		}
	}
	// The encoder sorts keys, so one node class renders one launch template,
	// and quotes keys such as "example.com/team" instead of dotting them.
	var b bytes.Buffer
	enc := toml.NewEncoder(&b)
	enc.Indent = ""
	if err := enc.Encode(doc); err != nil {
		return "", fmt.Errorf("%w: encoding Bottlerocket settings: %v", ErrUserData, err)
	}
	return b.String(), nil
}

// tomlSubTable returns m[key] (at path) as a table, adding an empty one when absent.
func tomlSubTable(m map[string]any, key, path string) (map[string]any, error) {
	v, ok := m[key]
	if !ok {
		t := map[string]any{}
		m[key] = t
		return t, nil
	}
	t, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: Bottlerocket userData's %s must be a table, not %T", ErrUserData, path, v)
	}
	return t, nil
}

func tomlSet[V ~string](m map[string]any, key string, in map[string]V) {
	if len(in) == 0 {
		return
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = string(v)
	}
	m[key] = out
}
