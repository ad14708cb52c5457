#!/usr/bin/env bash
# Runs the whole test suite against a real Kafka broker: the one KAFKA_BOOTSTRAP_SERVERS
# names, or else a local single-node broker started (or found running) by
# scripts/kafka-local.sh. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
  scripts/kafka-local.sh start
  export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${KAFKA_LOCAL_PORT:-9092}"
fi
echo "tests: using Kafka at $KAFKA_BOOTSTRAP_SERVERS" >&2
# The schema interop test reads the fixtures with fastavro from this interpreter. Assigned apart
# from the export so that a failing python-env.sh stops the run under `set -e`.
if [[ -z "${SALES_PYTHON:-}" ]]; then
  SALES_PYTHON="$(scripts/python-env.sh)"
  export SALES_PYTHON
fi
# The widget's and the console's browser tests drive a headless Chromium through chromedriver (Debian's
# chromium and chromium-driver, installed with apt-get when missing).
if [[ -z "${SALES_CHROMEDRIVER:-}" ]]; then
  SALES_CHROMEDRIVER="$(scripts/browser-env.sh)"
  export SALES_CHROMEDRIVER
fi
# A failing test's message is what a reader of the log needs, and a log is often read from its
# end: backtraces (of the test's panic, and of the errors the stages' processes print) push
# the message out of view. SALES_TEST_BACKTRACE=1 brings them back.
export RUST_BACKTRACE="${SALES_TEST_BACKTRACE:-0}"
export RUST_LIB_BACKTRACE="${SALES_TEST_BACKTRACE:-0}"
exec cargo test --workspace --locked "$@"
