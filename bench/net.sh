#!/usr/bin/env bash
# Network data plane benchmark (package netfab), all in one run:
#   - BenchmarkSetup: Sync of one more IMVU (namespace, bridge, one workload)
#     onto a plane of up to 50 IMVUs, per IMVU          (target <= 20 ms)
#   - BenchmarkDrift: hand edit -> reverted by Run, p50 and max over 100
#     edits                                              (target <= 1 s)
#   - iperf3, one TCP stream: two workloads of different IMVUs through the
#     plane (grant, metering and ceilings on, set high) against two
#     namespaces joined by a bare veth                   (target >= 0.9x)
#     Also shown: the bare veth with the plane's BIG TCP sizes, and two
#     workloads of one IMVU (bridge only). Variants alternate, ROUNDS times;
#     medians are compared (the machine is shared, single runs swing).
#
#   sudo bash bench/net.sh               # ROUNDS=3 SECONDS_PER_RUN=5
#   STRICT=1 sudo bash bench/net.sh      # exit 1 when a target is missed
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
secs=${SECONDS_PER_RUN:-5}
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
export NEXUS_REQUIRE_ALL=1

for tool in go iperf3 ip nft; do
  command -v "$tool" >/dev/null || { echo "net.sh: $tool is missing" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "net.sh: needs root (network namespaces)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/netfab.test" ./netfab

echo "machine: $(nproc) CPUs, kernel $(uname -r); iperf3 $(iperf3 --version | awk 'NR==1 {print $2}'), ${secs}s per run, $rounds rounds"
"$work/netfab.test" -test.run '^$' -test.bench '^BenchmarkSetup$' -test.benchtime 100x | tee "$work/setup.txt" | grep '^Benchmark' || true
"$work/netfab.test" -test.run '^$' -test.bench '^BenchmarkDrift$' -test.benchtime 100x | tee "$work/drift.txt" | grep '^Benchmark' || true
setup_ms=$(awk '/^BenchmarkSetup/ {printf "%.1f", $3 / 1e6}' "$work/setup.txt")
setup_max=$(awk '/^BenchmarkSetup/ {for (i = 1; i < NF; i++) if ($(i+1) == "max-ms/IMVU") print $i}' "$work/setup.txt")
drift_p50=$(awk '/^BenchmarkDrift/ {for (i = 1; i < NF; i++) if ($(i+1) == "p50-ms") print $i}' "$work/drift.txt")
drift_max=$(awk '/^BenchmarkDrift/ {for (i = 1; i < NF; i++) if ($(i+1) == "max-ms") print $i}' "$work/drift.txt")

declare -A tput
for ((r = 1; r <= rounds; r++)); do
  NETFAB_IPERF_SECONDS=$secs "$work/netfab.test" -test.run '^$' -test.bench '^BenchmarkThroughput$' -test.benchtime 1x >"$work/tput.$r.txt" 2>&1 || {
    cat "$work/tput.$r.txt" >&2; exit 1; }
  while read -r name gbps; do
    tput[$name]+="$gbps "
  done < <(awk '/^BenchmarkThroughput\/.*Gbit\/s$/ {n = $1; sub(/^BenchmarkThroughput\//, "", n); sub(/-[0-9]+$/, "", n); print n, $3}' "$work/tput.$r.txt")
  echo "round $r: $(awk '/^BenchmarkThroughput\/.*Gbit\/s$/ {n = $1; sub(/^BenchmarkThroughput\//, "", n); sub(/-[0-9]+$/, "", n); printf "%s %.2f  ", n, $3}' "$work/tput.$r.txt")"
done
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
veth=$(median "${tput[veth]}"); big=$(median "${tput[veth-bigtcp]}"); plane=$(median "${tput[plane]}"); bridge=$(median "${tput[bridge]}")
ratio=$(awk -v a="$plane" -v b="$veth" 'BEGIN {printf "%.2f", a / b}')
ratio_big=$(awk -v a="$plane" -v b="$big" 'BEGIN {printf "%.2f", a / b}')
ok() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN {print ((op == "<=") ? (v <= t) : (v >= t)) ? "met" : "MISSED"}'; }
ok_setup=$(ok "$setup_ms" 20 "<="); ok_drift=$(ok "$drift_max" 1000 "<="); ok_tput=$(ok "$ratio" 0.9 ">=")

echo
printf '%-44s %14s   %s\n' "measure" "result" "target"
printf '%-44s %11s ms   <= 20 ms: %s (worst %s ms)\n' "Sync one more IMVU (mean over 100)" "$setup_ms" "$ok_setup" "$setup_max"
printf '%-44s %11s ms   <= 1000 ms: %s (p50 %s ms)\n' "hand edit -> reverted (max over 100)" "$drift_max" "$ok_drift" "$drift_p50"
printf '%-44s %8.2f Gbit/s\n' "iperf3 bare veth (median)" "$veth"
printf '%-44s %8.2f Gbit/s\n' "iperf3 bare veth, BIG TCP sizes (median)" "$big"
printf '%-44s %8.2f Gbit/s\n' "iperf3 plane, across IMVUs (median)" "$plane"
printf '%-44s %8.2f Gbit/s\n' "iperf3 plane, inside one IMVU (median)" "$bridge"
printf '%-44s %12sx   >= 0.9x: %s\n' "plane / bare veth" "$ratio" "$ok_tput"
printf '%-44s %12sx\n' "plane / bare veth with BIG TCP sizes" "$ratio_big"
if [[ ${STRICT:-0} == 1 && ( $ok_setup != met || $ok_drift != met || $ok_tput != met ) ]]; then
  exit 1
fi
