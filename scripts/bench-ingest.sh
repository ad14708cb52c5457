#!/usr/bin/env bash
# Throughput and latency of ingest against the local broker, beside the ceiling it cannot
# beat: the same producer (acks=all, idempotent) sending the same records without HTTP,
# many in flight. Both numbers come from the same run on the same broker, so their ratio
# says how much the gateway costs on this machine; on a 2-core machine where broker,
# ingest and wrk share the cores the absolute numbers are indicative only.
#
#   scripts/bench-ingest.sh                      20 s of load from 64 connections
#   DURATION=10s CONNECTIONS=32 scripts/bench-ingest.sh
#   INGEST_BIN=path/to/another/ingest scripts/bench-ingest.sh   compare another build
#
# Settings (environment):
#   DURATION (20s), CONNECTIONS (64), THREADS (2), WARMUP (3s)   the wrk load
#   INGEST_BENCH_LISTEN (127.0.0.1:18080), INGEST_BENCH_ADMIN (127.0.0.1:19180)
#                                 ingest's ports, away from the defaults a running demo uses
#   PRODUCER_RECORDS              records for the producer ceiling; by default as many as
#                                 ingest accepted during the measured run
#   KAFKA_BOOTSTRAP_SERVERS       another broker instead of scripts/kafka-local.sh
#   KEEP_KAFKA=1                  leave a local broker this script started running
# Each run writes to fresh topics (prefix bench-<timestamp>.), so runs never see each
# other's records. Logs and raw outputs: $TMPDIR/sales-bench-ingest/<prefix>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-3s}
LISTEN=${INGEST_BENCH_LISTEN:-127.0.0.1:18080}
ADMIN=${INGEST_BENCH_ADMIN:-127.0.0.1:19180}
export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
export SALES_TOPIC_PREFIX="bench-$(date +%Y%m%d-%H%M%S)."
export BENCH_ORG=org_bench BENCH_HOST=shop.bench.example
# The load comes from one IP and one organization: every limit (the connections per
# address included, set by environment so that older builds ignore it) far above what two cores
# can serve, so the run measures ingest and the broker, not the rate limiter.
UNLIMITED=100000000
LUA=scripts/bench/ingest.lua
URL="http://$LISTEN/v1/events"
OUT=${TMPDIR:-/tmp}/sales-bench-ingest/${SALES_TOPIC_PREFIX%.}
mkdir -p "$OUT"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'bench-ingest: error: %s\n' "$*" >&2; exit 1; }
answers() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

say "Tools"
if ! command -v wrk >/dev/null; then
  SUDO=()
  [[ $(id -u) -eq 0 ]] || SUDO=(sudo)
  # A fresh machine may have no package lists yet; refresh them only when needed.
  "${SUDO[@]}" apt-get install -y wrk || { "${SUDO[@]}" apt-get update && "${SUDO[@]}" apt-get install -y wrk; }
fi
command -v curl >/dev/null || die "curl is needed to wait for ingest's /readyz"
echo "wrk: $(command -v wrk)"

say "Building ingest, salesctl and the producer_rate example (release)"
cargo build --release --locked -p ingest -p salesctl --bins --examples
BIN=target/release

