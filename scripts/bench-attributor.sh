#!/usr/bin/env bash
# The attributor's state: bytes per tracked chat and the restore time of a store of one
# million chats, against the local broker.
#
#   scripts/bench-attributor.sh                  1,000,000 chats
#   scripts/bench-attributor.sh --chats 200000
#
# Every run uses fresh topics (prefix bench-at-<time>.).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
[[ "$KAFKA_BOOTSTRAP_SERVERS" == "127.0.0.1:9092" ]] && scripts/kafka-local.sh start
cargo build --release --locked -p sales-tests --bin attributor_state
RUST_LOG=${RUST_LOG:-warn} target/release/attributor_state "$@"
