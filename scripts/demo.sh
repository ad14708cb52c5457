#!/usr/bin/env bash
# The pipeline on this machine: a local single-node Kafka, every topic, every binary,
# and their health, until Ctrl-C (which stops the binaries with SIGTERM, as an
# orchestrator would). The broker keeps running; `scripts/kafka-local.sh stop` ends it.
#
#   scripts/demo.sh           run until Ctrl-C
#   scripts/demo.sh --check   start everything, show it healthy, stop, exit non-zero on any failure
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CHECK_ONLY=false
[[ "${1:-}" == "--check" ]] && CHECK_ONLY=true

export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
LOG_DIR=${DEMO_LOG_DIR:-${TMPDIR:-/tmp}/sales-demo}
mkdir -p "$LOG_DIR"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Kafka"
if [[ "$KAFKA_BOOTSTRAP_SERVERS" == "127.0.0.1:9092" ]]; then
  scripts/kafka-local.sh start
else
  echo "using the broker at $KAFKA_BOOTSTRAP_SERVERS"
fi

say "Building the binaries"
cargo build --locked --bins
BIN=target/debug

say "Creating the topics"
"$BIN/salesctl" topics create

# name, admin address (each stage's default)
STAGES=(ingest:127.0.0.1:9180 enricher:127.0.0.1:9181 attributor:127.0.0.1:9182 reporter:127.0.0.1:9183)
PIDS=()

stop_all() {
  trap - EXIT INT TERM
  say "Stopping the binaries (SIGTERM)"
  local failed=0
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in "${!PIDS[@]}"; do
    local name=${STAGES[$i]%%:*}
    if wait "${PIDS[$i]}"; then
      echo "$name stopped cleanly"
    else
      echo "$name exited with status $? (log: $LOG_DIR/$name.log)"
      failed=1
    fi
  done
  return $failed
}
trap 'stop_all; exit 130' INT TERM
# A stage that did not stop cleanly fails the script, --check included.
trap 'stop_all || exit 1' EXIT

say "Starting every stage (logs in $LOG_DIR)"
for stage in "${STAGES[@]}"; do
  name=${stage%%:*}
  # Its own session: a Ctrl-C in the terminal goes to the whole foreground process
  # group, and a stage that got it would take the trap's SIGTERM as a second signal and
  # exit at once instead of draining. This way only the script gets it, and stops each
  # stage with one SIGTERM. (A background job of a script is no process group leader,
  # so setsid execs the stage in place and $! is the stage's pid.)
  setsid "$BIN/$name" >"$LOG_DIR/$name.log" 2>&1 </dev/null &
  PIDS+=($!)
  echo "$name started (pid $!)"
done

say "Waiting until every stage is ready"
for i in "${!STAGES[@]}"; do
  name=${STAGES[$i]%%:*}
  admin=${STAGES[$i]#*:}
  ready=false
  for _ in $(seq 1 150); do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      echo "$name exited during start-up:"; tail -n 20 "$LOG_DIR/$name.log"; exit 1
    fi
    if curl -fsS "http://$admin/readyz" >/dev/null 2>&1; then ready=true; break; fi
    sleep 0.2
  done
  $ready || { echo "$name did not become ready: $(curl -sS "http://$admin/readyz" 2>&1)"; exit 1; }
  printf '%-11s http://%s  healthz %s  readyz %s\n' "$name" "$admin" \
    "$(curl -sS "http://$admin/healthz")" "$(curl -sS "http://$admin/readyz")"
done

say "A store: organization org_demo, website shop.example.com"
"$BIN/salesctl" org put --id org_demo --website shop.example.com --timezone Europe/Warsaw

say "The widget reports an order (POST /v1/events)"
ORDER='{"organization_id":"org_demo","customer_id":"c-1001","page":{"url":"https://shop.example.com/checkout/thanks"},
 "name":"store_order_was_created","data":{"order":{"id":"1042","order_number":"#1042","currency":"USD","total_price":149.99,
 "line_items":[{"product_id":"123456789","title":"Merino Wool Crew Neck","quantity":1,"price":149.99}]}}}'
# ingest may need a moment to see the new organization.
for _ in $(seq 1 50); do
  answer=$(curl -sS -w ' %{http_code}' -H 'Content-Type: application/json' -d "$ORDER" http://127.0.0.1:8080/v1/events)
  [[ "$answer" == *" 202" ]] && break
  sleep 0.2
done
echo "$answer"
[[ "$answer" == *" 202" ]] || { echo "the order was not accepted"; exit 1; }

say "A page on a website the store never connected is refused, loudly"
curl -sS -w ' %{http_code}\n' -H 'Content-Type: application/json' \
  -d "${ORDER/shop.example.com/elsewhere.example.net}" http://127.0.0.1:8080/v1/events

say "The order in sales.events.raw (salesctl tail, read_committed)"
"$BIN/salesctl" tail sales.events.raw --from-beginning --idle-timeout 3s | tail -n 1

say "The pipeline is up"
echo "widget API:  http://127.0.0.1:8080/v1/events  (OpenAPI: http://127.0.0.1:8080/v1/openapi.json)"
echo "metrics:     curl http://127.0.0.1:9180/metrics  (each stage on its admin address)"

if $CHECK_ONLY; then
  exit 0
fi
echo "Ctrl-C stops the binaries."
wait
