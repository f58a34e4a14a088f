package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	provreqv1 "github.com/stowage-k8s/stowage/pkg/apis/provisioningrequest/v1"
	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/validation"
)

// DefaultMaxPods bounds how many pods all manifests together may expand
// into, so a typo such as `replicas: 1000000000` (or fifty Deployments of
// 200,000) fails clearly instead of exhausting memory. Options.MaxPods
// (simulate's --max-pods) raises it.
const DefaultMaxPods = 200_000

var (
	errRequired       = errors.New("required")
	errExactlyOrFirst = errors.New("exactly one of exactly and firstAvailable is required")
)

// MaxPodsPerObject bounds how many pods one workload may expand into, so a
// typo such as `replicas: 1000000000` fails clearly instead of exhausting memory.
const MaxPodsPerObject = 200_000

// MaxFileSize bounds one manifest file; files are streamed, but a single
// document is held whole while it is decoded.
const MaxFileSize = 256 << 20

// Options configure decoding.
type Options struct {
	// AllowUnknownFields reports fields the Kubernetes types do not have
	// (`nodeSelecter`, `requets`) as warnings instead of errors.
	AllowUnknownFields bool
	// MaxPods bounds the pods all manifests may expand into; 0 is DefaultMaxPods.
	MaxPods int
}

// Loader decodes manifests into one Set, checking what only makes sense
// across all of them: the total pod count, duplicate objects and pod names,
// and gangs whose size does not match their pods.
type Loader struct {
	opts Options
	set  *Set
	// objects maps "Kind namespace/name" to where it was first defined.
	objects map[string]string
	// pods maps namespace/name of each pod to the object that made it.
	pods  map[string]string
	gangs map[string]*gang
	// requested counts the pods ProvisioningRequests ask for, which
	// simulate makes later from their PodTemplates.
	requested int
	// skipped counts the pods left out, by reason, in the order first seen.
	skipped []*skipped
}

// skipped is how many pods were left out for one reason, and where the first was.
type skipped struct {
	reason skipReason
	pods   int
	first  string
}

// gang is what the manifests say about one pod group.
type gang struct {
	namespace, name string
	size            int
	pods            int
	where           string
}

// NewLoader returns a loader with the given options.
func NewLoader(opts Options) *Loader {
	if opts.MaxPods <= 0 {
		opts.MaxPods = DefaultMaxPods
	}
	return &Loader{opts: opts, set: &Set{}, objects: map[string]string{}, pods: map[string]string{}, gangs: map[string]*gang{}}
}

// Set returns everything loaded so far, with a warning for each gang whose
// pod count does not match its size.
func (l *Loader) Set() *Set {
	keys := make([]string, 0, len(l.gangs))
	for k := range l.gangs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	set := *l.set
	set.Warnings = slices.Clone(set.Warnings)
	// One warning per reason: a dump of a live cluster holds thousands of
	// running pods, and a line for each would bury the other warnings.
	for _, s := range l.skipped {
		pods, at := "pods", "first at"
		if s.pods == 1 {
			pods, at = "pod", "at"
		}
		set.Warnings = append(set.Warnings, fmt.Sprintf("skipped %d %s %s, %s %s: %s", s.pods, pods, s.reason.what, at, s.first, s.reason.why))
	}
	for _, k := range keys {
		g := l.gangs[k]
		switch {
		case g.pods > g.size:
			set.Warnings = append(set.Warnings, fmt.Sprintf("%s: gang %s/%s has %d pods but %s says %d: "+
				"it is planned as soon as any %d of them fit, and the rest are planned as they fit", g.where, g.namespace, g.name, g.pods, v1.LabelPodGroupSize, g.size, g.size))
		case g.pods < g.size:
			set.Warnings = append(set.Warnings, fmt.Sprintf("%s: gang %s/%s has %d pods but %s says %d: "+
				"none of them is planned until all %d exist", g.where, g.namespace, g.name, g.pods, v1.LabelPodGroupSize, g.size, g.size))
		}
	}
	return &set
}

// Decode reads one file's worth of manifests with the default Options: YAML
// or JSON, one or more documents, each an object or a List of objects. file
// names the input in errors and warnings.
func Decode(file string, data []byte) (*Set, error) {
	l := NewLoader(Options{})
	if err := l.Decode(file, bytes.NewReader(data)); err != nil {
		return nil, err
	}
	return l.Set(), nil
}

