#!/usr/bin/env bash
# The pipeline on this machine: a local single-node Kafka, every topic, every binary and
# their health, a simulated week of trade of three shops, then the week's daily reports
# (salesctl report), the wins counters and a few agent notifications; then it runs until
# Ctrl-C (which stops the binaries with SIGTERM, as an orchestrator would). The broker
# keeps running; `scripts/kafka-local.sh stop` ends it.
#
#   scripts/demo.sh           run until Ctrl-C
#   scripts/demo.sh --check   the same, then stop, exiting non-zero on any failure
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CHECK_ONLY=false
[[ "${1:-}" == "--check" ]] && CHECK_ONLY=true

export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
# Each run on topics of its own, so a second run does not meet the first one's orders
# (it would drop them as duplicates). Set SALES_TOPIC_PREFIX to choose it.
export SALES_TOPIC_PREFIX=${SALES_TOPIC_PREFIX-demo-$(date +%s).}
# Should an order ever come for a day already published, its revision is gathered for
# 3 s (1 minute by default).
export REPORT_REVISION_DELAY=${REPORT_REVISION_DELAY:-3s}
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
# Exchange rates as data (fx.rates.daily): reference rates per 1 EUR in the European
# Central Bank's CSV layout, every TARGET business day of 2026 and 2027 (synthetic values).
"$BIN/salesctl" fx import salesctl/data/eurofxref-sample.csv
# The example storefront (widget/example), served on 127.0.0.1 below, is this
# organization's connected website.
STORE_ADDR=${DEMO_STORE_ADDR:-127.0.0.1:8090}
"$BIN/salesctl" org put --id org_example --website "${STORE_ADDR%:*}" --timezone UTC

# name, admin address (each stage's default)
STAGES=(ingest:127.0.0.1:9180 enricher:127.0.0.1:9181 attributor:127.0.0.1:9182 reporter:127.0.0.1:9183 api:127.0.0.1:9184)
# The API checks the chat platform's tokens; the demo plays the platform with a secret
# of its own, and salesctl token mints the console's tokens with it.
export API_JWT_SECRET_FILE="$LOG_DIR/api-jwt-secret"
head -c 48 /dev/urandom | base64 | tr -d '\n' >"$API_JWT_SECRET_FILE"
API=http://127.0.0.1:8081
PIDS=()

