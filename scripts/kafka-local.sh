#!/usr/bin/env bash
# A real Apache Kafka (KRaft) on 127.0.0.1, from Kafka's own jars on Maven Central; no
# Docker needed. By default a single node (broker and controller in one process):
#
#   scripts/kafka-local.sh start    resolve the jars (once), format storage, start, wait until ready
#   scripts/kafka-local.sh stop     stop the broker this script started and delete its data
#   scripts/kafka-local.sh restart  stop it gracefully and start it again on the same data
#   scripts/kafka-local.sh status   say whether a broker answers
#   scripts/kafka-local.sh kill     SIGKILL it (for tests; `restart` starts it again on its data)
#
# With `--brokers N` (or KAFKA_LOCAL_BROKERS=N, N from 2 to 9) a cluster of N nodes, each a
# broker and a voter of the KRaft quorum, each with its own data folder; internal topics
# have min(N, 3) replicas and min.insync.replicas = min(replicas - 1, replicas / 2 + 1),
# at least 1 (2 for three nodes):
#
#   scripts/kafka-local.sh --brokers 3 start [NODE]    every node (a fresh cluster), or one stopped node on its data
#   scripts/kafka-local.sh --brokers 3 stop [NODE]     every node, deleting the data; or one, keeping its data
#   scripts/kafka-local.sh --brokers 3 restart [NODE]  one node (stopped gracefully if running, started on its data),
#                                                      or all one by one, each once the others have caught up
#   scripts/kafka-local.sh --brokers 3 kill [NODE]     SIGKILL one node or all (data kept)
#   scripts/kafka-local.sh --brokers 3 status          every node, running or not
#
# Nodes are numbered from 1. Node i serves clients on KAFKA_LOCAL_PORT + i - 1 (base
# 19092, so 19092-19094 for three nodes) and its controller on KAFKA_LOCAL_CONTROLLER_PORT
# + i - 1 (base: right after the client ports, 19095-19097); config, logs and data are in
# $TMPDIR/sales-kafka-cluster-<base port>/node-<i>.
#
# Settings (environment): KAFKA_LOCAL_PORT (9092), KAFKA_LOCAL_CONTROLLER_PORT (9093),
# KAFKA_LOCAL_HEAP (768m; 512m a node in a cluster), KAFKA_LOCAL_READY_TIMEOUT (90,
# seconds a start may take), KAFKA_LOCAL_BROKERS (1), SALES_KAFKA_CACHE (where the jars
# are kept, outside the repo).
set -euo pipefail

usage() {
  echo "usage: $0 [--brokers N] start|stop|restart|kill|status [NODE]" >&2
  exit 2
}

