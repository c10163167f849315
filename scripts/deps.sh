#!/usr/bin/env bash
# Installs what the demo and the tests need: the Debian packages listed in
# scripts/debian-packages.txt (only those missing), a Go toolchain, and the
# project's Go modules. Safe to run again; it changes nothing that is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"

missing=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < scripts/debian-packages.txt
if ! command -v go >/dev/null; then
  missing+=(golang-go)
fi
if ((${#missing[@]})); then
  echo "deps: installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# go.mod names the Go version it needs; a Go of 1.21 or later fetches that
# toolchain through the module proxy by itself.
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
if ((go_minor < 21)); then
  echo "deps: $(go env GOVERSION) is too old to fetch the toolchain go.mod asks for; install Go 1.21 or later" >&2
  exit 1
fi
go mod download
