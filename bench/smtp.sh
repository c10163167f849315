#!/usr/bin/env bash
# SMTP benchmark: messages accepted over SMTP and durably stored in a Maildir,
# nexus (`nexus serve`, MX listener, full SPF/DKIM/DMARC checks, one fsync per
# message before 250) against Postfix from Debian delivering to a local user's
# Maildir, same machine, same run: smtp-source -s 20 -m 5000 -l 2048.
#
#   bash bench/smtp.sh                 # MESSAGES=5000 SESSIONS=20 SIZE=2048 ROUNDS=2
#   STRICT=1 bash bench/smtp.sh        # exit 1 when the target is missed
#
# "stored" is the time from the first connection until the last message is a
# file in Maildir/new. Target: nexus >= 3x Postfix end to end.
#
# Postfix runs as the machine's default instance with a temporary main.cf;
# the original is restored on exit. Nothing else may be using port 25.
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${MESSAGES:-5000}
sessions=${SESSIONS:-20}
size=${SIZE:-2048}
rounds=${ROUNDS:-2}
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

if ! command -v smtp-source >/dev/null || ! command -v postfix >/dev/null; then
  echo "smtp.sh: installing postfix (for the peer and smtp-source)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null
fi
if postfix status >/dev/null 2>&1; then
  echo "smtp.sh: a Postfix is already running; stop it first (postfix stop)" >&2
  exit 1
fi
rm -f /var/spool/postfix/pid/master.pid # left by a Postfix that was killed, it stops the next start

work=$(mktemp -d)
chmod 755 "$work"
cp /etc/postfix/main.cf "$work/main.cf.orig"
daemon_pid=
cleanup() {
  postfix stop >/dev/null 2>&1 || true
  cp "$work/main.cf.orig" /etc/postfix/main.cf
  [[ -n $daemon_pid ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  userdel nexusbench >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# count DIR: files in a Maildir's new/ (0 when it does not exist yet).
count() { { find "$1" -maxdepth 1 -type f 2>/dev/null || true; } | wc -l; }

# measure NAME PORT FROM TO MAILDIR_NEW: runs smtp-source and waits for the
# last message to be stored; prints "accepted/s stored/s".
measure() {
  local name=$1 port=$2 from=$3 to=$4 dir=$5
  local before start accepted end
  before=$(count "$dir")
  start=$(date +%s.%N)
  smtp-source -s "$sessions" -m "$messages" -l "$size" -f "$from" -t "$to" "127.0.0.1:$port" >&2
  accepted=$(date +%s.%N)
  local want=$((before + messages)) deadline=$((SECONDS + 300))
  while (($(count "$dir") < want)); do
    if ((SECONDS > deadline)); then
      echo "smtp.sh: $name stored $(($(count "$dir") - before)) of $messages within 300 s" >&2
      exit 1
    fi
    sleep 0.05
  done
  end=$(date +%s.%N)
  awk -v n="$messages" -v s="$start" -v a="$accepted" -v e="$end" 'BEGIN {printf "%.0f %.0f\n", n / (a - s), n / (e - s)}'
}

# Postfix: local delivery to ~nexusbench/Maildir/.
useradd -M -d "$work/home" nexusbench
mkdir -p "$work/home" && chown nexusbench "$work/home"
postconf -e "myhostname = bench.test" "mydestination = bench.test, localhost" "inet_interfaces = 127.0.0.1" \
  "inet_protocols = ipv4" "home_mailbox = Maildir/" "mynetworks = 127.0.0.0/8" "smtp_dns_support_level = disabled" \
  "biff = no" "append_dot_mydomain = no" "smtpd_banner = bench.test ESMTP" "alias_maps =" "alias_database ="
postfix start >/dev/null 2>&1 || { echo "smtp.sh: postfix start failed" >&2; exit 1; }
for _ in $(seq 100); do
  (echo >/dev/tcp/127.0.0.1/25) 2>/dev/null && break
  sleep 0.1
done

# nexus: a dev node, one IMVU whose mail rate allows the whole run.
go build -o "$work/nexus" ./cmd/nexus
"$work/nexus" init --data "$work/data" --dev >/dev/null
sed -i 's/^\( *\)mail_per_minute = 120$/\1mail_per_minute = 1000000/' "$work/data/nexus.toml"
"$work/nexus" serve --data "$work/data" --log-level error >"$work/nexus.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 200); do
  "$work/nexus" status --data "$work/data" >/dev/null 2>&1 && break
  sleep 0.05
done
"$work/nexus" key new --out "$work/owner.key" >/dev/null
"$work/nexus" imvu create imvu042 --owner-key "$work/owner.key" --data "$work/data" >/dev/null
mx=$("$work/nexus" status --data "$work/data" -o json | /usr/bin/python3 -c \
  'import json,sys; print(next(l["address"] for l in json.load(sys.stdin)["listeners"] if l["name"] == "smtp").rsplit(":", 1)[1])')
nexus_new="$work/data/imvu/imvu042/mail/creator@imvu042.world/new"

echo "smtp-source -s $sessions -m $messages -l $size; $(postconf -d mail_version | tr -d ' '); nexus MX on port $mx"
pf=() nx=()
for r in $(seq "$rounds"); do
  read -r pa ps < <(measure postfix 25 bench@bench.test nexusbench@bench.test "$work/home/Maildir/new")
  read -r na ns < <(measure nexus "$mx" creator@imvu042.world creator@imvu042.world "$nexus_new")
  printf 'round %d: postfix accepted %s/s stored %s/s | nexus accepted %s/s stored %s/s\n' "$r" "$pa" "$ps" "$na" "$ns"
  pf+=("$ps") nx+=("$ns")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
mp=$(median "${pf[@]}") mn=$(median "${nx[@]}")
ratio=$(awk -v a="$mn" -v b="$mp" 'BEGIN {printf "%.2f", a / b}')
ok=$(awk -v r="$ratio" 'BEGIN {print (r >= 3) ? "met" : "MISSED"}')
echo "median stored msgs/s: postfix $mp, nexus $mn"
echo "nexus / postfix end to end = ${ratio}x (target >= 3x: $ok)"
[[ ${STRICT:-0} == 1 && $ok != met ]] && exit 1
exit 0
