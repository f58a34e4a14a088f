package aws

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// imageFamily decides the bootstrap format of user data.
type imageFamily string

const (
	familyAL2023       imageFamily = "al2023"
	familyBottlerocket imageFamily = "bottlerocket"
)

// familyOf is Bottlerocket when the node class selects a Bottlerocket alias
// or resolved only Bottlerocket-named images, AL2023 otherwise.
func familyOf(nc *awsv1.EC2NodeClass) imageFamily {
	for _, t := range nc.Spec.AMISelectorTerms {
		if strings.HasPrefix(t.Alias, "bottlerocket") {
			return familyBottlerocket
		}
		if t.Alias != "" {
			return familyAL2023
		}
	}
	if len(nc.Status.AMIs) > 0 && !slices.ContainsFunc(nc.Status.AMIs, func(a awsv1.AMI) bool {
		return !strings.Contains(strings.ToLower(a.Name), "bottlerocket")
	}) {
		return familyBottlerocket
	}
	return familyAL2023
}

// joinConfig is what a node needs to join the cluster and come up labelled
// and tainted the way the pool says.
type joinConfig struct {
	ClusterName string
	Endpoint    string
	CABundle    string
	CIDR        string
	Labels      map[string]string
	Taints      []corev1.Taint
}

// ErrUserData is wrapped when a node class's user data cannot be merged.
var ErrUserData = errors.New("invalid userData")

const mimeBoundary = "//stowage//"

// renderUserData returns base64 user data: the node class's own part first,
// then Stowage's bootstrap, so the user's commands run before the node joins.
func renderUserData(family imageFamily, custom string, jc joinConfig) (string, error) {
	var out string
	var err error
	switch family {
	case familyBottlerocket:
		out, err = bottlerocketUserData(custom, jc)
	default:
		out, err = al2023UserData(custom, jc)
	}
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString([]byte(out)), nil
}

func al2023UserData(custom string, jc joinConfig) (string, error) {
	var b bytes.Buffer
	b.WriteString("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"" + mimeBoundary + "\"\n\n")
	if custom = strings.TrimSpace(custom); custom != "" {
		if strings.HasPrefix(custom, "MIME-Version:") {
			return "", fmt.Errorf("%w: AL2023 userData must be a single part (shell script or NodeConfig), not a MIME document", ErrUserData)
		}
		ct := "text/x-shellscript; charset=\"us-ascii\""
		if strings.Contains(custom, "kind: NodeConfig") {
			ct = "application/node.eks.aws"
		}
		fmt.Fprintf(&b, "--%s\nContent-Type: %s\n\n%s\n\n", mimeBoundary, ct, custom)
	}
	fmt.Fprintf(&b, "--%s\nContent-Type: application/node.eks.aws\n\n", mimeBoundary)
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
	b.WriteString("  kubelet:\n    flags:\n")
	if l := labelFlag(jc.Labels); l != "" {
		fmt.Fprintf(&b, "      - %s\n", strconv.Quote("--node-labels="+l))
	}
	if t := taintFlag(jc.Taints); t != "" {
		fmt.Fprintf(&b, "      - %s\n", strconv.Quote("--register-with-taints="+t))
	}
	fmt.Fprintf(&b, "--%s--\n", mimeBoundary)
	return b.String(), nil
}

func bottlerocketUserData(custom string, jc joinConfig) (string, error) {
	var b strings.Builder
	if custom = strings.TrimSpace(custom); custom != "" {
		// Without a TOML parser a merge could silently drop keys; refuse
		// instead of guessing which side wins.
		for _, owned := range []string{"[settings.kubernetes]", "[settings.kubernetes.node-labels]", "[settings.kubernetes.node-taints]"} {
			if strings.Contains(custom, owned) {
				return "", fmt.Errorf("%w: Bottlerocket userData must not set %s: Stowage writes it", ErrUserData, owned)
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
	if len(jc.Labels) > 0 {
		b.WriteString("\n[settings.kubernetes.node-labels]\n")
		for _, k := range slices.Sorted(maps.Keys(jc.Labels)) {
			fmt.Fprintf(&b, "%s = %s\n", strconv.Quote(k), strconv.Quote(jc.Labels[k]))
		}
	}
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
	return b.String(), nil
}

func labelFlag(labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}

func taintFlag(taints []corev1.Taint) string {
	parts := make([]string, 0, len(taints))
	for _, t := range taints {
		if t.Value == "" {
			parts = append(parts, t.Key+":"+string(t.Effect))
		} else {
			parts = append(parts, t.Key+"="+t.Value+":"+string(t.Effect))
		}
	}
	return strings.Join(parts, ",")
}