// Decode streams one file's worth of manifests from r into the loader's Set.
func (l *Loader) Decode(file string, r io.Reader) error {
	counted := &countingReader{r: r}
	yr := utilyaml.NewYAMLReader(bufio.NewReader(counted))
	summary := File{Name: file}
	doc := 0
	for {
		raw, err := yr.Read()
		if counted.n > MaxFileSize {
			return &Error{File: file, Document: doc + 1, Err: fmt.Errorf("the file is larger than %d MiB; split it", MaxFileSize>>20)}
		}
		if errors.Is(err, io.EOF) {
			l.set.Files = append(l.set.Files, summary)
			return nil
		}
		if err != nil {
			return &Error{File: file, Document: doc + 1, Err: err}
		}
		// Strict: a key given twice would otherwise keep its last value
		// silently (a second nodeSelector dropping the first).
		j, err := yaml.YAMLToJSONStrict(raw)
		if err != nil {
			e := &Error{File: file, Document: doc + 1, Err: fmt.Errorf("invalid YAML: %w", err)}
			if path, value := nonFinite(raw); path != "" {
				e.Field, e.Err = path, fmt.Errorf("%s is not a number Kubernetes accepts; quote it if it is meant as text", value)
			}
			return e
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || bytes.Equal(t, []byte("null")) {
			continue // empty document, e.g. a leading "---" or only comments
		}
		doc++
		d := &decoder{file: file, doc: doc, loader: l, set: l.set}
		if err := d.object(j, true); err != nil {
			return err
		}
		summary.Objects += max(d.objects, 1)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > MaxFileSize {
		return n, io.EOF
	}
	return n, err
}

// nonFinite finds the first unquoted .inf or .nan in a YAML document, which
// JSON (and so Kubernetes) cannot represent, and returns its path.
func nonFinite(raw []byte) (path, value string) {
	var root yamlv3.Node
	if yamlv3.Unmarshal(raw, &root) != nil {
		return "", ""
	}
	var walk func(n *yamlv3.Node, p string) (string, string)
	walk = func(n *yamlv3.Node, p string) (string, string) {
		switch n.Kind {
		case yamlv3.DocumentNode:
			for _, c := range n.Content {
				if q, v := walk(c, p); q != "" {
					return q, v
				}
			}
		case yamlv3.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				key := n.Content[i].Value
				if q, v := walk(n.Content[i+1], joinPath(p, key)); q != "" {
					return q, v
				}
			}
		case yamlv3.SequenceNode:
			for i, c := range n.Content {
				if q, v := walk(c, fmt.Sprintf("%s[%d]", p, i)); q != "" {
					return q, v
				}
			}
		case yamlv3.ScalarNode:
			if v := strings.ToLower(strings.TrimLeft(n.Value, "+-")); n.ShortTag() == "!!float" && (v == ".inf" || v == ".nan") {
				return p, n.Value
			}
		case yamlv3.AliasNode:
			return "", ""
		}
		return "", ""
	}
	return walk(&root, "")
}

func joinPath(p, key string) string {
	if p == "" {
		return key
	}
	return p + "." + key
}

// decoder decodes one document into set.
type decoder struct {
	file    string
	doc     int
	item    int
	loader  *Loader
	set     *Set
	objects int // objects read, counting List items
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
	d.set.Warnings = append(d.set.Warnings, fmt.Sprintf("%s: %s", d.where(object), fmt.Sprintf(format, args...)))
}

// where is "file: document N item M (object)".
func (d *decoder) where(object string) string {
	return (&Error{File: d.file, Document: d.doc, Item: d.item, Object: object}).location()
}

// fieldErrors turns pkg/validation's errors into one error naming each field.
func (d *decoder) fieldErrors(object string, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		detail := e.ErrorBody()
		out = append(out, d.wrap(object, e.Field, errors.New(detail)))
	}
	return errors.Join(out...)
}

