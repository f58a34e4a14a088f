package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// MaxPodsPerObject bounds how many pods one workload may expand into, so a
// typo such as `replicas: 1000000000` fails clearly instead of exhausting memory.
const MaxPodsPerObject = 200_000

// Decode reads one file's worth of manifests: YAML or JSON, one or more
// documents, each an object or a List of objects. file names the input in
// errors and warnings.
func Decode(file string, data []byte) (*Set, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	set := &Set{}
	doc := 0
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return set, nil
		}
		if err != nil {
			return nil, &Error{File: file, Document: doc + 1, Err: err}
		}
		j, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, &Error{File: file, Document: doc + 1, Err: fmt.Errorf("invalid YAML: %w", err)}
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || bytes.Equal(t, []byte("null")) {
			continue // empty document, e.g. a leading "---" or only comments
		}
		doc++
		d := &decoder{file: file, doc: doc, set: set}
		if err := d.object(j, true); err != nil {
			return nil, err
		}
	}
}

// decoder decodes one document into set.
type decoder struct {
	file string
	doc  int
	item int
	set  *Set
}

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

func (d *decoder) errorf(object, field, format string, args ...any) error {
	return &Error{File: d.file, Document: d.doc, Item: d.item, Object: object, Field: field, Err: fmt.Errorf(format, args...)}
}

func (d *decoder) wrap(object, field string, err error) error {
	return &Error{File: d.file, Document: d.doc, Item: d.item, Object: object, Field: field, Err: err}
}

func (d *decoder) warnf(object, format string, args ...any) {
	where := fmt.Sprintf("%s: document %d", d.file, d.doc)
	if d.item > 0 {
		where += fmt.Sprintf(" item %d", d.item)
	}
	d.set.Warnings = append(d.set.Warnings, fmt.Sprintf("%s (%s): %s", where, object, fmt.Sprintf(format, args...)))
}

// object decodes one object; topLevel is false for List items, which may
// not be Lists themselves.
func (d *decoder) object(j []byte, topLevel bool) error {
	if t := bytes.TrimSpace(j); len(t) == 0 || t[0] != '{' {
		return d.errorf("", "", "not a Kubernetes object: want a mapping with apiVersion and kind")
	}
	var h header
	if err := json.Unmarshal(j, &h); err != nil {
		return d.wrap("", "", fmt.Errorf("not a Kubernetes object: %w", err))
	}
	if h.Kind == "" {
		return d.errorf("", "kind", "required")
	}
	obj := describe(h)
	gv, err := schema.ParseGroupVersion(h.APIVersion)
	if err != nil || h.APIVersion == "" {
		return d.errorf(obj, "apiVersion", "must be group/version or v1, got %q", h.APIVersion)
	}
	if strings.HasSuffix(h.Kind, "List") {
		if !topLevel {
			return d.errorf(obj, "", "a List inside a List is not supported")
		}
		return d.list(obj, j)
	}
	gk := schema.GroupKind{Group: gv.Group, Kind: h.Kind}
	kind, known := kinds[gk]
	if !known {
		if gk.Kind == "NodePool" && gk.Group == "karpenter.sh" {
			d.warnf(obj, "skipped: karpenter.sh NodePools must be converted first (stowage import karpenter)")
			return nil
		}
		d.warnf(obj, "skipped: kind %s is not read by simulate", gk)
		return nil
	}
	if gv.Version != "v1" {
		d.warnf(obj, "skipped: %s is not supported, use %s/v1", h.APIVersion, gv.Group)
		return nil
	}
	if h.Metadata.Name == "" {
		return d.errorf(obj, "metadata.name", "required")
	}
	var generic map[string]any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(j, &generic); err != nil {
		return d.wrap(obj, "", err)
	}
	if field, err := checkQuantities(generic, kind.quantityPaths); err != nil {
		return d.wrap(obj, field, err)
	}
	return kind.decode(d, obj, j)
}

func (d *decoder) list(obj string, j []byte) error {
	var l struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(j, &l); err != nil {
		return d.wrap(obj, "items", err)
	}
	for i, item := range l.Items {
		d.item = i + 1
		if err := d.object(item, false); err != nil {
			return err
		}
	}
	d.item = 0
	return nil
}

