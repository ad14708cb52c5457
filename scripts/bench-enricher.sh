#!/usr/bin/env bash
# Latency from ingest's 202 to the agent's notification being readable, at a steady
# rate, for commit intervals of 100 ms and 20 ms, against the local broker.
#
#   scripts/bench-enricher.sh                        200 events/s, 30 s per interval
#   scripts/bench-enricher.sh --rate 500 --seconds 60 --commit-intervals 100ms,50ms,20ms
#
# Every run uses fresh topics (prefix bench-en-<time>.); ingest, the enricher and the
# load run in one process. On a 2-core machine the broker shares the cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
[[ "$KAFKA_BOOTSTRAP_SERVERS" == "127.0.0.1:9092" ]] && scripts/kafka-local.sh start
cargo build --release --locked -p sales-tests --bin enricher_latency
RUST_LOG=${RUST_LOG:-warn} target/release/enricher_latency "$@"
