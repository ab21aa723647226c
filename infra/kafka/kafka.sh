#!/usr/bin/env bash
# Starts and stops a single-node Apache Kafka broker (KRaft, no ZooKeeper) from Maven Central jars.
#
# Usage: infra/kafka/kafka.sh up|down|status|wait|reset
#   up      resolve jars (only when missing), format storage (only once), start, wait until ready
#   down    stop the broker (TERM, then KILL after a grace period)
#   status  print running/stopped; exit 0 when running, 1 when stopped
#   wait    block until the broker answers a metadata request (exit 1 on timeout)
#   reset   stop the broker and delete its data (topics, offsets, logs)
#
# Environment:
#   VIDREC_KAFKA_PORT             client listener port on 127.0.0.1 (default 9092)
#   VIDREC_KAFKA_CONTROLLER_PORT  KRaft controller port on 127.0.0.1 (default: client port + 1)
#   VIDREC_KAFKA_DIR              run folder: config, data, logs, pid (default infra/kafka/run)
#   VIDREC_KAFKA_HEAP             JVM heap options (default "-Xms256m -Xmx512m")
#   VIDREC_KAFKA_WAIT_S           readiness timeout of up/wait in seconds (default 90)
#   JAVA                          java executable (default: java on PATH); Kafka 4.x needs Java 17+
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${VIDREC_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${VIDREC_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
RUN_DIR="${VIDREC_KAFKA_DIR:-$HERE/run}"
LIBS="$HERE/.cache/libs"
LIBS_MARKER="$LIBS/.complete"
HEAP="${VIDREC_KAFKA_HEAP:--Xms256m -Xmx512m}"
WAIT_S="${VIDREC_KAFKA_WAIT_S:-90}"
JAVA="${JAVA:-java}"

CONFIG="$RUN_DIR/server.properties"
LOG4J_CONFIG="$RUN_DIR/log4j2.properties"
DATA_DIR="$RUN_DIR/data"
LOG_DIR="$RUN_DIR/logs"
PID_FILE="$RUN_DIR/kafka.pid"
PORT_FILE="$RUN_DIR/kafka.port"
CONSOLE_LOG="$LOG_DIR/console.out"
LAST_CHECK=""

say() { printf 'kafka: %s\n' "$*"; }
die() {
    printf 'kafka: error: %s\n' "$*" >&2
    exit 1
}

show_log_tail() {
    local f
    for f in "$LOG_DIR/server.log" "$CONSOLE_LOG"; do
        if [[ -s "$f" ]]; then
            printf -- '--- last lines of %s ---\n' "$f" >&2
            tail -n 40 "$f" >&2
        fi
    done
}

# The hash of the pom is stored in the marker, so editing the pom (a new Kafka version)
# re-resolves the jars while an unchanged pom never starts Maven again.
pom_hash() { sha256sum "$HERE/pom.xml" | cut -d' ' -f1; }

resolve_jars() {
    if [[ -f "$LIBS_MARKER" && "$(cat "$LIBS_MARKER")" == "$(pom_hash)" ]]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is needed once to fetch the Kafka jars; install it or put the jars in $LIBS"
    say "resolving Kafka jars with Maven (first run only) ..."
    local tmp="$LIBS.tmp.$$"
    rm -rf "$tmp"
    # Some Maven builds print bare colour codes even in quiet batch mode; strip them.
    if ! mvn -q -B -Dstyle.color=never -f "$HERE/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime 2>&1 |
        sed -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d' >&2; then
        rm -rf "$tmp"
        die "Maven could not resolve the Kafka jars (see above)"
    fi
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    pom_hash >"$LIBS_MARKER"
    say "$(find "$LIBS" -name '*.jar' | wc -l) jars in $LIBS"
}

check_java() {
    command -v "$JAVA" >/dev/null 2>&1 || die "java not found; Kafka 4.x needs Java 17 or newer"
    local v
    v="$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')"
    if [[ -n "$v" && "${v%%.*}" -lt 17 ]]; then
        die "Kafka 4.x needs Java 17 or newer; $JAVA is $v"
    fi
}

write_config() {
    mkdir -p "$DATA_DIR" "$LOG_DIR"
    # Static voters (controller.quorum.voters) rather than a dynamic quorum: the voter's address
    # lives in the config, not in the formatted log, so changing the ports needs no reformat.
    cat >"$CONFIG" <<EOF
# Written by infra/kafka/kafka.sh on every 'up'; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:${PORT},CONTROLLER://127.0.0.1:${CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${PORT}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=${DATA_DIR}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.segment.bytes=104857600
EOF
    cat >"$LOG4J_CONFIG" <<EOF
# Written by infra/kafka/kafka.sh: INFO to a size-capped file, chatty internals at WARN.
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = ${LOG_DIR}/server.log
appender.file.filePattern = ${LOG_DIR}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.common.name = org.apache.kafka.common
logger.common.level = WARN
logger.raft.name = org.apache.kafka.raft
logger.raft.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

java_opts() {
    # shellcheck disable=SC2086  # HEAP is a list of options
    printf '%s\n' $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        "-Dlog4j2.configurationFile=$LOG4J_CONFIG" "-Dkafka.logs.dir=$LOG_DIR"
}

format_storage() {
    if [[ -f "$DATA_DIR/meta.properties" ]]; then
        return 0
    fi
    local cluster_id
    cluster_id="$("$JAVA" -cp "$LIBS/*" "-Dlog4j2.configurationFile=$LOG4J_CONFIG" \
        kafka.tools.StorageTool random-uuid 2>>"$LOG_DIR/format.log" | tail -n 1)" || cluster_id=""
    [[ -n "$cluster_id" ]] || die "StorageTool random-uuid failed (see $LOG_DIR/format.log)"
    say "formatting $DATA_DIR (cluster id $cluster_id)"
    if ! "$JAVA" -cp "$LIBS/*" "-Dlog4j2.configurationFile=$LOG4J_CONFIG" \
        kafka.tools.StorageTool format -t "$cluster_id" -c "$CONFIG" >>"$LOG_DIR/format.log" 2>&1; then
        tail -n 20 "$LOG_DIR/format.log" >&2
        die "formatting the storage failed; 'kafka.sh reset' wipes $RUN_DIR"
    fi
}

# Prints the broker's pid when the pid file names a live kafka.Kafka process.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    local cmdline
    # A stale pid file names a process that is gone: the redirection itself fails then, and its
    # message comes from the shell, so the whole command is silenced, not only tr.
    cmdline="$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)" || return 1
    [[ "$cmdline" == *" kafka.Kafka "* ]] || return 1
    printf '%s\n' "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A broker can accept TCP before it serves requests; a metadata round trip proves it is usable.
# kafka-python (a project dependency) asks for cluster metadata when it is importable; otherwise
# an open port plus a short settle is the best plain bash can tell.
broker_answers() {
    local py
    py="$(command -v python3 || command -v python || true)"
    if [[ -n "$py" ]] && "$py" -c 'import kafka' >/dev/null 2>&1; then
        LAST_CHECK="$("$py" - "127.0.0.1:$PORT" 2>&1 <<'EOF'
import sys

from kafka import KafkaAdminClient

config = {"bootstrap_servers": sys.argv[1], "request_timeout_ms": 3000}
# kafka-python 2.x and 3.x name their bootstrap timeout differently; pass whichever exists.
for key in ("bootstrap_timeout_ms", "api_version_auto_timeout_ms"):
    if key in KafkaAdminClient.DEFAULT_CONFIG:
        config[key] = 3000
admin = KafkaAdminClient(**config)
try:
    brokers = admin.describe_cluster().get("brokers") or []
finally:
    admin.close()
if not brokers:
    sys.exit("metadata lists no broker yet")
EOF
)" || return 1
    else
        port_open "$PORT" && sleep 2
    fi
}

wait_ready() {
    local pid="${1:-}" deadline=$((SECONDS + WAIT_S))
    while ((SECONDS < deadline)); do
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            show_log_tail
            printf 'kafka: error: the broker exited during start-up\n' >&2
            return 1
        fi
        if port_open "$PORT" && broker_answers; then
            return 0
        fi
        sleep 0.5
    done
    show_log_tail
    if [[ -n "$LAST_CHECK" ]]; then
        printf -- '--- last metadata check ---\n%s\n' "$LAST_CHECK" | tail -n 5 >&2
    fi
    printf 'kafka: error: no answer from 127.0.0.1:%s within %ss\n' "$PORT" "$WAIT_S" >&2
    return 1
}

# One run folder holds one broker; a second broker on another port needs its own VIDREC_KAFKA_DIR.
check_same_port() {
    local recorded
    recorded="$(cat "$PORT_FILE" 2>/dev/null || true)"
    if [[ -n "$recorded" && "$recorded" != "$PORT" ]]; then
        die "the broker of $RUN_DIR (pid $1) listens on port $recorded, not $PORT; set VIDREC_KAFKA_DIR to run a second one"
    fi
}

stop_pid() {
    local pid="$1" n=0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((n < 300)); do
        sleep 0.1
        n=$((n + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "still alive after 30s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$PID_FILE"
}

cmd_up() {
    local pid started=$SECONDS
    if pid="$(running_pid)"; then
        check_same_port "$pid"
        wait_ready "$pid" || exit 1
        say "already running (pid $pid, 127.0.0.1:$PORT)"
        return 0
    fi
    rm -f "$PID_FILE"
    if port_open "$PORT"; then
        die "port $PORT is taken by another process; set VIDREC_KAFKA_PORT to use another port"
    fi
    check_java
    resolve_jars
    write_config
    format_storage
    local -a opts
    mapfile -t opts < <(java_opts)
    # bash -c records its own pid and then execs java, so the pid file names the JVM whether or not
    # setsid had to fork; setsid detaches the broker from this terminal's signals.
    # A fresh log per start, so a failure report shows this start and not the previous run.
    if [[ -f "$LOG_DIR/server.log" ]]; then
        mv -f "$LOG_DIR/server.log" "$LOG_DIR/server.previous.log"
    fi
    : >"$CONSOLE_LOG"
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
        "$JAVA" "${opts[@]}" -cp "$LIBS/*" kafka.Kafka "$CONFIG" \
        >>"$CONSOLE_LOG" 2>&1 </dev/null &
    local n=0
    while [[ ! -s "$PID_FILE" ]] && ((n < 50)); do
        sleep 0.1
        n=$((n + 1))
    done
    [[ -s "$PID_FILE" ]] || die "the broker process did not start (see $CONSOLE_LOG)"
    pid="$(cat "$PID_FILE")"
    printf '%s\n' "$PORT" >"$PORT_FILE"
    say "starting (pid $pid, 127.0.0.1:$PORT, data in $DATA_DIR) ..."
    if ! wait_ready "$pid"; then
        if kill -0 "$pid" 2>/dev/null; then
            say "stopping the half-started broker (its logs stay in $LOG_DIR)"
            stop_pid "$pid"
        fi
        exit 1
    fi
    say "ready on 127.0.0.1:$PORT after $((SECONDS - started))s (pid $pid)"
}

cmd_down() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        say "not running"
        return 0
    fi
    say "stopping pid $pid ..."
    stop_pid "$pid"
    say "stopped"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        check_same_port "$pid"
        if port_open "$PORT"; then
            say "running (pid $pid, 127.0.0.1:$PORT)"
        else
            say "running (pid $pid), but 127.0.0.1:$PORT does not accept connections yet"
        fi
        return 0
    fi
    say "stopped (127.0.0.1:$PORT, run folder $RUN_DIR)"
    return 1
}

cmd_wait() {
    local pid=""
    pid="$(running_pid)" || pid=""
    wait_ready "$pid" || exit 1
    say "ready on 127.0.0.1:$PORT"
}

cmd_reset() {
    cmd_down
    rm -rf "$DATA_DIR" "$LOG_DIR" "$CONFIG" "$LOG4J_CONFIG"
    say "wiped $RUN_DIR"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
wait) cmd_wait ;;
reset) cmd_reset ;;
*)
    sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