func describe(h header) string {
	switch {
	case h.Metadata.Name == "":
		return h.Kind
	case h.Metadata.Namespace == "" && (h.Kind == "NodePool" || h.Kind == "Commitment"):
		return h.Kind + " " + h.Metadata.Name
	default:
		return h.Kind + " " + namespaceOrDefault(h.Metadata.Namespace) + "/" + h.Metadata.Name
	}
}

func namespaceOrDefault(ns string) string {
	if ns == "" {
		return corev1.NamespaceDefault
	}
	return ns
}

// kind is how one supported kind is decoded.
type kind struct {
	// quantityPaths are where resource quantities live, checked before the
	// typed decode because a quantity's own parse error does not say where.
	quantityPaths []quantityPath
	decode        func(d *decoder, obj string, j []byte) error
}

var kinds = map[schema.GroupKind]kind{
	{Kind: "Pod"}: {podSpecQuantities("spec"), decodePod},
	{Group: "apps", Kind: "Deployment"}: {podSpecQuantities("spec.template.spec"), func(d *decoder, obj string, j []byte) error {
		var o appsv1.Deployment
		if err := d.decodeTyped(obj, j, &o); err != nil {
			return err
		}
		return d.expand(obj, "Deployment", o.Name, o.Namespace, o.Spec.Replicas, "spec.replicas", &o.Spec.Template)
	}},
	{Group: "apps", Kind: "ReplicaSet"}: {podSpecQuantities("spec.template.spec"), func(d *decoder, obj string, j []byte) error {
		var o appsv1.ReplicaSet
		if err := d.decodeTyped(obj, j, &o); err != nil {
			return err
		}
		return d.expand(obj, "ReplicaSet", o.Name, o.Namespace, o.Spec.Replicas, "spec.replicas", &o.Spec.Template)
	}},
	{Group: "apps", Kind: "StatefulSet"}: {podSpecQuantities("spec.template.spec"), func(d *decoder, obj string, j []byte) error {
		var o appsv1.StatefulSet
		if err := d.decodeTyped(obj, j, &o); err != nil {
			return err
		}
		return d.expand(obj, "StatefulSet", o.Name, o.Namespace, o.Spec.Replicas, "spec.replicas", &o.Spec.Template)
	}},
	{Group: "batch", Kind: "Job"}:         {podSpecQuantities("spec.template.spec"), decodeJob},
	{Group: "apps", Kind: "DaemonSet"}:    {podSpecQuantities("spec.template.spec"), decodeDaemonSet},
	{Kind: "ConfigMap"}:                   {nil, decodeConfigMap},
	{Group: v1.Group, Kind: "NodePool"}:   {[]quantityPath{{path: "spec.limits", kind: quantityMap}}, decodeNodePool},
	{Group: v1.Group, Kind: "Commitment"}: {nil, decodeCommitment},
}

// decodeCommitment reads a Commitment strictly and checks what the CRD's
// validation would, so simulate refuses what the API server refuses.
func decodeCommitment(d *decoder, obj string, j []byte) error {
	var c v1.Commitment
	strict, err := kjson.UnmarshalStrict(j, &c)
	if err != nil {
		return d.wrap(obj, "", err)
	}
	if len(strict) > 0 {
		return d.wrap(obj, "", errors.Join(strict...))
	}
	if c.Namespace != "" {
		return d.errorf(obj, "metadata.namespace", "Commitments are cluster-scoped; remove the namespace")
	}
	s := c.Spec
	switch s.Type {
	case v1.CommitmentDiscount:
		if s.Count != nil || s.AmountPerHour != nil {
			return d.errorf(obj, "spec", "a Discount takes neither count nor amountPerHour")
		}
		if s.DiscountPercent == nil || *s.DiscountPercent <= 0 {
			return d.errorf(obj, "spec.discountPercent", "a Discount needs discountPercent above 0")
		}
	case v1.CommitmentSavingsPlan, v1.CommitmentReservedInstances, v1.CommitmentCommittedUse:
		if (s.Count != nil) == (s.AmountPerHour != nil) {
			return d.errorf(obj, "spec", "exactly one of count and amountPerHour is required")
		}
		if s.Type == v1.CommitmentSavingsPlan && s.AmountPerHour == nil {
			return d.errorf(obj, "spec.amountPerHour", "a SavingsPlan is an amount per hour")
		}
		if s.Type == v1.CommitmentReservedInstances && s.Count == nil {
			return d.errorf(obj, "spec.count", "ReservedInstances are a count of machines")
		}
	default:
		return d.errorf(obj, "spec.type", "%q: want SavingsPlan, ReservedInstances, CommittedUse or Discount", s.Type)
	}
	if s.Count != nil && *s.Count < 1 {
		return d.errorf(obj, "spec.count", "must be at least 1")
	}
	if s.AmountPerHour != nil && s.AmountPerHour.Sign() <= 0 {
		return d.errorf(obj, "spec.amountPerHour", "must be above 0")
	}
	if s.DiscountPercent != nil && (*s.DiscountPercent < 0 || *s.DiscountPercent > 99) {
		return d.errorf(obj, "spec.discountPercent", "must be between 0 and 99")
	}
	d.set.Commitments = append(d.set.Commitments, &c)
	return nil
}

