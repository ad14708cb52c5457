#!/usr/bin/env bash
# The attributor's state: bytes per tracked chat and the restore time of a store of one
# million chats, against the local broker; or the fixed cost of a restart.
#
#   scripts/bench-attributor.sh                  1,000,000 chats
#   scripts/bench-attributor.sh --chats 200000
#   scripts/bench-attributor.sh --restarts 5     the attributor binary with 1,000 chats,
#                                                killed with SIGKILL and started again 5
#                                                times: seconds from process start to ready
#   scripts/bench-attributor.sh --restarts 5 --chats 1000 --attributor-bin PATH
#
# Every run uses fresh topics (prefix bench-at-<time>.).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
[[ "$KAFKA_BOOTSTRAP_SERVERS" == "127.0.0.1:9092" ]] && scripts/kafka-local.sh start
args=("$@")
if [[ " $* " == *" --restarts "* ]]; then
    cargo build --release --locked -p sales-tests --bin attributor_state -p attributor --bin attributor
    # Small stores unless told otherwise: the restart's fixed cost.
    [[ " $* " == *" --chats "* ]] || args+=(--chats 1000)
else
    cargo build --release --locked -p sales-tests --bin attributor_state
fi
RUST_LOG=${RUST_LOG:-warn} target/release/attributor_state "${args[@]}"
