#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft, broker and controller in one process) on
# 127.0.0.1, from Kafka's own jars on Maven Central; no Docker needed.
#
#   scripts/kafka-local.sh start    resolve the jars (once), format storage, start, wait until ready
#   scripts/kafka-local.sh stop     stop the broker this script started and delete its data
#   scripts/kafka-local.sh restart  stop it gracefully and start it again on the same data
#   scripts/kafka-local.sh status   say whether a broker answers
#
# Settings (environment): KAFKA_LOCAL_PORT (9092), KAFKA_LOCAL_CONTROLLER_PORT (9093),
# KAFKA_LOCAL_HEAP (768m), KAFKA_LOCAL_READY_TIMEOUT (90, seconds a start may take),
# SALES_KAFKA_CACHE (where the jars are kept, outside the repo).
set -euo pipefail

KAFKA_VERSION=4.1.1 # keep in step with scripts/kafka/pom.xml and the tests' container tag
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SALES_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sales-pipeline}
LIBS=$CACHE/kafka-$KAFKA_VERSION/libs
HOST=127.0.0.1
PORT=${KAFKA_LOCAL_PORT:-9092}
CONTROLLER_PORT=${KAFKA_LOCAL_CONTROLLER_PORT:-9093}
HEAP=${KAFKA_LOCAL_HEAP:-768m}
# Config, logs and data of a run: a temporary folder, wiped at each start and at stop.
RUN_DIR=${TMPDIR:-/tmp}/sales-kafka-$PORT
PID_FILE=$RUN_DIR/kafka.pid
READY_TIMEOUT=${KAFKA_LOCAL_READY_TIMEOUT:-90}

