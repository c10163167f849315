package main

import (
	"github.com/nexus-core/nexus/bundle"
	"github.com/nexus-core/nexus/handshake"
)

// serviceKinds lists the registrations of the services beyond the core, for
// offline replay; the daemon registers the same.
func serviceKinds() []func(*handshake.Engine) error {
	return nil
}

// serviceImportSteps lists the actions that restore the services' data from a
// bundle.
func serviceImportSteps(b *bundle.Bundle, send func(kind string, params any) func() error) ([]step, error) {
	return nil, nil
}
