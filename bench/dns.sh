#!/usr/bin/env bash
# DNS benchmark: Nexus's authoritative server against knotd and PowerDNS on the reference
# workload (shared/bench/README.md): a 10,000-record zone and 100,000 queries
# (85% hits, 10% NXDOMAIN, 5% MX), dnsperf -l 10 -c 4 -q 200 on loopback.
# Knot, nexus (unsigned) and nexus (signed, queries with DO) are measured
# alternately, ROUNDS times; the medians and ratios are printed at the end.
#
#   bash bench/dns.sh            # ROUNDS=3 DURATION=10
#   STRICT=1 bash bench/dns.sh   # exit 1 when a target is missed
#
# Targets: nexus >= 1.0x knot (unsigned); nexus signed >= 0.8x knot unsigned.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
shared=${NEXUS_SHARED:-$root/../shared}
rounds=${ROUNDS:-3}
duration=${DURATION:-10}
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

for tool in dnsperf knotd pdns_server go; do
  if ! command -v "$tool" >/dev/null; then
    echo "dns.sh: $tool is missing (bash scripts/deps.sh installs dnsperf, knot and pdns-server)" >&2
    exit 1
  fi
done
[[ -f $shared/bench/dns_workload.py ]] || { echo "dns.sh: $shared/bench/dns_workload.py not found (set NEXUS_SHARED)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

/usr/bin/python3 "$shared/bench/dns_workload.py" "$work"
zone=imvu042.world
go build -o "$work/dnsbench" ./dns/cmd/dnsbench

free_port() {
  /usr/bin/python3 - <<'PY'
import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        t.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(port); break
PY
}

# wait_dns PORT: until the server answers an SOA query for the zone.
wait_dns() {
  /usr/bin/python3 - "$1" "$zone" <<'PY'
import socket, struct, sys, time
port, zone = int(sys.argv[1]), sys.argv[2]
q = struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0) + b"".join(bytes([len(l)]) + l.encode() for l in zone.split(".")) + b"\0" + struct.pack(">HH", 6, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
for _ in range(100):
    try:
        s.sendto(q, ("127.0.0.1", port))
        r = s.recv(4096)
        if len(r) > 12 and r[3] & 0xf == 0 and struct.unpack(">H", r[6:8])[0] > 0:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit("no answer on port %d" % port)
PY
}

# knotd serving the zone file, with its default UDP workers.
kport=$(free_port)
mkdir -p "$work/knot/db"
cat > "$work/knot/knot.conf" <<KNOT
server:
    rundir: "$work/knot"
    listen: 127.0.0.1@$kport
database:
    storage: "$work/knot/db"
log:
  - target: stderr
    any: warning
zone:
  - domain: $zone
    storage: "$work"
    file: "$zone.zone"
KNOT
knotd -c "$work/knot/knot.conf" 2>"$work/knot.log" &
pids+=($!)

# PowerDNS with the BIND backend reading the same zone file.
pport=$(free_port)
mkdir -p "$work/pdns"
cat > "$work/pdns/named.conf" <<NAMED
zone "$zone" { type master; file "$work/$zone.zone"; };
NAMED
pdns_server --config-dir="$work/pdns" --socket-dir="$work/pdns" --local-address=127.0.0.1 --local-port="$pport" \
  --launch=bind --bind-config="$work/pdns/named.conf" --daemon=no --guardian=no --disable-syslog --loglevel=3 \
  --setuid= --setgid= 2>"$work/pdns.log" &
pids+=($!)

nport=$(free_port)
"$work/dnsbench" -zone "$work/$zone.zone" -origin "$zone" -addr "127.0.0.1:$nport" >"$work/nexus.log" 2>&1 &
pids+=($!)
sport=$(free_port)
"$work/dnsbench" -zone "$work/$zone.zone" -origin "$zone" -addr "127.0.0.1:$sport" -signed >"$work/signed.log" 2>&1 &
pids+=($!)

wait_dns "$kport"; wait_dns "$pport"; wait_dns "$nport"; wait_dns "$sport"
echo "knotd: $(knotd --version | head -1); $(pdns_server --version 2>&1 | grep -m1 -o 'PowerDNS Authoritative Server [0-9.]*'); zone $zone: $(grep -c ' IN A ' "$work/$zone.zone") A records; $(wc -l <"$work/queries.txt") queries"
echo "machine: $(nproc) CPUs; dnsperf -l $duration -c 4 -q 200; $rounds rounds, alternating"

# run NAME PORT [dnsperf flags]: measures one target, leaves the rate in $qps
run() {
  local out lost
  out=$(dnsperf -s 127.0.0.1 -p "$2" -d "$work/queries.txt" -l "$duration" -c 4 -q 200 "${@:3}" 2>&1)
  qps=$(awk '/Queries per second/ {print $4}' <<<"$out")
  lost=$(awk '/Queries lost/ {print $3, $4}' <<<"$out")
  printf '  %-20s %9.0f qps   lost %s\n' "$1" "$qps" "$lost"
}

knot=() pdns=() nexus=() signed=()
for ((r = 1; r <= rounds; r++)); do
  echo "round $r"
  run knot "$kport"; knot+=("$qps")
  run powerdns "$pport"; pdns+=("$qps")
  run nexus "$nport"; nexus+=("$qps")
  run "nexus signed (DO)" "$sport" -D; signed+=("$qps")
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mp=$(median "${pdns[@]}"); mk=$(median "${knot[@]}"); mn=$(median "${nexus[@]}"); ms=$(median "${signed[@]}")
rn=$(awk -v a="$mn" -v b="$mk" 'BEGIN {printf "%.2f", a / b}')
rs=$(awk -v a="$ms" -v b="$mk" 'BEGIN {printf "%.2f", a / b}')
okn=$(awk -v r="$rn" 'BEGIN {print (r >= 1.0) ? "met" : "MISSED"}')
oks=$(awk -v r="$rs" 'BEGIN {print (r >= 0.8) ? "met" : "MISSED"}')
echo
printf 'median qps: knot %.0f, powerdns %.0f, nexus %.0f, nexus signed (DO) %.0f\n' "$mk" "$mp" "$mn" "$ms"
echo "nexus / powerdns     = $(awk -v a="$mn" -v b="$mp" 'BEGIN {printf "%.2f", a / b}')x"
echo "nexus / knot         = ${rn}x (target >= 1.0x: $okn)"
echo "nexus signed / knot  = ${rs}x (target >= 0.8x: $oks)"
if [[ ${STRICT:-0} == 1 && ( $okn != met || $oks != met ) ]]; then
  exit 1
fi