say() { printf 'kafka-local: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

answers() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# The pid of the broker this script started for this port, if it still runs. A pid
# file can outlive its broker (a reboot, a killed script) and its pid can be reused by
# another process, so the process must also be a Kafka broker run from this run dir:
# otherwise stop would kill a stranger and start would take it for the broker.
our_pid() {
  [[ -f $PID_FILE ]] || return 1
  local pid cmdline
  pid=$(<"$PID_FILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  if [[ -r /proc/$pid/cmdline ]]; then
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  else
    cmdline=$(ps -o args= -p "$pid" 2>/dev/null) || return 1
  fi
  [[ $cmdline == *" kafka.Kafka "* && $cmdline == *"$RUN_DIR/"* ]] || return 1
  echo "$pid"
}

# Stops a process with SIGTERM, then SIGKILL if it is still there after $2 seconds.
terminate() {
  local pid=$1 seconds=$2
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 $((seconds * 5))); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  say "pid $pid did not stop within ${seconds}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

require_tools() {
  command -v java >/dev/null || die "java not found; Java 17 or newer is required"
  command -v mvn >/dev/null || die "mvn not found; Maven is required to fetch Kafka's jars"
  local major
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
  [[ ${major:-0} -ge 17 ]] || die "Java 17 or newer is required, found version ${major:-unknown}"
}

resolve_jars() {
  [[ -f $LIBS/.complete ]] && return 0
  say "fetching Apache Kafka $KAFKA_VERSION and its dependencies from Maven Central into $LIBS"
  rm -rf "$LIBS.partial"
  mvn -q -B -f "$HERE/kafka/pom.xml" \
    -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIBS.partial" \
    || die "Maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION"
  ls "$LIBS.partial"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null || die "kafka_2.13-$KAFKA_VERSION.jar missing after resolution"
  rm -rf "$LIBS"
  mv "$LIBS.partial" "$LIBS"
  touch "$LIBS/.complete"
}

write_config() {
  mkdir -p "$RUN_DIR/data" "$RUN_DIR/logs"
  cat >"$RUN_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$RUN_DIR/data
auto.create.topics.enable=false
num.partitions=1
# One node: every internal topic has one replica, and transactions need the
# transaction state log's min ISR to be 1 as well.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer internal partitions start faster on a small machine.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
# No waiting for more members before the first rebalance: tests start consumers one by one.
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
PROPS
}

java_args() {
  printf '%s\n' -Xms256m -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties" -Dkafka.logs.dir="$RUN_DIR/logs" \
    -cp "$LIBS/*"
}

java_cmd() {
  local args
  mapfile -t args < <(java_args)
  java "${args[@]}" "$@"
}

# Runs the broker on the storage in $RUN_DIR and waits until it serves; $1 is when the
# start began ($SECONDS), for the ready timeout.
launch() {
  local started=$1
  # A fresh server.log: readiness is its "Kafka Server started" line.
  if [[ -f "$RUN_DIR/logs/server.log" ]]; then
    mv "$RUN_DIR/logs/server.log" "$RUN_DIR/logs/server.log.previous"
  fi
  # Its own session, so that a Ctrl-C in the terminal that started it does not stop it:
  # a second start finds it running. (Not a process group leader here, so setsid execs
  # java in place and $! is the broker's pid.)
  local args
  mapfile -t args < <(java_args)
  nohup setsid java "${args[@]}" kafka.Kafka "$RUN_DIR/server.properties" \
    >"$RUN_DIR/logs/console.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$PID_FILE"
  while true; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      tail -n 40 "$RUN_DIR/logs/console.log" "$RUN_DIR/logs/server.log" >&2 2>/dev/null || true
      die "the broker exited during start-up (logs above, in $RUN_DIR/logs)"
    fi
    if answers "$PORT" && grep -q "Kafka Server started" "$RUN_DIR/logs/server.log" 2>/dev/null; then
      break
    fi
    if (( SECONDS - started > READY_TIMEOUT )); then
      # Not left running half-started: the next start would take it for a broker.
      terminate "$pid" 10
      rm -f "$PID_FILE"
      die "the broker did not become ready within ${READY_TIMEOUT}s and was stopped (logs in $RUN_DIR/logs); a slow machine may need KAFKA_LOCAL_READY_TIMEOUT set higher"
    fi
    sleep 0.2
  done
}

start() {
  if pid=$(our_pid); then
    say "already running (pid $pid) on $HOST:$PORT; nothing to do"
    return 0
  fi
  if answers "$PORT"; then
    say "a broker already answers on $HOST:$PORT (not started by this script); using it"
    return 0
  fi
  answers "$CONTROLLER_PORT" && die "port $CONTROLLER_PORT (controller) is taken; set KAFKA_LOCAL_CONTROLLER_PORT"
  require_tools
  resolve_jars
  rm -rf "$RUN_DIR"
  write_config
  local started=$SECONDS started_ns cluster_id
  started_ns=$(date +%s%N)
  cluster_id=$(java_cmd kafka.tools.StorageTool random-uuid)
  java_cmd kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$RUN_DIR/server.properties" \
    >"$RUN_DIR/logs/format.log" 2>&1 || { cat "$RUN_DIR/logs/format.log" >&2; die "formatting KRaft storage failed"; }
  launch "$started"
  local ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))
  say "Apache Kafka $KAFKA_VERSION ready on $HOST:$PORT after $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s (pid $(cat "$PID_FILE"), data in $RUN_DIR)"
}

stop() {
  local pid
  if ! pid=$(our_pid); then
    if answers "$PORT"; then
      # Someone else's broker, or ours with a pid file that no longer names it: its
      # data may be in use, so it is left alone (a start wipes it anyway).
      say "a broker not started by this script answers on $HOST:$PORT; not stopping it, and leaving $RUN_DIR alone"
      return 0
    fi
    say "no broker started by this script is running on port $PORT"
    rm -rf "$RUN_DIR"
    return 0
  fi
  terminate "$pid" 30
  rm -rf "$RUN_DIR"
  say "stopped (pid $pid) and deleted its data"
}

# Stops the broker gracefully and starts it again on the same data: what a rolling
# restart does to a client (the chaos test uses it).
restart() {
  local pid
  pid=$(our_pid) || die "no broker started by this script is running on port $PORT"
  local started=$SECONDS started_ns
  started_ns=$(date +%s%N)
  terminate "$pid" 30
  rm -f "$PID_FILE"
  require_tools
  resolve_jars
  launch "$started"
  local ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))
  say "Apache Kafka $KAFKA_VERSION restarted on $HOST:$PORT after $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s (pid $(cat "$PID_FILE"), data kept in $RUN_DIR)"
}

status() {
  if pid=$(our_pid); then
    say "running (pid $pid) on $HOST:$PORT, data in $RUN_DIR"
  elif answers "$PORT"; then
    say "a broker not started by this script answers on $HOST:$PORT"
  else
    say "no broker answers on $HOST:$PORT"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) restart ;;
  status) status ;;
  *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
