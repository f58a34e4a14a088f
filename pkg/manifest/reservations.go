package manifest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ReservationsConfigMap is the name of the ConfigMap (in any namespace) whose
// data describes capacity reservations for simulate. Every value holds lines
// of `instanceType zone count`; blank lines and lines starting with # are
// ignored:
//
//	apiVersion: v1
//	kind: ConfigMap
//	metadata:
//	  name: stowage-reservations
//	data:
//	  reservations: |
//	    # ODCR for the inference fleet
//	    g6.xlarge us-east-1a 4
const ReservationsConfigMap = "stowage-reservations"

// Reservation is capacity already paid for: Count machines of InstanceType in Zone.
type Reservation struct {
	InstanceType string
	Zone         string
	Count        int
	// Source says where the line came from, for errors about it later
	// (e.g. an instance type the catalog does not know).
	Source string
}

func decodeConfigMap(d *decoder, obj string, j []byte) error {
	var cm corev1.ConfigMap
	if err := d.decodeTyped(obj, j, &cm); err != nil {
		return err
	}
	if cm.Name != ReservationsConfigMap {
		d.warnf(obj, "skipped: only the ConfigMap named %s is read", ReservationsConfigMap)
		return nil
	}
	keys := make([]string, 0, len(cm.Data))
	for k := range cm.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for i, line := range strings.Split(cm.Data[k], "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			field := fmt.Sprintf("data.%s line %d", k, i+1)
			r, err := parseReservation(line)
			if err != nil {
				return d.wrap(obj, field, err)
			}
			r.Source = (&Error{File: d.file, Document: d.doc, Item: d.item, Object: obj, Field: field}).location()
			d.set.Reservations = append(d.set.Reservations, r)
		}
	}
	return nil
}

func parseReservation(line string) (Reservation, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return Reservation{}, fmt.Errorf("want `instanceType zone count`, got %q", line)
	}
	for _, v := range f[:2] {
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return Reservation{}, fmt.Errorf("%q: %s", v, strings.Join(errs, "; "))
		}
	}
	n, err := strconv.Atoi(f[2])
	if err != nil || n <= 0 {
		return Reservation{}, fmt.Errorf("count must be a positive integer, got %q", f[2])
	}
	return Reservation{InstanceType: f[0], Zone: f[1], Count: n}, nil
}