NODES=${KAFKA_LOCAL_BROKERS:-1}
ARGS=()
while (($#)); do
  case $1 in
    --brokers) (($# >= 2)) || usage; NODES=$2; shift 2 ;;
    --brokers=*) NODES=${1#*=}; shift ;;
    -h | --help) usage ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[[ $NODES =~ ^[1-9]$ ]] || { echo "kafka-local: error: --brokers must be a number from 1 to 9, got '$NODES'" >&2; exit 2; }

KAFKA_VERSION=4.1.1 # keep in step with scripts/kafka/pom.xml and the tests' container tag
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SALES_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sales-pipeline}
LIBS=$CACHE/kafka-$KAFKA_VERSION/libs
HOST=127.0.0.1
if ((NODES == 1)); then
  PORT=${KAFKA_LOCAL_PORT:-9092}
  CONTROLLER_PORT=${KAFKA_LOCAL_CONTROLLER_PORT:-9093}
  HEAP=${KAFKA_LOCAL_HEAP:-768m}
  # Config, logs and data of a run: a temporary folder, wiped at each start and at stop.
  RUN_DIR=${TMPDIR:-/tmp}/sales-kafka-$PORT
else
  PORT=${KAFKA_LOCAL_PORT:-19092}
  CONTROLLER_PORT=${KAFKA_LOCAL_CONTROLLER_PORT:-$((PORT + NODES))}
  HEAP=${KAFKA_LOCAL_HEAP:-512m}
  # The cluster's folder: a folder per node, wiped when the whole cluster starts or stops.
  CLUSTER_DIR=${TMPDIR:-/tmp}/sales-kafka-cluster-$PORT
  RUN_DIR=$CLUSTER_DIR/node-1
fi
PID_FILE=$RUN_DIR/kafka.pid
WHAT="the broker"
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

# Starts the broker on the storage in $RUN_DIR, in the background.
spawn() {
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
  echo "$!" >"$PID_FILE"
}

# Waits until the broker spawned in $RUN_DIR serves; $1 is when the start began
# ($SECONDS), for the ready timeout.
await_ready() {
  local started=$1 pid
  pid=$(<"$PID_FILE")
  while true; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      tail -n 40 "$RUN_DIR/logs/console.log" "$RUN_DIR/logs/server.log" >&2 2>/dev/null || true
      die "$WHAT exited during start-up (logs above, in $RUN_DIR/logs)"
    fi
    if answers "$PORT" && grep -q "Kafka Server started" "$RUN_DIR/logs/server.log" 2>/dev/null; then
      break
    fi
    if (( SECONDS - started > READY_TIMEOUT )); then
      # Not left running half-started: the next start would take it for a broker.
      terminate "$pid" 10
      rm -f "$PID_FILE"
      die "$WHAT did not become ready within ${READY_TIMEOUT}s and was stopped (logs in $RUN_DIR/logs); a slow machine may need KAFKA_LOCAL_READY_TIMEOUT set higher"
    fi
    sleep 0.2
  done
}

# Runs the broker on the storage in $RUN_DIR and waits until it serves; $1 is when the
# start began ($SECONDS), for the ready timeout.
launch() {
  spawn
  await_ready "$1"
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

# SIGKILL, as a crash would, and waits until the process is gone.
crash() {
  local pid=$1
  kill -KILL "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}

# Single node: SIGKILL; the data stays for `restart`.
kill_broker() {
  local pid
  pid=$(our_pid) || die "no broker started by this script is running on port $PORT"
  crash "$pid"
  rm -f "$PID_FILE"
  say "killed (pid $pid, SIGKILL); data kept in $RUN_DIR, \`restart\` starts it again"
}

# ---- A cluster of $NODES nodes (--brokers N) -------------------------------------------

BASE_PORT=$PORT
BASE_CONTROLLER_PORT=$CONTROLLER_PORT
# Replicas of the internal topics, and the min ISR the brokers give every topic that does
# not set its own: replicas - 1, at most a majority of the replicas, at least 1.
REPLICAS=$((NODES < 3 ? NODES : 3))
MIN_ISR=$((REPLICAS - 1 < REPLICAS / 2 + 1 ? REPLICAS - 1 : REPLICAS / 2 + 1))
((MIN_ISR >= 1)) || MIN_ISR=1

# Points RUN_DIR, PID_FILE, PORT, CONTROLLER_PORT and WHAT at node $1.
select_node() {
  NODE=$1
  RUN_DIR=$CLUSTER_DIR/node-$NODE
  PID_FILE=$RUN_DIR/kafka.pid
  PORT=$((BASE_PORT + NODE - 1))
  CONTROLLER_PORT=$((BASE_CONTROLLER_PORT + NODE - 1))
  WHAT="node $NODE"
}

all_nodes() { seq 1 "$NODES"; }

bootstrap() {
  local list=() i
  for i in $(all_nodes); do list+=("$HOST:$((BASE_PORT + i - 1))"); done
  (IFS=,; echo "${list[*]}")
}

voters() {
  local list=() i
  for i in $(all_nodes); do list+=("$i@$HOST:$((BASE_CONTROLLER_PORT + i - 1))"); done
  (IFS=,; echo "${list[*]}")
}

# The nodes named on the command line (each checked), or every node.
nodes_of() {
  if (($# == 0)); then
    all_nodes
    return
  fi
  local n
  for n in "$@"; do
    [[ $n =~ ^[1-9]$ ]] && ((n <= NODES)) || die "no node '$n': nodes are numbered 1 to $NODES"
    echo "$n"
  done
}

write_node_config() {
  mkdir -p "$RUN_DIR/data" "$RUN_DIR/logs"
  cat >"$RUN_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=$NODE
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$RUN_DIR/data
auto.create.topics.enable=false
num.partitions=1
# $NODES nodes: internal topics on $REPLICAS of them, and an acknowledged write (acks=all)
# on at least $MIN_ISR, for every topic that does not say otherwise.
default.replication.factor=$REPLICAS
min.insync.replicas=$MIN_ISR
offsets.topic.replication.factor=$REPLICAS
transaction.state.log.replication.factor=$REPLICAS
transaction.state.log.min.isr=$MIN_ISR
share.coordinator.state.topic.replication.factor=$REPLICAS
share.coordinator.state.topic.min.isr=$MIN_ISR
# Never a leader that may lack acknowledged records.
unclean.leader.election.enable=false
# Fewer internal partitions start faster on a small machine.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
# No waiting for more members before the first rebalance: tests start consumers one by one.
group.initial.rebalance.delay.ms=0
# Several nodes share one small machine.
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=4
PROPS
}

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
seconds_text() { echo "$(($1 / 1000)).$(printf '%03d' $(($1 % 1000)))s"; }

# Under-replicated partitions of the cluster, as Kafka's admin client reports them
# (a small Java program run from source, which needs a JDK); fails when it cannot tell.
under_replicated() {
  local args
  mapfile -t args < <(java_args)
  java "${args[@]}" "$HERE/kafka/UnderReplicated.java" "$(bootstrap)" 2>>"$CLUSTER_DIR/admin.log"
}

# Waits until no partition lacks a replica in its ISR (the node restarted last has caught
# up), so that restarting the next node leaves every partition min.insync.replicas.
await_replicated() {
  local started=$SECONDS count
  while true; do
    if ! count=$(under_replicated); then
      say "cannot count under-replicated partitions (a JDK is needed; see $CLUSTER_DIR/admin.log); waiting 10s instead"
      sleep 10
      return 0
    fi
    ((count == 0)) && return 0
    (( SECONDS - started > READY_TIMEOUT )) && die "$count partitions still under-replicated after ${READY_TIMEOUT}s"
    sleep 1
  done
}

cluster_running() {
  local i
  for i in $(all_nodes); do
    select_node "$i"
    our_pid >/dev/null && echo "$i"
  done
  return 0
}

cluster_start() {
  local wanted running started=$SECONDS started_ns i cluster_id
  started_ns=$(date +%s%N)
  mapfile -t wanted < <(nodes_of "$@")
  mapfile -t running < <(cluster_running)
  local fresh=0
  if ((${#running[@]} == 0 && $# == 0)); then
    fresh=1
  fi
  local to_start=()
  for i in "${wanted[@]}"; do
    select_node "$i"
    if pid=$(our_pid); then
      say "node $i already running (pid $pid) on $HOST:$PORT"
      continue
    fi
    answers "$PORT" && die "port $PORT (node $i) is taken by a process this script did not start; set KAFKA_LOCAL_PORT"
    answers "$CONTROLLER_PORT" && die "port $CONTROLLER_PORT (controller of node $i) is taken; set KAFKA_LOCAL_CONTROLLER_PORT"
    ((fresh)) || [[ -f $RUN_DIR/server.properties ]] \
      || die "node $i has no data in $RUN_DIR; \`stop\` the cluster and \`start\` it again"
    to_start+=("$i")
  done
  ((${#to_start[@]} > 0)) || return 0
  require_tools
  resolve_jars
  if ((fresh)); then
    rm -rf "$CLUSTER_DIR"
    mkdir -p "$CLUSTER_DIR"
    RUN_DIR=$CLUSTER_DIR
    cluster_id=$(java_cmd kafka.tools.StorageTool random-uuid)
    echo "$cluster_id" >"$CLUSTER_DIR/cluster.id"
    local formats=()
    for i in "${to_start[@]}"; do
      select_node "$i"
      write_node_config
      java_cmd kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$RUN_DIR/server.properties" \
        >"$RUN_DIR/logs/format.log" 2>&1 &
      formats+=("$!:$i")
    done
    for f in "${formats[@]}"; do
      select_node "${f#*:}"
      wait "${f%%:*}" || { cat "$RUN_DIR/logs/format.log" >&2; die "formatting the KRaft storage of node $NODE failed"; }
    done
  fi
  # Every node at once: a node is ready only once a majority of the quorum runs.
  for i in "${to_start[@]}"; do
    select_node "$i"
    spawn
  done
  for i in "${to_start[@]}"; do
    select_node "$i"
    await_ready "$started"
  done
  for i in "${to_start[@]}"; do
    select_node "$i"
    say "node $i ready on $HOST:$PORT (pid $(cat "$PID_FILE"))"
  done
  say "Apache Kafka $KAFKA_VERSION, $NODES nodes (replication $REPLICAS, min.insync.replicas $MIN_ISR): started ${#to_start[@]} after $(seconds_text "$(ms_since "$started_ns")"); bootstrap $(bootstrap), data in $CLUSTER_DIR"
}

# Stops node $NODE gracefully (its partitions' leadership moves to the others first).
stop_node() {
  local pid
  if pid=$(our_pid); then
    terminate "$pid" 30
    rm -f "$PID_FILE"
    say "node $NODE stopped (pid $pid)"
  else
    say "node $NODE is not running"
  fi
}

cluster_stop() {
  local i pid stopping=()
  if (($# > 0)); then
    for i in $(nodes_of "$@"); do
      select_node "$i"
      stop_node
    done
    say "data kept in $CLUSTER_DIR; \`start NODE\` or \`restart NODE\` starts a node again"
    return 0
  fi
  # Every node at once, then the data goes.
  for i in $(all_nodes); do
    select_node "$i"
    if pid=$(our_pid); then
      (terminate "$pid" 30) &
      stopping+=("$!")
    elif answers "$PORT"; then
      say "a broker not started by this script answers on $HOST:$PORT; not stopping it, and leaving $CLUSTER_DIR alone"
      return 0
    fi
  done
  for pid in "${stopping[@]}"; do wait "$pid" || true; done
  rm -rf "$CLUSTER_DIR"
  say "stopped ${#stopping[@]} node(s) and deleted the cluster's data"
}

# Restarts node $NODE on its data: stopped gracefully if it runs, then started.
restart_node() {
  local started=$SECONDS started_ns pid
  started_ns=$(date +%s%N)
  [[ -f $RUN_DIR/server.properties ]] || die "node $NODE has no data in $RUN_DIR; \`start\` the cluster first"
  if pid=$(our_pid); then
    terminate "$pid" 30
    rm -f "$PID_FILE"
  fi
  answers "$PORT" && die "port $PORT (node $NODE) is taken by a process this script did not start"
  launch "$started"
  say "node $NODE restarted on $HOST:$PORT after $(seconds_text "$(ms_since "$started_ns")") (pid $(cat "$PID_FILE"), data kept in $RUN_DIR)"
}

cluster_restart() {
  local i started_ns
  require_tools
  resolve_jars
  if (($# > 0)); then
    for i in $(nodes_of "$@"); do
      select_node "$i"
      restart_node
    done
    return 0
  fi
  # A rolling restart: one node at a time, the next once the partitions are replicated
  # again.
  started_ns=$(date +%s%N)
  for i in $(all_nodes); do
    select_node "$i"
    restart_node
    await_replicated
  done
  say "rolling restart of $NODES nodes done after $(seconds_text "$(ms_since "$started_ns")")"
}

cluster_kill() {
  local i pid
  for i in $(nodes_of "$@"); do
    select_node "$i"
    if pid=$(our_pid); then
      crash "$pid"
      rm -f "$PID_FILE"
      say "node $i killed (pid $pid, SIGKILL); data kept, \`restart $i\` starts it again"
    else
      say "node $i is not running"
    fi
  done
}

cluster_status() {
  local i pid up=0
  for i in $(all_nodes); do
    select_node "$i"
    if pid=$(our_pid); then
      say "node $i: running (pid $pid) on $HOST:$PORT, controller on $HOST:$CONTROLLER_PORT, data in $RUN_DIR"
      up=$((up + 1))
    elif answers "$PORT"; then
      say "node $i: a broker not started by this script answers on $HOST:$PORT"
    elif [[ -f $RUN_DIR/server.properties ]]; then
      say "node $i: not running (data kept in $RUN_DIR)"
    else
      say "node $i: not running"
    fi
  done
  say "$up of $NODES nodes running; bootstrap $(bootstrap)"
  ((up == NODES))
}

COMMAND=${ARGS[0]:-}
NODE_ARGS=("${ARGS[@]:1}")
if ((NODES > 1)); then
  case "$COMMAND" in
    start) cluster_start "${NODE_ARGS[@]}" ;;
    stop) cluster_stop "${NODE_ARGS[@]}" ;;
    restart) cluster_restart "${NODE_ARGS[@]}" ;;
    kill) cluster_kill "${NODE_ARGS[@]}" ;;
    status) cluster_status ;;
    *) usage ;;
  esac
  exit
fi

# A single node: its number, if given, can only be 1.
for n in "${NODE_ARGS[@]}"; do
  [[ $n == 1 ]] || die "no node '$n': a single broker runs (use --brokers N for a cluster)"
done
case "$COMMAND" in
  start) start ;;
  stop) stop ;;
  restart) restart ;;
  status) status ;;
  kill) kill_broker ;;
  *) usage ;;
esac
