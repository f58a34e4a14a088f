package nodeclass

import (
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

func cmpIgnoreConditions() cmp.Option {
	return cmpopts.IgnoreFields(awsv1.EC2NodeClassStatus{}, "Conditions")
}
