package cloudprovider

import (
	"errors"
	"fmt"
	"strings"

	"github.com/samber/lo"
)

// InsufficientCapacityError says the cloud had no capacity in these pools.
// Callers mark exactly these offerings unavailable for a while and try others.
type InsufficientCapacityError struct {
	Offerings []OfferingID
	Err       error
}

// NewInsufficientCapacityError wraps err for the given pools.
func NewInsufficientCapacityError(err error, offerings ...OfferingID) *InsufficientCapacityError {
	return &InsufficientCapacityError{Offerings: offerings, Err: err}
}

func (e *InsufficientCapacityError) Error() string {
	ids := lo.Map(e.Offerings, func(o OfferingID, _ int) string { return o.String() })
	msg := "insufficient capacity in " + strings.Join(ids, ", ")
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *InsufficientCapacityError) Unwrap() error { return e.Err }

// IsInsufficientCapacity reports whether err is (or wraps) an InsufficientCapacityError.
func IsInsufficientCapacity(err error) bool {
	var ice *InsufficientCapacityError
	return errors.As(err, &ice)
}

// InsufficientCapacityOfferings returns the pools an error names, if any.
func InsufficientCapacityOfferings(err error) []OfferingID {
	var ice *InsufficientCapacityError
	if errors.As(err, &ice) {
		return ice.Offerings
	}
	return nil
}

// NotFoundError says the machine does not exist (any more).
type NotFoundError struct{ ProviderID string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("instance %s not found", e.ProviderID)
}

// NewNotFoundError returns a NotFoundError for providerID.
func NewNotFoundError(providerID string) *NotFoundError {
	return &NotFoundError{ProviderID: providerID}
}

// IsNotFound reports whether err is (or wraps) a NotFoundError.
func IsNotFound(err error) bool {
	var nf *NotFoundError
	return errors.As(err, &nf)
}