// seen records an object or pod name and says where it was defined before, if it was.
func seen(m map[string]string, key, where string) (string, bool) {
	if prev, ok := m[key]; ok {
		return prev, true
	}
	m[key] = where
	return "", false
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
	d.objects++
	if prev, dup := seen(d.loader.objects, obj, d.where(obj)); dup {
		return d.errorf(obj, "metadata.name", "duplicate: %s is already defined at %s", obj, prev)
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
	if len(l.Items) == 0 {
		d.objects-- // an empty List holds nothing; Decode counts the document as one
	}
	return nil
}

func describe(h header) string {
	gv, _ := schema.ParseGroupVersion(h.APIVersion)
	gk := schema.GroupKind{Group: gv.Group, Kind: h.Kind}
	_, read := kinds[gk]
	switch {
	case h.Metadata.Name == "":
		return h.Kind
	case h.Metadata.Namespace == "" && (clusterScoped[gk] || !read):
		// Only the namespaced kinds simulate reads go to default; any other
		// kind is named as the file gives it (Nodes, StorageClasses and other
		// cluster-scoped objects have no namespace).
		return h.Kind + " " + h.Metadata.Name
	default:
		return h.Kind + " " + namespaceOrDefault(h.Metadata.Namespace) + "/" + h.Metadata.Name
	}
}

// clusterScoped are the cluster-scoped kinds simulate reads.
var clusterScoped = map[schema.GroupKind]bool{
	{Group: v1.Group, Kind: "NodePool"}:             true,
	{Group: v1.Group, Kind: "Commitment"}:           true,
	{Kind: "PersistentVolume"}:                      true,
	{Group: "storage.k8s.io", Kind: "StorageClass"}: true,
	{Group: "resource.k8s.io", Kind: "DeviceClass"}: true,
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
		return d.expand(obj, "Deployment", o.Name, o.Namespace, o.Spec.Replicas, "spec.replicas", &o.Spec.Template, nil)
	}},
	{Group: "apps", Kind: "ReplicaSet"}: {podSpecQuantities("spec.template.spec"), func(d *decoder, obj string, j []byte) error {
		var o appsv1.ReplicaSet
		if err := d.decodeTyped(obj, j, &o); err != nil {
			return err
		}
		return d.expand(obj, "ReplicaSet", o.Name, o.Namespace, o.Spec.Replicas, "spec.replicas", &o.Spec.Template, nil)
	}},
	{Group: "apps", Kind: "StatefulSet"}: {append(podSpecQuantities("spec.template.spec"),
		quantityPath{path: "spec.volumeClaimTemplates", kind: quantityList, each: "spec.resources.requests"},
		quantityPath{path: "spec.volumeClaimTemplates", kind: quantityList, each: "spec.resources.limits"}), decodeStatefulSet},
	{Group: "batch", Kind: "Job"}:       {podSpecQuantities("spec.template.spec"), decodeJob},
	{Group: "apps", Kind: "DaemonSet"}:  {podSpecQuantities("spec.template.spec"), decodeDaemonSet},
	{Kind: "ConfigMap"}:                 {nil, decodeConfigMap},
	{Group: v1.Group, Kind: "NodePool"}: {[]quantityPath{{path: "spec.limits", kind: quantityMap}}, decodeNodePool},
	// Storage: where volumes are, for volume topology.
	{Kind: "PersistentVolumeClaim"}: {claimQuantities("spec"), func(d *decoder, obj string, j []byte) error {
		var o corev1.PersistentVolumeClaim
		if err := d.decodeTyped(obj, j, &o); err != nil {
			return err
		}
		o.Namespace = namespaceOrDefault(o.Namespace)
		d.set.PersistentVolumeClaims = append(d.set.PersistentVolumeClaims, &o)
		return nil
	}},
	{Group: v1.Group, Kind: "Commitment"}: {nil, decodeCommitment},
	{Kind: "PersistentVolume"}: {[]quantityPath{{path: "spec.capacity", kind: quantityMap}}, func(d *decoder, obj string, j []byte) error {
		var o corev1.PersistentVolume
		if err := d.decodeTyped(obj, j, &o); err != nil {
			return err
		}
		d.set.PersistentVolumes = append(d.set.PersistentVolumes, &o)
		return nil
	}},
	{Group: "storage.k8s.io", Kind: "StorageClass"}: {nil, func(d *decoder, obj string, j []byte) error {
		var o storagev1.StorageClass
		if err := d.decodeTyped(obj, j, &o); err != nil {
			return err
		}
		d.set.StorageClasses = append(d.set.StorageClasses, &o)
		return nil
	}},
	{Group: "resource.k8s.io", Kind: "DeviceClass"}:           {nil, decodeDeviceClass},
	{Group: "resource.k8s.io", Kind: "ResourceClaimTemplate"}: {nil, decodeResourceClaimTemplate},
	{Group: "resource.k8s.io", Kind: "ResourceClaim"}:         {nil, decodeResourceClaim},
	{Kind: "PodTemplate"}:                                     {podSpecQuantities("template.spec"), decodePodTemplate},
	{Group: provreqv1.Group, Kind: "ProvisioningRequest"}:     {nil, decodeProvisioningRequest},
}