stop_all() {
  trap - EXIT INT TERM
  if [[ -n "${STORE_PID:-}" ]]; then kill "$STORE_PID" 2>/dev/null || true; fi
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

say "A simulated week of trade (simulator --seed 42): three shops in three timezones"
echo "customers browse, chat with people and AI agents, fill carts and order (during a chat,"
echo "days after one, long after one, with none); reloads and second devices fire orders twice;"
echo "some chat events arrive late. The past days go straight to the topics first, as a backfill"
echo "would; the stages then read them as a backlog, and today's trade goes through ingest."
"$BIN/simulator" --seed 42 --days 7 --visits 12 --part past

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

say "Today's trade through ingest's HTTP API"
"$BIN/simulator" --seed 42 --days 7 --visits 12 --part today

say "The example storefront (widget/example) on http://$STORE_ADDR/"
# Its pages load the widget's script from ingest (GET /v1/widget.js) as a store's would;
# config.js tells them where ingest is and which organization they belong to.
STORE_DIR="$LOG_DIR/store"
rm -rf "$STORE_DIR" && mkdir -p "$STORE_DIR" && cp widget/example/* "$STORE_DIR/"
# The store's visitor is a customer the chat platform knows, in a chat with an AI agent:
# what they do on the store comes out as notifications in that chat.
printf 'window.STORE_CONFIG = { ingestUrl: "http://127.0.0.1:8080", organizationId: "org_example", customerId: "visitor-1" };\n' \
  >"$STORE_DIR/config.js"
"$BIN/salesctl" chat open --org org_example --customer visitor-1 --chat store-chat-1 --agent ai
python3 -m http.server --bind "${STORE_ADDR%:*}" --directory "$STORE_DIR" "${STORE_ADDR##*:}" \
  >"$LOG_DIR/store.log" 2>&1 </dev/null &
STORE_PID=$!
store_up=false
for _ in $(seq 1 50); do
  if curl -fsS -o /dev/null "http://$STORE_ADDR/index.html" 2>/dev/null; then store_up=true; break; fi
  sleep 0.1
done
$store_up || { echo "the example storefront did not start: $(tail -n 5 "$LOG_DIR/store.log")"; exit 1; }
curl -fsS -o /dev/null -w 'GET /v1/widget.js: %{http_code}, %{size_download} bytes\n' http://127.0.0.1:8080/v1/widget.js

say "A page on a website the store never connected is refused, loudly"
curl -sS -w ' %{http_code}\n' -H 'Content-Type: application/json' \
  -d '{"organization_id":"org_harbor","customer_id":"c-1","page":{"url":"https://elsewhere.example.net/thanks"},
  "name":"store_order_was_created","data":{"order":{"id":"1","order_number":"#1","currency":"USD","total_price":1,
  "line_items":[{"product_id":"1","title":"Mug","quantity":1,"price":1}]}}}' http://127.0.0.1:8080/v1/events

say "Waiting for the week's days to close and their reports to be published"
FROM=$(date -u -d '8 days ago' +%F)
TO=$(date -u -d 'yesterday' +%F)
reports() {
  for org in org_nordic org_harbor org_sakura; do
    "$BIN/salesctl" report --org "$org" --from "$FROM" --to "$TO" --json
  done
}
# Done when the reports stop changing: every day published (a day closes when the
# watermark passes its end plus the grace, so each is published once, at revision 1).
last=""; stable=0; now=0
for _ in $(seq 1 60); do
  current=$(reports | sha256sum)
  now=$(reports | wc -l)
  if [[ "$now" -gt 0 && "$current" == "$last" ]]; then stable=$((stable + 1)); else stable=0; fi
  [[ $stable -ge 3 ]] && break
  last=$current
  sleep 2
done
echo "$now daily reports published"
[[ "$now" -gt 0 ]] || { echo "no report was published"; exit 1; }
# A past day is published once: its latest revision is its first.
revised=$(reports | grep -cv '"revision":1,' || true)
echo "days published more than once: $revised"
if $CHECK_ONLY && [[ "$revised" -ne 0 ]]; then exit 1; fi

for org in org_nordic org_harbor org_sakura; do
  say "salesctl report --org $org --from $FROM --to $TO"
  "$BIN/salesctl" report --org "$org" --from "$FROM" --to "$TO"
done

say "salesctl report --org org_nordic --from $FROM --to $TO --currency EUR --by-day"
# One EUR total for a shop selling in EUR and PLN: each day's PLN converted at that
# day's rate (a weekend at the Friday's).
"$BIN/salesctl" report --org org_nordic --from "$FROM" --to "$TO" --currency EUR --by-day
say "The same as CSV (--format csv)"
"$BIN/salesctl" report --org org_nordic --from "$FROM" --to "$TO" --currency EUR --by-day --format csv \
  | tee "$LOG_DIR/org_nordic-eur.csv"
# Any CSV reader reads it: one total row, in EUR, with nothing left unconverted.
python3 - "$LOG_DIR/org_nordic-eur.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
total = [r for r in rows if r["date"] == "total"]
assert len(total) == 1 and total[0]["currency"] == "EUR" and total[0]["not_converted"] == "", rows
assert int(total[0]["orders"]) == sum(int(r["orders"]) for r in rows if r["date"] != "total"), rows
print(f"CSV read back: {len(rows) - 1} days, {total[0]['orders']} orders, {total[0]['revenue']} EUR")
PY

say "The wins counters (salesctl tail sales.wins): the latest per organization"
"$BIN/salesctl" tail sales.wins --from-beginning --idle-timeout 3s | tail -n 3

say "A few agent notifications (salesctl tail inbox.notifications)"
"$BIN/salesctl" tail inbox.notifications --from-beginning --idle-timeout 3s | tail -n 3

say "The same report through the API (GET /v1/orgs/org_nordic/reports), as the console reads it"
NORDIC_TOKEN=$("$BIN/salesctl" token --org org_nordic)
api_answer=$(curl -fsS -H "Authorization: Bearer $NORDIC_TOKEN" \
  "$API/v1/orgs/org_nordic/reports?from=$FROM&to=$TO&currency=EUR&by_day=true")
cli_answer=$("$BIN/salesctl" report --org org_nordic --from "$FROM" --to "$TO" --currency EUR --by-day --format json)
if [[ "$api_answer" == "$cli_answer" ]]; then
  echo "the API's answer is the one salesctl report prints"
else
  echo "the API's answer differs from salesctl report's:"; echo "api:      $api_answer"; echo "salesctl: $cli_answer"
  $CHECK_ONLY && exit 1
fi
echo "wins of org_nordic: $(curl -fsS -H "Authorization: Bearer $NORDIC_TOKEN" "$API/v1/orgs/org_nordic/wins")"
echo "a token of org_nordic on org_harbor: $(curl -sS -w ' %{http_code}' -H "Authorization: Bearer $NORDIC_TOKEN" "$API/v1/orgs/org_harbor/wins")"

say "The pipeline is up"
EXAMPLE_TOKEN=$("$BIN/salesctl" token --org org_example)
echo "console:     $API/console/#org=org_example&token=$EXAMPLE_TOKEN"
echo "             (the store's organization: buy on the store, watch the order arrive in chat store-chat-1;"
echo "             org_nordic's week: $API/console/#org=org_nordic&token=$NORDIC_TOKEN)"
echo "agent API:   $API/v1/orgs/{org}/...  (OpenAPI: $API/openapi.json; tokens: salesctl token --org ORG)"
echo "widget API:  http://127.0.0.1:8080/v1/events  (OpenAPI: http://127.0.0.1:8080/v1/openapi.json)"
echo "store:       http://$STORE_ADDR/  (organization org_example, visitor-1 in chat store-chat-1: buy there, then see the chat's notifications:"
echo "             SALES_TOPIC_PREFIX=$SALES_TOPIC_PREFIX target/debug/salesctl tail inbox.notifications --from-beginning)"
echo "metrics:     curl http://127.0.0.1:9180/metrics  (each stage on its admin address)"
echo "topics:      prefix $SALES_TOPIC_PREFIX  (SALES_TOPIC_PREFIX=$SALES_TOPIC_PREFIX target/debug/salesctl tail sales.orders --from-beginning)"

if $CHECK_ONLY; then
  exit 0
fi
echo "Ctrl-C stops the binaries."
wait