// decodeTyped decodes j into out, naming the field on type errors.
func (d *decoder) decodeTyped(obj string, j []byte, out any) error {
	if err := json.Unmarshal(j, out); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return d.errorf(obj, te.Field, "cannot use %s as %s", te.Value, te.Type)
		}
		return d.wrap(obj, "", err)
	}
	return nil
}

func decodePod(d *decoder, obj string, j []byte) error {
	var p corev1.Pod
	if err := d.decodeTyped(obj, j, &p); err != nil {
		return err
	}
	if len(p.Spec.Containers) == 0 {
		return d.errorf(obj, "spec.containers", "at least one container is required")
	}
	p.Namespace = namespaceOrDefault(p.Namespace)
	p.UID = podUID(p.Namespace, p.Name)
	p.Status = corev1.PodStatus{Phase: corev1.PodPending}
	d.set.Pods = append(d.set.Pods, &p)
	return nil
}

func decodeJob(d *decoder, obj string, j []byte) error {
	var o batchv1.Job
	if err := d.decodeTyped(obj, j, &o); err != nil {
		return err
	}
	n, field := jobPods(o.Spec)
	return d.expand(obj, "Job", o.Name, o.Namespace, n, field, &o.Spec.Template)
}

// jobPods is how many pods a Job runs at once: its parallelism, or its
// completions when parallelism is unset, but never more than completions.
func jobPods(s batchv1.JobSpec) (*int32, string) {
	switch {
	case s.Parallelism != nil && s.Completions != nil && *s.Completions < *s.Parallelism && *s.Completions >= 0:
		return s.Completions, "spec.completions"
	case s.Parallelism != nil:
		return s.Parallelism, "spec.parallelism"
	default:
		return s.Completions, "spec.completions"
	}
}

func decodeDaemonSet(d *decoder, obj string, j []byte) error {
	var o appsv1.DaemonSet
	if err := d.decodeTyped(obj, j, &o); err != nil {
		return err
	}
	if len(o.Spec.Template.Spec.Containers) == 0 {
		return d.errorf(obj, "spec.template.spec.containers", "at least one container is required")
	}
	ns := namespaceOrDefault(o.Namespace)
	p := podFromTemplate(&o.Spec.Template, "DaemonSet", o.Name, ns, o.Name)
	d.set.DaemonSetPods = append(d.set.DaemonSetPods, p)
	return nil
}

func decodeNodePool(d *decoder, obj string, j []byte) error {
	var np v1.NodePool
	strict, err := kjson.UnmarshalStrict(j, &np)
	if err != nil {
		return d.wrap(obj, "", err)
	}
	if len(strict) > 0 {
		return d.wrap(obj, "", errors.Join(strict...))
	}
	if np.Namespace != "" {
		return d.errorf(obj, "metadata.namespace", "NodePools are cluster-scoped; remove the namespace")
	}
	d.set.NodePools = append(d.set.NodePools, &np)
	return nil
}

// expand turns a workload into replicas pods named <name>-<i>.
func (d *decoder) expand(obj, kind, name, namespace string, replicas *int32, field string, tmpl *corev1.PodTemplateSpec) error {
	n := int32(1)
	if replicas != nil {
		n = *replicas
	}
	if n < 0 {
		return d.errorf(obj, field, "must not be negative, got %d", n)
	}
	if n > MaxPodsPerObject {
		return d.errorf(obj, field, "%d pods is more than the %d one object may expand into", n, MaxPodsPerObject)
	}
	if len(tmpl.Spec.Containers) == 0 {
		return d.errorf(obj, "spec.template.spec.containers", "at least one container is required")
	}
	ns := namespaceOrDefault(namespace)
	for i := range n {
		d.set.Pods = append(d.set.Pods, podFromTemplate(tmpl, kind, name, ns, name+"-"+strconv.Itoa(int(i))))
	}
	return nil
}