INGEST_PID=
STARTED_KAFKA=false
stop_ingest() {
  [[ -n $INGEST_PID ]] || return 0
  local pid=$INGEST_PID
  INGEST_PID=
  kill -TERM "$pid" 2>/dev/null || true
  if wait "$pid"; then
    echo "ingest stopped cleanly"
  else
    echo "ingest exited with status $? (log: $OUT/ingest.log)"
  fi
}
cleanup() {
  stop_ingest
  if $STARTED_KAFKA && [[ ${KEEP_KAFKA:-0} != 1 ]]; then
    scripts/kafka-local.sh stop || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Kafka"
if [[ $KAFKA_BOOTSTRAP_SERVERS == 127.0.0.1:9092 ]]; then
  # A broker that already runs (a demo, a test session) is used and left running.
  scripts/kafka-local.sh status 2>/dev/null || STARTED_KAFKA=true
  scripts/kafka-local.sh start
else
  echo "using the broker at $KAFKA_BOOTSTRAP_SERVERS"
fi

say "Topics under the prefix $SALES_TOPIC_PREFIX, organization $BENCH_ORG"
"$BIN/salesctl" topics create
# The organization's own limit overrides --org-rate in ingest, so it is raised here too.
"$BIN/salesctl" org put --id "$BENCH_ORG" --website "$BENCH_HOST" --rate "$UNLIMITED" --burst "$UNLIMITED"

say "Starting ingest on $LISTEN (admin $ADMIN; log $OUT/ingest.log)"
for address in "$LISTEN" "$ADMIN"; do
  answers "$address" && die "$address is taken; set INGEST_BENCH_LISTEN / INGEST_BENCH_ADMIN"
done
# warn: a log line per request would be part of what is measured.
INGEST_MAX_CONNECTIONS_PER_IP=$UNLIMITED "${INGEST_BIN:-$BIN/ingest}" --listen-addr "$LISTEN" --admin-addr "$ADMIN" --log-filter warn \
  --ip-rate "$UNLIMITED" --ip-burst "$UNLIMITED" --org-rate "$UNLIMITED" --org-burst "$UNLIMITED" \
  >"$OUT/ingest.log" 2>&1 &
INGEST_PID=$!
for _ in $(seq 1 300); do
  curl -fsS "http://$ADMIN/readyz" >/dev/null 2>&1 && break
  kill -0 "$INGEST_PID" 2>/dev/null || { tail -n 30 "$OUT/ingest.log" >&2; die "ingest exited during start-up"; }
  sleep 0.1
done
curl -fsS "http://$ADMIN/readyz" >/dev/null 2>&1 \
  || { tail -n 30 "$OUT/ingest.log" >&2; die "ingest did not become ready within 30s: $(curl -sS "http://$ADMIN/readyz" 2>&1)"; }
echo "ready: $(curl -sS "http://$ADMIN/readyz")"

# The bench-wrk line of a wrk output file as key=value pairs; value of key $2.
field() {
  awk -v key="$2" '/^bench-wrk: / { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == key) print kv[2] } }' "$1"
}

say "Warm-up: $WARMUP"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$LUA" "$URL" >"$OUT/warmup.txt" 2>&1 \
  || { cat "$OUT/warmup.txt" >&2; die "wrk failed during the warm-up"; }
grep '^bench-wrk: ' "$OUT/warmup.txt" >/dev/null || { cat "$OUT/warmup.txt" >&2; die "no bench-wrk line from the warm-up"; }
warm_requests=$(field "$OUT/warmup.txt" requests)
warm_non202=$(field "$OUT/warmup.txt" non202)
echo "warm-up: $warm_requests requests, $warm_non202 not 202 ($(field "$OUT/warmup.txt" statuses))"
if [[ $warm_requests -eq 0 || $warm_non202 -eq $warm_requests ]]; then
  # Nothing accepted at all: a setup problem (unknown organization, broker down...), not
  # a load result. Show one answer in full.
  body=$(printf '{"organization_id":"%s","customer_id":"c-probe","page":{"url":"https://%s/checkout/thanks"},"name":"store_order_was_created","data":{"order":{"id":"probe","order_number":"#probe","currency":"USD","total_price":1,"line_items":[{"product_id":"1","title":"Probe","quantity":1,"price":1}]}}}' "$BENCH_ORG" "$BENCH_HOST")
  curl -sS -i -H 'Content-Type: application/json' --data "$body" "$URL" >&2 || true
  tail -n 20 "$OUT/ingest.log" >&2
  die "ingest accepted nothing during the warm-up"
fi

say "Load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency $URL"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$LUA" "$URL" | tee "$OUT/wrk.txt"
grep '^bench-wrk: ' "$OUT/wrk.txt" >/dev/null || die "no bench-wrk line in wrk's output ($OUT/wrk.txt)"
requests=$(field "$OUT/wrk.txt" requests)
non202=$(field "$OUT/wrk.txt" non202)
accepted=$((requests - non202))
accepted_per_s=$(field "$OUT/wrk.txt" accepted_per_s)
p50_ms=$(awk -v us="$(field "$OUT/wrk.txt" p50_us)" 'BEGIN { printf "%.2f", us / 1000 }')
p99_ms=$(awk -v us="$(field "$OUT/wrk.txt" p99_us)" 'BEGIN { printf "%.2f", us / 1000 }')
socket_errors=$(awk '/^bench-wrk: / { n = 0; for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] ~ /_errors$|^timeouts$/) n += kv[2] } print n }' "$OUT/wrk.txt")

# The producer run gets the machine to itself, as ingest's load did (but for wrk).
stop_ingest
curl -fsS "http://$ADMIN/readyz" >/dev/null 2>&1 && die "ingest still answers after SIGTERM"

records=${PRODUCER_RECORDS:-$accepted}
[[ $records -gt 0 ]] || die "ingest accepted no event, so there is nothing to compare with"
say "Producer ceiling: $records records (as many as ingest accepted), same producer settings"
"$BIN/examples/producer_rate" --records "$records" | tee "$OUT/producer.txt"
producer_per_s=$(sed -n 's/^producer_rate: .* = \([0-9.]*\) records\/s.*/\1/p' "$OUT/producer.txt")
[[ -n $producer_per_s ]] || die "no producer_rate line in $OUT/producer.txt"

ratio=$(awk -v a="$accepted_per_s" -v p="$producer_per_s" 'BEGIN { printf "%.1f%%", 100 * a / p }')
say "Summary ($(nproc) cores; topics $SALES_TOPIC_PREFIX*; raw output in $OUT)"
printf '%-34s %s\n' \
  "load" "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $requests requests" \
  "ingest accepted (202) events/s" "$accepted_per_s" \
  "ingest latency p50 / p99" "$p50_ms ms / $p99_ms ms" \
  "ingest non-202 answers" "$non202 ($(field "$OUT/wrk.txt" statuses)); socket errors/timeouts $socket_errors" \
  "producer records/s (ceiling)" "$producer_per_s ($records records, acks=all, idempotent)" \
  "ingest / producer" "$ratio"
if [[ $non202 -gt 0 || $socket_errors -gt 0 ]]; then
  echo "bench-ingest: warning: $non202 answers were not 202 and $socket_errors requests failed at the socket; see $OUT/ingest.log" >&2
fi
