#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft, no ZooKeeper) on loopback for the test suite.
#
#   scripts/kafka.sh start [--fresh] | stop | status
#
# The broker's jars come from Maven Central (scripts/kafka/pom.xml) into a cache outside git, so
# nothing but Java and Maven is needed; both are installed from Debian's packages if missing.
# `start` is idempotent: a broker that is already up and answering is left alone. A stopped broker
# restarts on its existing log dir, topics and data intact, as a real broker restart does;
# `start --fresh` (what `make test` uses) starts a stopped broker on an empty, newly formatted
# log dir instead, so test topics cannot pile up across runs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
pom=$here/kafka/pom.xml
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
cache=${STRANGLER_CACHE:-$HOME/.cache/strangler}
libs=$cache/kafka-$version/libs
data=${STRANGLER_KAFKA_DATA:-$cache/kafka-data}
port=${STRANGLER_KAFKA_PORT:-19092}
controller_port=${STRANGLER_KAFKA_CONTROLLER_PORT:-19093}
venv=${STRANGLER_VENV:-$root/.venv}
pidfile=$data/kafka.pid
wait_seconds=${STRANGLER_KAFKA_WAIT:-90}

say() { echo "kafka.sh: $*" >&2; }

ensure_tools() {
  local missing=()
  command -v java >/dev/null || missing+=(default-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ensure_jars() {
  # The stamp holds the pom's checksum: a changed pom re-resolves, a half-finished copy never counts.
  local stamp=$libs/.resolved sum
  sum=$(sha256sum "$pom" | cut -d' ' -f1)
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ] && return
  say "resolving Kafka $version jars from Maven Central into $libs"
  local tmp=$libs.tmp.$$
  rm -rf "$tmp"
  local out
  if ! out=$(mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$tmp" 2>&1); then
    echo "$out" >&2
    say "Maven could not resolve the broker's jars (network? proxy settings in ~/.m2/settings.xml?)"
    exit 1
  fi
  echo "$sum" > "$tmp/.resolved"
  rm -rf "$libs"
  mkdir -p "$(dirname "$libs")"
  mv "$tmp" "$libs"
}

java_cp() { java -cp "$libs/*" "$@"; }

write_config() {
  mkdir -p "$data/logs" "$data/log"
  cat > "$data/server.properties" <<PROPS
# Written by scripts/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/logs
# One broker: every internal topic has a single replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
default.replication.factor=1
num.partitions=1
# Tests create their topics with AdminClient; auto-create stays on for ad-hoc demos.
auto.create.topics.enable=true
# Consumers in tests join an empty group: do not wait 3 s for more members.
group.initial.rebalance.delay.ms=0
# The machine is small and shared.
num.network.threads=2
num.io.threads=2
log.retention.hours=24
PROPS
  cat > "$data/log4j2.properties" <<'LOG'
# Quiet: warnings to a size-capped file, plus the broker's start/stop lines.
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = info
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = info
LOG
}

format_log_dir() {
  # With --fresh, or when the log dir was never formatted, start from an empty, newly formatted
  # log dir; otherwise keep it, so a restarted broker still has its topics and offsets.
  if [ "$fresh" != 1 ] && [ -f "$data/logs/meta.properties" ]; then return; fi
  rm -rf "$data/logs"
  mkdir -p "$data/logs"
  local cluster_id=-
  # A cluster id is 16 random bytes in unpadded base64url; Kafka's own never start with '-'.
  while [ "${cluster_id:0:1}" = - ]; do
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  done
  java_cp -Dlog4j2.configurationFile="$data/log4j2.properties" -Dkafka.logs.dir="$data/log" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$data/server.properties" >/dev/null
}

running_pid() {
  # The pid from the pid file if that process is still our broker.
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
    && grep -q 'kafka.Kafka' "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

answers() {
  # True when the broker serves metadata (so clients and AdminClient work), checked with the
  # project's own client if the venv has it, else with Kafka's broker-api-versions tool.
  if "$venv/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
    "$venv/bin/python" - "127.0.0.1:$port" <<'PY' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0})
sys.exit(0 if admin.list_topics(timeout=3).brokers else 1)
PY
  else
    # log4j2's default configuration: the tool's noise goes to /dev/null, not the broker's log.
    java_cp org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$port" \
      >/dev/null 2>&1
  fi
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  local pid
  if pid=$(running_pid); then
    if answers; then say "broker already running (pid $pid) on 127.0.0.1:$port"; return; fi
  else
    for p in "$port" "$controller_port"; do
      if port_taken "$p"; then
        say "port $p is taken by another process; stop it or set STRANGLER_KAFKA_PORT/STRANGLER_KAFKA_CONTROLLER_PORT"
        exit 1
      fi
    done
    ensure_tools
    ensure_jars
    write_config
    format_log_dir
    : > "$data/log/kafka.out"; : > "$data/log/server.log"   # a failure shows this run's lines only
    # setsid: the broker outlives the shell (and make) that started it.
    setsid java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$data/log4j2.properties" -Dkafka.logs.dir="$data/log" \
      -cp "$libs/*" kafka.Kafka "$data/server.properties" \
      >>"$data/log/kafka.out" 2>&1 </dev/null 9>&- &
    pid=$!
    echo "$pid" > "$pidfile"
    say "started broker (pid $pid), waiting for it to answer on 127.0.0.1:$port"
  fi
  local deadline=$((SECONDS + wait_seconds))
  until answers; do
    if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      say "broker did not come up on 127.0.0.1:$port; last lines of its logs:"
      tail -n 30 "$data/log/kafka.out" "$data/log/server.log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.5
  done
  say "broker up on 127.0.0.1:$port (pid $pid, data in $data)"
}

stop() {
  local pid
  if ! pid=$(running_pid); then say "broker not running"; rm -f "$pidfile"; return; fi
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; say "broker stopped"; return; }
    sleep 0.5
  done
  say "broker (pid $pid) ignored SIGTERM for 30 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

status() {
  local pid
  if pid=$(running_pid) && answers; then
    echo "kafka: running (pid $pid) on 127.0.0.1:$port"
  else
    echo "kafka: not running"
    return 3
  fi
}

serialised() {
  # Two `make test`s starting at once must not race to start two brokers on one log dir.
  mkdir -p "$data"
  exec 9>"$data/.lock"
  flock 9
  "$@"
}

fresh=0
[ "${2:-}" = --fresh ] && fresh=1
case "${1:-}" in
  start) serialised start ;;
  stop) serialised stop ;;
  status) status ;;
  *) echo "usage: $0 start [--fresh] | stop | status" >&2; exit 2 ;;
esac
