#!/usr/bin/env bash
# The API against the local broker, the API binary its own process: sidebar lookups at a
# steady rate over keep-alive connections (open-loop p50/p99/p99.9/max and errors),
# 1,000 wins event-stream clients and the time from a counter written to sales.wins to
# each client's event, resident memory per customer summary held, and the time to
# restore 1,000,000 summaries at start. bench/README.md says what each figure means.
#
#   scripts/bench-api.sh                        100k summaries, 2,000 lookups/s for 20 s,
#                                               1,000 stream clients, 1M summaries restored
#   scripts/bench-api.sh --summaries 1000000 --clients 1000 --rate 2000 --seconds 20
#   scripts/bench-api.sh --restore-summaries 2000000
#
# Every run uses fresh topics (prefix bench-api-<time>. unless --topic-prefix or
# SALES_TOPIC_PREFIX names another, whose sales.customer-orders and sales.wins must be
# empty); the API's logs are in $TMPDIR/sales-bench-api/<prefix>/. On a 2-core machine
# the broker, the API and the load share the cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
[[ "$KAFKA_BOOTSTRAP_SERVERS" == "127.0.0.1:9092" ]] && scripts/kafka-local.sh start
cargo build --release --locked -p sales-tests --bin api_bench -p api --bin api
# Every stream client is a connection, at both ends: this process and the API (its
# child) each need a descriptor per client, beside their Kafka connections.
want=8192
if [[ "$(ulimit -n)" != unlimited && "$(ulimit -n)" -lt "$want" ]]; then
    hard=$(ulimit -Hn)
    if [[ "$hard" == unlimited || "$hard" -ge "$want" ]]; then
        ulimit -n "$want"
    else
        ulimit -n "$hard"
        echo "bench-api: open files limited to $hard; more stream clients than about $((hard / 2 - 100)) will fail" >&2
    fi
fi
RUST_LOG=${RUST_LOG:-warn} target/release/api_bench "$@"
