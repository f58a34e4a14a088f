package cloudtest

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/index"
)

// Scheme holds the core types and stowage.dev/v1.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// NewClientBuilder is a fake client builder with Stowage's scheme, the
// NodeClaim status subresource and the field indexes the controllers use.
func NewClientBuilder() *fake.ClientBuilder {
	b := fake.NewClientBuilder().WithScheme(Scheme()).WithStatusSubresource(&v1.NodeClaim{})
	for _, idx := range index.Funcs() {
		b = b.WithIndex(idx.Object, idx.Field, idx.Extract)
	}
	return b
}
