#!/usr/bin/env bash
# The whole pipeline end to end against the local broker: ingest, the enricher, the
# attributor and the reporter, each its own process, under the simulator's load at a
# steady rate; events/s sustained, latency from ingest's 202 to the inbox notification
# and to sales.orders.attributed (p50, p99), each stage's records/s and CPU, and the
# plain rdkafka consume-to-produce limit measured in the same run. bench/README.md says
# what each figure means.
#
#   scripts/bench-pipeline.sh                        500 events/s for 30 s, seed 42
#   scripts/bench-pipeline.sh --rate 1000 --seconds 60 --seed 7
#
# Every run uses fresh topics (prefix bench-pl-<time>.); the stages' logs are in
# $TMPDIR/sales-bench-pipeline/<prefix>/. On a 2-core machine the broker, the stages and
# the load share the cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
[[ "$KAFKA_BOOTSTRAP_SERVERS" == "127.0.0.1:9092" ]] && scripts/kafka-local.sh start
cargo build --release --locked -p sales-tests --bin pipeline_bench
cargo build --release --locked -p ingest -p enricher -p attributor -p reporter --bins
RUST_LOG=${RUST_LOG:-warn} target/release/pipeline_bench "$@"
