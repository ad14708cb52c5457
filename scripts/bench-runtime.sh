#!/usr/bin/env bash
# Throughput of the exactly-once runtime (pass-through and counting stages) against the
# local broker, the plain rdkafka consume-to-produce rate of the same records in the same
# run (the limit), and the restore time of a store of one million keys.
#
#   scripts/bench-runtime.sh                         200k records, 1M restore keys
#   scripts/bench-runtime.sh --records 500000 --commit-interval 20ms
#
# Every run uses fresh topics (prefix bench-rt-<time>.). On a 2-core machine the broker
# and the benchmark share the cores: the ratios say more than the absolute figures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
[[ "$KAFKA_BOOTSTRAP_SERVERS" == "127.0.0.1:9092" ]] && scripts/kafka-local.sh start
cargo build --release --locked -p sales-tests --bin runtime_bench
RUST_LOG=${RUST_LOG:-warn} target/release/runtime_bench "$@"
