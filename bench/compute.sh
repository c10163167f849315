#!/usr/bin/env bash
# Compute benchmark (root; runc, qemu-system-x86 and a Debian cloud kernel):
#   - a busybox `true` container created, started and exited through nexus
#     (signed action, 17 gates, ledger, supervisor, runc) against bare
#     `runc run` of the same kind of bundle; target <= 1.2x
#   - a VM booted to its init's marker through nexus against bare qemu with
#     the same kernel and an initramfs of the same build; target <= 1.1x
#   - one supervisor pass (metering included) over 50 running containers,
#     as a share of one CPU at the 2 s pass interval; target <= 1%
# Variants alternate, ROUNDS times (default 5); medians are compared.
#
#   sudo bash bench/compute.sh
#   STRICT=1 bash bench/compute.sh   # exit 1 when a target is missed
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
for tool in runc qemu-system-x86_64 go; do
  command -v "$tool" >/dev/null || { echo "compute.sh: $tool is missing (bash scripts/deps.sh installs it)" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "compute.sh: needs root (cgroups, mounts, runc)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/compute.test" ./compute/
go test -c -o "$work/oci.test" ./compute/oci/
go test -c -o "$work/vm.test" ./compute/vm/

# ms NAME BINARY BENCH TIMES: runs one benchmark, prints its ns/op in ms.
ms() {
  "$2" -test.run x -test.bench "^$3\$" -test.benchtime "$4" 2>&1 | awk -v n="$1" '/ns\/op/ {printf "%.2f\n", $3 / 1e6; found = 1} END {if (!found) {print "compute.sh: " n " failed" > "/dev/stderr"; exit 1}}'
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

nx=() bare=() nvm=() qvm=()
for r in $(seq "$rounds"); do
  nx+=("$(ms "nexus container" "$work/compute.test" BenchmarkRunTrue 20x)")
  bare+=("$(ms "bare runc" "$work/oci.test" BenchmarkBareRuncRun 20x)")
  nvm+=("$(ms "nexus vm" "$work/compute.test" BenchmarkBootVM 2x)")
  qvm+=("$(ms "bare qemu" "$work/vm.test" BenchmarkBareQemu/microvm 2x)")
  echo "round $r: container nexus ${nx[-1]} ms, runc ${bare[-1]} ms | vm nexus ${nvm[-1]} ms, qemu ${qvm[-1]} ms"
done
pass=$("$work/compute.test" -test.run x -test.bench '^BenchmarkReconcile50$' -test.benchtime 20x 2>&1 | awk '/ns\/op/ {print $3 / 1e6, $5}')

mc=$(median "${nx[@]}") mr=$(median "${bare[@]}") mv=$(median "${nvm[@]}") mq=$(median "${qvm[@]}")
rc=$(awk -v a="$mc" -v b="$mr" 'BEGIN {printf "%.2f", a / b}')
rv=$(awk -v a="$mv" -v b="$mq" 'BEGIN {printf "%.2f", a / b}')
okc=$(awk -v r="$rc" 'BEGIN {print (r <= 1.2) ? "met" : "MISSED"}')
okv=$(awk -v r="$rv" 'BEGIN {print (r <= 1.1) ? "met" : "MISSED"}')
read -r pass_ms share <<<"$pass"
okm=$(awk -v s="$share" 'BEGIN {print (s <= 1) ? "met" : "MISSED"}')
echo "container create+start+exit: nexus $mc ms, bare runc $mr ms = ${rc}x (target <= 1.2x: $okc)"
echo "VM boot to marker:           nexus $mv ms, bare qemu $mq ms = ${rv}x (target <= 1.1x: $okv)"
echo "supervisor pass, 50 running containers: $pass_ms ms = ${share}% of a CPU every 2 s (target <= 1%: $okm)"
[[ ${STRICT:-0} == 1 && ( $okc != met || $okv != met || $okm != met ) ]] && exit 1
exit 0
