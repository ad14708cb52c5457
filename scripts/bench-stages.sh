#!/usr/bin/env bash
# Each stateful stage alone catching up on a backlog written before it starts: the
# enricher on sales.events.raw and chat.sessions, then the attributor on the enricher's
# sales.orders and the chats, then the reporter on sales.orders.attributed; for each its
# input records/s, CPU per record, peak memory and the time a restart after SIGKILL takes
# to be ready, beside the runtime's own pass-through measured in the same run.
# bench/README.md says what each figure means.
#
#   scripts/bench-stages.sh                          500,000 widget events, seed 42
#   scripts/bench-stages.sh --events 20000           a quick look
#
# Every run uses fresh topics (prefix bench-st-<time>.); the stages' logs are in
# $TMPDIR/sales-bench-stages/<prefix>/. On a 2-core machine the broker and the stage
# share the cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
[[ "$KAFKA_BOOTSTRAP_SERVERS" == "127.0.0.1:9092" ]] && scripts/kafka-local.sh start
cargo build --release --locked -p sales-tests --bin stages_bench
cargo build --release --locked -p ingest -p enricher -p attributor -p reporter --bins
RUST_LOG=${RUST_LOG:-warn} target/release/stages_bench "$@"
