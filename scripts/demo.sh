#!/usr/bin/env bash
# The main job: builds nexus, starts the daemon on a temporary data dir with the
# embedded defaults, creates an IMVU and shows what it receives working.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export PATH="$PATH:/usr/local/go/bin"
mkdir -p bin
go build -o bin/nexus ./cmd/nexus
exec ./bin/nexus demo "$@"