func podFromTemplate(tmpl *corev1.PodTemplateSpec, ownerKind, owner, namespace, name string) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta: metaPod,
		Spec:     *tmpl.Spec.DeepCopy(),
		Status:   corev1.PodStatus{Phase: corev1.PodPending},
	}
	p.Name = name
	p.Namespace = namespace
	p.UID = podUID(namespace, name)
	if tmpl.Labels != nil {
		p.Labels = make(map[string]string, len(tmpl.Labels))
		for k, v := range tmpl.Labels {
			p.Labels[k] = v
		}
	}
	if tmpl.Annotations != nil {
		p.Annotations = make(map[string]string, len(tmpl.Annotations))
		for k, v := range tmpl.Annotations {
			p.Annotations[k] = v
		}
	}
	controller := true
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: ownerAPIVersion[ownerKind], Kind: ownerKind, Name: owner, Controller: &controller}}
	return p
}

var ownerAPIVersion = map[string]string{
	"Deployment":  "apps/v1",
	"ReplicaSet":  "apps/v1",
	"StatefulSet": "apps/v1",
	"DaemonSet":   "apps/v1",
	"Job":         "batch/v1",
}

// quantityPath is a place in an object that holds resource quantities.
type quantityPath struct {
	path string
	kind quantityPathKind
}

type quantityPathKind int

const (
	// quantityMap: path is a map of resource name to quantity.
	quantityMap quantityPathKind = iota
	// quantityContainers: path is a list of containers with resources.requests/limits.
	quantityContainers
)

func podSpecQuantities(spec string) []quantityPath {
	return []quantityPath{
		{path: spec + ".containers", kind: quantityContainers},
		{path: spec + ".initContainers", kind: quantityContainers},
		{path: spec + ".overhead", kind: quantityMap},
	}
}

// checkQuantities parses every quantity at paths in obj and returns the path
// of the first bad one.
func checkQuantities(obj map[string]any, paths []quantityPath) (string, error) {
	for _, qp := range paths {
		v, ok := lookup(obj, strings.Split(qp.path, "."))
		if !ok || v == nil {
			continue
		}
		switch qp.kind {
		case quantityMap:
			if field, err := checkQuantityMap(qp.path, v); err != nil {
				return field, err
			}
		case quantityContainers:
			list, ok := v.([]any)
			if !ok {
				return qp.path, errors.New("must be a list")
			}
			for i, c := range list {
				cm, ok := c.(map[string]any)
				if !ok {
					continue // the typed decode reports the wrong type with its path
				}
				for _, which := range []string{"requests", "limits"} {
					rl, ok := lookup(cm, []string{"resources", which})
					if !ok || rl == nil {
						continue
					}
					if field, err := checkQuantityMap(fmt.Sprintf("%s[%d].resources.%s", qp.path, i, which), rl); err != nil {
						return field, err
					}
				}
			}
		}
	}
	return "", nil
}

func checkQuantityMap(path string, v any) (string, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return path, errors.New("must be a map of resource name to quantity")
	}
	for name, q := range m {
		field := path + "." + name
		var s string
		switch q := q.(type) {
		case string:
			s = q
		case int64:
			s = strconv.FormatInt(q, 10)
		case float64:
			s = strconv.FormatFloat(q, 'f', -1, 64)
		default:
			return field, fmt.Errorf("must be a quantity such as \"500m\" or \"2Gi\", got %T", q)
		}
		parsed, err := resource.ParseQuantity(s)
		if err != nil {
			return field, fmt.Errorf("%q: %w", s, err)
		}
		if parsed.Sign() < 0 {
			return field, fmt.Errorf("must not be negative, got %s", s)
		}
	}
	return "", nil
}

func lookup(obj map[string]any, path []string) (any, bool) {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = m[p]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

var metaPod = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}

// podUID is deterministic so that runs over the same manifests are comparable.
func podUID(namespace, name string) types.UID {
	return types.UID(namespace + "/" + name)
}
