// Package crds holds the tests that install Stowage's CustomResourceDefinitions
// into a real API server and check that their validation (OpenAPI schema and
// CEL rules from the markers in pkg/apis/v1) accepts good objects and rejects
// bad ones with a message naming the field.
package crds
