#!/usr/bin/env bash
# Every test: formatting, vet, staticcheck, and the whole test suite (unit,
# property, hostile suites against a real daemon, crash and tamper tests).
# Under NEXUS_REQUIRE_ALL=1 (set by .ci/run) a test that would skip for a
# missing package or privilege fails instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin"

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n "$unformatted" ]]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
command -v staticcheck >/dev/null || go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
staticcheck ./...
go test -race -count=1 -timeout 30m ./...
