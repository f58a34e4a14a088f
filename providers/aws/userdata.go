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

func bottlerocketUserData(custom string, jc joinConfig) (string, error) {
	var b strings.Builder
	if custom = strings.TrimSpace(custom); custom != "" {
		// Without a TOML merge a user's table could silently lose keys to
		// ours or ours to theirs; refuse instead of guessing which side wins.
		for _, owned := range []string{"[settings.kubernetes]", "[settings.kubernetes.node-labels]", "[settings.kubernetes.node-taints]",
			"[settings.kubernetes.kube-reserved]", "[settings.kubernetes.system-reserved]", "[settings.kubernetes.eviction-hard]",
			"[settings.kubernetes.eviction-soft]", "[settings.kubernetes.eviction-soft-grace-period]"} {
			if strings.Contains(custom, owned) {
				return "", fmt.Errorf("%w: Bottlerocket userData must not set %s: Stowage writes it (use spec.kubelet)", ErrUserData, owned)
			}
		}
		b.WriteString(custom + "\n\n")
	}
	b.WriteString("[settings.kubernetes]\n")
	fmt.Fprintf(&b, "cluster-name = %s\n", strconv.Quote(jc.ClusterName))
	if jc.Endpoint != "" {
		fmt.Fprintf(&b, "api-server = %s\n", strconv.Quote(jc.Endpoint))
	}
	if jc.CABundle != "" {
		fmt.Fprintf(&b, "cluster-certificate = %s\n", strconv.Quote(jc.CABundle))
	}
	k := jc.Kubelet
	if k != nil {
		if k.MaxPods != nil {
			fmt.Fprintf(&b, "max-pods = %d\n", *k.MaxPods)
		}
		if k.ImageGCHighThresholdPercent != nil {
			fmt.Fprintf(&b, "image-gc-high-threshold-percent = %d\n", *k.ImageGCHighThresholdPercent)
		}
		if k.ImageGCLowThresholdPercent != nil {
			fmt.Fprintf(&b, "image-gc-low-threshold-percent = %d\n", *k.ImageGCLowThresholdPercent)
		}
	}
	tomlTable(&b, "settings.kubernetes.node-labels", jc.Labels)
	if len(jc.Taints) > 0 {
		b.WriteString("\n[settings.kubernetes.node-taints]\n")
		byKey := map[string][]string{}
		for _, t := range jc.Taints {
			byKey[t.Key] = append(byKey[t.Key], strconv.Quote(t.Value+":"+string(t.Effect)))
		}
		for _, k := range slices.Sorted(maps.Keys(byKey)) {
			fmt.Fprintf(&b, "%s = [%s]\n", strconv.Quote(k), strings.Join(byKey[k], ", "))
		}
	}
	if k != nil {
		tomlTable(&b, "settings.kubernetes.kube-reserved", k.KubeReserved)
		tomlTable(&b, "settings.kubernetes.system-reserved", k.SystemReserved)
		tomlTable(&b, "settings.kubernetes.eviction-hard", k.EvictionHard)
		tomlTable(&b, "settings.kubernetes.eviction-soft", k.EvictionSoft)
		if len(k.EvictionSoftGracePeriod) > 0 {
			grace := make(map[string]string, len(k.EvictionSoftGracePeriod))
			for s, d := range k.EvictionSoftGracePeriod {
				grace[s] = d.Duration.String()
			}
			tomlTable(&b, "settings.kubernetes.eviction-soft-grace-period", grace)
		}
	}
	return b.String(), nil
}

func tomlTable[V ~string](b *strings.Builder, name string, m map[string]V) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(b, "\n[%s]\n", name)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(b, "%s = %s\n", strconv.Quote(k), strconv.Quote(string(m[k])))
	}
}