// decodeCommitment reads a Commitment strictly and checks it with
// pkg/validation, so simulate refuses what the API server refuses.
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
	if err := d.fieldErrors(obj, validation.Commitment(&c)); err != nil {
		return err
	}
	d.set.Commitments = append(d.set.Commitments, &c)
	return nil
}

// decodeStatefulSet expands a StatefulSet into its pods and the claims its
// volumeClaimTemplates create for each: <template>-<name>-<ordinal>, mounted
// by the pod of that ordinal, as the StatefulSet controller does.
func decodeStatefulSet(d *decoder, obj string, j []byte) error {
	var o appsv1.StatefulSet
	if err := d.decodeTyped(obj, j, &o); err != nil {
		return err
	}
	first := len(d.set.Pods)
	if err := d.expand(obj, "StatefulSet", o.Name, o.Namespace, o.Spec.Replicas, "spec.replicas", &o.Spec.Template, nil); err != nil {
		return err
	}
	ns := namespaceOrDefault(o.Namespace)
	for i, p := range d.set.Pods[first:] {
		// The labels the StatefulSet controller gives each pod.
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		p.Labels[appsv1.StatefulSetPodNameLabel] = p.Name
		p.Labels[appsv1.PodIndexLabel] = strconv.Itoa(i)
		for _, tmpl := range o.Spec.VolumeClaimTemplates {
			name := tmpl.Name + "-" + o.Name + "-" + strconv.Itoa(i)
			d.set.PersistentVolumeClaims = append(d.set.PersistentVolumeClaims, &corev1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec:       *tmpl.Spec.DeepCopy(),
			})
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: tmpl.Name, VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}})
		}
	}
	return nil
}

// decodeTyped decodes j into out, naming the field on type errors. Fields
// out's type does not have (`nodeSelecter`, `requets`) are errors, or
// warnings with Options.AllowUnknownFields: a misspelled field silently
// dropped plans an 8-GPU pod onto a machine without one.
func (d *decoder) decodeTyped(obj string, j []byte, out any) error {
	strict, err := kjson.UnmarshalStrict(j, out)
	if err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return d.errorf(obj, te.Field, "cannot use %s as %s", te.Value, te.Type)
		}
		return d.wrap(obj, "", err)
	}
	var errs []error
	for _, e := range strict {
		path, problem := strictField(e)
		if d.loader.opts.AllowUnknownFields {
			d.warnf(obj, "%s: %s; ignored", path, problem)
			continue
		}
		errs = append(errs, d.errorf(obj, path, "%s (a misspelling? --allow-unknown-fields ignores it)", problem))
	}
	return errors.Join(errs...)
}

var strictRE = regexp.MustCompile(`^(unknown|duplicate) field "(.*)"$`)

// strictField splits a strict decoding error into the field and what is wrong with it.
func strictField(err error) (path, problem string) {
	if m := strictRE.FindStringSubmatch(err.Error()); m != nil {
		return m[2], m[1] + " field"
	}
	return "", err.Error()
}

func decodePod(d *decoder, obj string, j []byte) error {
	var p corev1.Pod
	if err := d.decodeTyped(obj, j, &p); err != nil {
		return err
	}
	if len(p.Spec.Containers) == 0 {
		return d.errorf(obj, "spec.containers", "at least one container is required")
	}
	if err := d.fieldErrors(obj, append(validation.PodSpec(field.NewPath("spec"), &p.Spec),
		validation.Gang(field.NewPath("metadata", "labels"), p.Labels)...)); err != nil {
		return err
	}
	if r := podSkipReason(&p); r != nil {
		d.skip(obj, *r, 1)
		return nil
	}
	if err := d.admit(obj, 1); err != nil {
		return err
	}
	p.Namespace = namespaceOrDefault(p.Namespace)
	p.UID = podUID(p.Namespace, p.Name)
	p.Status = corev1.PodStatus{Phase: corev1.PodPending}
	if err := d.addPod(obj, &p); err != nil {
		return err
	}
	return nil
}

