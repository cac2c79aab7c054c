#!/bin/sh
# Starts a single-node KRaft broker (broker and controller in one JVM).
#
#   kafka-entrypoint             format the data directory once, then run
#   kafka-entrypoint --version   print Kafka's version
#
# Environment:
#   KAFKA_ADVERTISED_HOST  the host clients reach it as (default: hostname)
#   KAFKA_LISTEN_HOST      address the client port binds (default 0.0.0.0)
#   KAFKA_PORT             client port (default 9092)
#   KAFKA_CONTROLLER_PORT  controller port, inside the container (9093)
#   KAFKA_EXTERNAL_PORT    a second client listener on this container port,
#                          for clients outside the container network (a
#                          published port); unset: none
#   KAFKA_EXTERNAL_ADVERTISED  HOST:PORT those clients reach it as (default
#                          127.0.0.1:$KAFKA_EXTERNAL_PORT)
#   KAFKA_CLUSTER_ID       cluster id for the first format (default: fixed,
#                          so a re-created container keeps its volume)
#   KAFKA_HEAP_OPTS        JVM heap (default -Xms256m -Xmx512m)
set -eu
LIBS=/opt/kafka/libs
DATA=/var/lib/kafka/data
CONF=/var/lib/kafka/server.properties
LISTEN=${KAFKA_LISTEN_HOST:-0.0.0.0}
PORT=${KAFKA_PORT:-9092}
CPORT=${KAFKA_CONTROLLER_PORT:-9093}
HOST=${KAFKA_ADVERTISED_HOST:-$(hostname)}
# base64url of the 16 bytes "portcullis-kafka"
CLUSTER_ID=${KAFKA_CLUSTER_ID:-cG9ydGN1bGxpcy1rYWZrYQ}
XPORT=${KAFKA_EXTERNAL_PORT:-}
LISTENERS="PLAINTEXT://$LISTEN:$PORT,CONTROLLER://127.0.0.1:$CPORT"
ADVERTISED="PLAINTEXT://$HOST:$PORT"
PROTOCOLS="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
if [ -n "$XPORT" ]; then
  LISTENERS="$LISTENERS,EXTERNAL://$LISTEN:$XPORT"
  ADVERTISED="$ADVERTISED,EXTERNAL://${KAFKA_EXTERNAL_ADVERTISED:-127.0.0.1:$XPORT}"
  PROTOCOLS="$PROTOCOLS,EXTERNAL:PLAINTEXT"
fi
LOG4J=/var/lib/kafka/log4j2.properties
java_run() {
  # shellcheck disable=SC2086
  exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J" -cp "$LIBS/*" "$@"
}

# The broker's log: INFO and up on stdout (the container's log); for
# --version, warnings only.
LEVEL=INFO
[ "${1:-}" = --version ] && LEVEL=WARN
cat >"$LOG4J" <<L4J
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = $LEVEL
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = $LEVEL
logger.state.name = state.change.logger
logger.state.level = WARN
L4J

if [ "${1:-}" = --version ]; then
  java_run kafka.Kafka --version
fi

cat >"$CONF" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CPORT
listeners=$LISTENERS
advertised.listeners=$ADVERTISED
listener.security.protocol.map=$PROTOCOLS
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$DATA
num.network.threads=2
num.io.threads=4
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.ms=86400000
CONF

if [ ! -f "$DATA/meta.properties" ]; then
  echo "kafka-entrypoint: formatting $DATA (cluster $CLUSTER_ID)" >&2
  java -Xmx256m -XX:+UseSerialGC -Dlog4j2.configurationFile="$LOG4J" \
    -cp "$LIBS/*" kafka.tools.StorageTool format \
    --standalone -t "$CLUSTER_ID" -c "$CONF" >&2
fi
echo "kafka-entrypoint: starting Kafka (advertised $ADVERTISED)" >&2
java_run kafka.Kafka "$CONF"
