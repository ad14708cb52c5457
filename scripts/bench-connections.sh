#!/usr/bin/env bash
# What held connections cost ingest, and how long SIGTERM takes while they are held:
# ingest's resident memory idle and with HELD connections each holding an unfinished
# request head (of two sizes: just under ingest's head limit, and far over it), then the
# time from SIGTERM to exit with unfinished heads still open.
#
#   scripts/bench-connections.sh
#   INGEST_BIN=path/to/another/ingest scripts/bench-connections.sh   # compare a build
#
# Settings (environment): HELD (1000), HEADS ("15000 400000", bytes), HOLD (3s),
#   INGEST_BENCH_LISTEN (127.0.0.1:18080), INGEST_BENCH_ADMIN (127.0.0.1:19180),
#   KAFKA_BOOTSTRAP_SERVERS (a broker of scripts/kafka-local.sh by default).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HELD=${HELD:-1000}
HEADS=${HEADS:-15000 400000}
HOLD=${HOLD:-3s}
LISTEN=${INGEST_BENCH_LISTEN:-127.0.0.1:18080}
ADMIN=${INGEST_BENCH_ADMIN:-127.0.0.1:19180}
export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
export SALES_TOPIC_PREFIX="bench-conn-$(date +%Y%m%d-%H%M%S)."
OUT=${TMPDIR:-/tmp}/sales-bench-connections/${SALES_TOPIC_PREFIX%.}
mkdir -p "$OUT"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'bench-connections: error: %s\n' "$*" >&2; exit 1; }
rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

say "Building (release)"
cargo build --release --locked -p ingest -p salesctl --bins --examples
INGEST_BIN=${INGEST_BIN:-target/release/ingest}
echo "ingest: $INGEST_BIN"

if [[ $KAFKA_BOOTSTRAP_SERVERS == 127.0.0.1:9092 ]]; then
  scripts/kafka-local.sh start
fi
target/release/salesctl topics create >/dev/null
target/release/salesctl org put --id org_bench --website shop.bench.example >/dev/null

INGEST_PID=
cleanup() { [[ -z $INGEST_PID ]] || kill -KILL "$INGEST_PID" 2>/dev/null || true; }
trap cleanup EXIT

# Every held connection comes from this one address: the per-address cap is lifted (by
# its environment variable, which a build without the cap ignores) so that all are held.
INGEST_MAX_CONNECTIONS_PER_IP=$((HELD + 100)) \
  "$INGEST_BIN" --listen-addr "$LISTEN" --admin-addr "$ADMIN" --log-filter warn >"$OUT/ingest.log" 2>&1 &
INGEST_PID=$!
for _ in $(seq 1 300); do
  curl -fsS "http://$ADMIN/readyz" >/dev/null 2>&1 && break
  kill -0 "$INGEST_PID" 2>/dev/null || { tail -n 30 "$OUT/ingest.log" >&2; die "ingest exited during start-up"; }
  sleep 0.1
done
idle=$(rss_mb "$INGEST_PID")
rows=("idle|$idle")

for head in $HEADS; do
  say "$HELD connections, each with an unfinished head of up to $head bytes, held $HOLD"
  target/release/examples/hold_connections --addr "$LISTEN" --connections "$HELD" --head-bytes "$head" --hold "$HOLD" \
    >"$OUT/hold-$head.txt" 2>&1 &
  holder=$!
  peak=$idle
  while kill -0 "$holder" 2>/dev/null; do
    now=$(rss_mb "$INGEST_PID")
    peak=$(awk -v a="$peak" -v b="$now" 'BEGIN { print (b > a) ? b : a }')
    sleep 0.2
  done
  wait "$holder" || die "the holder failed: $(cat "$OUT/hold-$head.txt")"
  cat "$OUT/hold-$head.txt"
  rows+=("$HELD held heads of up to $head bytes (peak)|$peak")
done

say "SIGTERM with 10 unfinished heads open"
target/release/examples/hold_connections --addr "$LISTEN" --connections 10 --head-bytes 1000 --hold 60s \
  >"$OUT/hold-sigterm.txt" 2>&1 &
holder=$!
sleep 1
started=$(date +%s.%N)
kill -TERM "$INGEST_PID"
exited=false
for _ in $(seq 1 300); do
  kill -0 "$INGEST_PID" 2>/dev/null || { exited=true; break; }
  sleep 0.1
done
if $exited; then
  took=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f s", e - s }')
else
  took="not exited after 30 s (killed)"
fi
kill "$holder" 2>/dev/null || true
wait "$INGEST_PID" 2>/dev/null || true
INGEST_PID=

say "Summary ($INGEST_BIN; raw output in $OUT)"
for row in "${rows[@]}"; do
  printf '%-64s %s MB\n' "resident memory, ${row%%|*}" "${row##*|}"
done
printf '%-64s %s\n' "SIGTERM to exit with unfinished heads open" "$took"