// admit checks that n more pods stay within Options.MaxPods.
func (d *decoder) admit(obj string, n int) error {
	total := len(d.set.Pods) + d.loader.requested + n
	if total <= d.loader.opts.MaxPods {
		return nil
	}
	field := "spec.replicas"
	if n == 1 {
		field = ""
	}
	return d.errorf(obj, field, "%d more pods would make %d in all, more than the limit of %d (--max-pods raises it)",
		n, total, d.loader.opts.MaxPods)
}

// addPod records a pod, refusing a second pod of the same name and counting
// it in its gang.
func (d *decoder) addPod(obj string, p *corev1.Pod) error {
	key := p.Namespace + "/" + p.Name
	if prev, dup := seen(d.loader.pods, key, d.where(obj)); dup {
		return d.errorf(obj, "metadata.name", "pod %s is also made by %s; rename one of them", key, prev)
	}
	// Each key may be a label or an annotation, as the solver reads them.
	read := func(key string) (value, where string) {
		if v := p.Labels[key]; v != "" {
			return v, "metadata.labels[" + key + "]"
		}
		return p.Annotations[key], "metadata.annotations[" + key + "]"
	}
	if name, _ := read(v1.LabelPodGroup); name != "" {
		raw, sizeField := read(v1.LabelPodGroupSize)
		size, _ := strconv.Atoi(raw)
		gk := p.Namespace + "/" + name
		g := d.loader.gangs[gk]
		if g == nil {
			g = &gang{namespace: p.Namespace, name: name, size: size, where: d.where(obj)}
			d.loader.gangs[gk] = g
		}
		if g.size != size {
			return d.errorf(obj, sizeField,
				"gang %s is of size %d here but %d at %s", gk, size, g.size, g.where)
		}
		g.pods++
	}
	d.set.Pods = append(d.set.Pods, p)
	return nil
}

func decodeJob(d *decoder, obj string, j []byte) error {
	var o batchv1.Job
	if err := d.decodeTyped(obj, j, &o); err != nil {
		return err
	}
	n, field := jobPods(o.Spec)
	var held *skipReason
	if o.Spec.Suspend != nil && *o.Spec.Suspend {
		held = &skipSuspended
	}
	before := len(d.set.Pods)
	if err := d.expand(obj, "Job", o.Name, o.Namespace, n, field, &o.Spec.Template, held); err != nil {
		return err
	}
	if held != nil {
		return nil
	}
	jobLabels(d.set.Pods[before:], &o)
	if d.set.JobPods == nil {
		d.set.JobPods = map[string]int{}
	}
	d.set.JobPods[namespaceOrDefault(o.Namespace)+"/"+o.Name] = len(d.set.Pods) - before
	return nil
}

// jobPods is how many pods a Job runs at once: its parallelism, which the
// API server defaults to 1, but never more than completions (as the
// controller sizes an Indexed Job). A nil count means 1.
func jobPods(s batchv1.JobSpec) (*int32, string) {
	switch {
	case s.Completions != nil && (s.Parallelism == nil || *s.Completions < *s.Parallelism) && *s.Completions < 1:
		return s.Completions, "spec.completions" // none, or negative (an error)
	case s.Parallelism != nil && s.Completions != nil && *s.Completions < *s.Parallelism:
		return s.Completions, "spec.completions"
	default:
		return s.Parallelism, "spec.parallelism"
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
	if err := d.fieldErrors(obj, validation.PodSpec(field.NewPath("spec", "template", "spec"), &o.Spec.Template.Spec)); err != nil {
		return err
	}
	ns := namespaceOrDefault(o.Namespace)
	p := podFromTemplate(&o.Spec.Template, "DaemonSet", o.Name, ns, o.Name)
	d.set.DaemonSetPods = append(d.set.DaemonSetPods, p)
	return nil
}

func decodeNodePool(d *decoder, obj string, j []byte) error {
	var np v1.NodePool
	// Decoded as a type without NodePool's tolerant UnmarshalJSON, so a
	// misspelled field is an error here rather than silently dropped.
	type strictNodePool v1.NodePool
	strict, err := kjson.UnmarshalStrict(j, (*strictNodePool)(&np))
	if err != nil {
		return d.wrap(obj, "", err)
	}
	if len(strict) > 0 {
		return d.wrap(obj, "", errors.Join(strict...))
	}
	if np.Namespace != "" {
		return d.errorf(obj, "metadata.namespace", "NodePools are cluster-scoped; remove the namespace")
	}
	// The checks the API server and the controller make, so simulate plans
	// only with pools a cluster would accept.
	if err := d.fieldErrors(obj, validation.NodePool(&np)); err != nil {
		return err
	}
	d.set.NodePools = append(d.set.NodePools, &np)
	return nil
}

// expand turns a workload into replicas pods named <name>-<i>. held, when
// set, says why the workload's pods do not exist yet: they are checked and
// counted as skipped, not made.
func (d *decoder) expand(obj, kind, name, namespace string, replicas *int32, replicasField string, tmpl *corev1.PodTemplateSpec, held *skipReason) error {
	n := int32(1)
	if replicas != nil {
		n = *replicas
	}
	if n < 0 {
		return d.errorf(obj, replicasField, "must not be negative, got %d", n)
	}
	if len(tmpl.Spec.Containers) == 0 {
		return d.errorf(obj, "spec.template.spec.containers", "at least one container is required")
	}
	if err := d.fieldErrors(obj, append(validation.PodSpec(field.NewPath("spec", "template", "spec"), &tmpl.Spec),
		validation.Gang(field.NewPath("spec", "template", "metadata", "labels"), tmpl.Labels)...)); err != nil {
		return err
	}
	if held == nil {
		held = templateSkipReason(&tmpl.Spec)
	}
	if held != nil {
		if n > 0 {
			d.skip(obj, *held, int(n))
		}
		return nil
	}
	if err := d.admit(obj, int(n)); err != nil {
		e := err.(*Error)
		e.Field = replicasField
		return e
	}
	ns := namespaceOrDefault(namespace)
	for i := range n {
		if err := d.addPod(obj, podFromTemplate(tmpl, kind, name, ns, name+"-"+strconv.Itoa(int(i)))); err != nil {
			return err
		}
	}
	return nil
}

// podFromTemplate makes one replica. Replicas share the template's spec
// (its slices and maps), so 200,000 replicas of a template with 10,000
// tolerations hold one copy of them: pods are read-only to the solver.
func podFromTemplate(tmpl *corev1.PodTemplateSpec, ownerKind, owner, namespace, name string) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta: metaPod,
		Spec:     tmpl.Spec,
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
	// each, for quantityList, is where in each item the quantity map is.
	each string
}

type quantityPathKind int

const (
	// quantityMap: path is a map of resource name to quantity.
	quantityMap quantityPathKind = iota
	// quantityContainers: path is a list of containers with resources.requests/limits.
	quantityContainers
	// quantityList: path is a list whose items hold a quantity map at each.
	quantityList
)

// claimQuantities are where a PersistentVolumeClaim spec at spec holds quantities.
func claimQuantities(spec string) []quantityPath {
	return []quantityPath{
		{path: spec + ".resources.requests", kind: quantityMap},
		{path: spec + ".resources.limits", kind: quantityMap},
	}
}

func podSpecQuantities(spec string) []quantityPath {
	return []quantityPath{
		{path: spec + ".containers", kind: quantityContainers},
		{path: spec + ".initContainers", kind: quantityContainers},
		{path: spec + ".overhead", kind: quantityMap},
		{path: spec + ".resources.requests", kind: quantityMap},
		{path: spec + ".resources.limits", kind: quantityMap},
		{path: spec + ".volumes", kind: quantityList, each: "ephemeral.volumeClaimTemplate.spec.resources.requests"},
		{path: spec + ".volumes", kind: quantityList, each: "ephemeral.volumeClaimTemplate.spec.resources.limits"},
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
		case quantityList:
			list, ok := v.([]any)
			if !ok {
				continue // the typed decode reports the wrong type with its path
			}
			for i, item := range list {
				m, ok := item.(map[string]any)
				if !ok {
					continue
				}
				q, ok := lookup(m, strings.Split(qp.each, "."))
				if !ok || q == nil {
					continue
				}
				if field, err := checkQuantityMap(fmt.Sprintf("%s[%d].%s", qp.path, i, qp.each), q); err != nil {
					return field, err
				}
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
		if _, err := resource.ParseQuantity(s); err != nil {
			return field, fmt.Errorf("%q: %w", s, err)
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
