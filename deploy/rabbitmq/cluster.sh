#!/usr/bin/env bash
# A RabbitMQ cluster of three nodes on this machine, beside (not instead of) the default node:
#
#   deploy/rabbitmq/cluster.sh start NAME FIRST_PORT DIR   # nodes NAME1..3@localhost on
#                                                          # FIRST_PORT, +1, +2 (AMQP) and
#                                                          # FIRST_PORT+100.. (inter-node)
#   deploy/rabbitmq/cluster.sh stop  NAME DIR              # stops them, removes DIR
#
# `start` prints the AMQP_URL that lists the three nodes (Payrail connects to the first that
# answers and moves on when one dies). Payrail's queues are quorum queues: declared on a
# cluster of three, each is replicated on all three, so a node can die without losing a
# message. Needs rabbitmq-server 3.10+ and the rabbitmq user's Erlang cookie (the default
# node's), as the default node does.
set -euo pipefail
command=${1:?start|stop}
name=${2:?a node name prefix, e.g. payrail}

node() { echo "$name$1@localhost"; }

case "$command" in
  start)
    first=${3:?the first AMQP port}
    dir=${4:?a directory for the data and logs of the nodes}
    for i in 1 2 3; do
      d="$dir/$i"
      mkdir -p "$d"
      printf 'listeners.tcp.local = 127.0.0.1:%s\nloopback_users = none\n' $((first + i - 1)) > "$d/rabbitmq.conf"
    done
    # The server runs as the rabbitmq user when started by root.
    if [ "$(id -u)" = 0 ]; then chown -R rabbitmq:rabbitmq "$dir"; fi
    for i in 1 2 3; do
      d="$dir/$i"
      RABBITMQ_NODENAME=$(node "$i") RABBITMQ_DIST_PORT=$((first + 100 + i - 1)) \
        RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" \
        RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" RABBITMQ_PID_FILE="$d/pid" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
        rabbitmq-server -detached >/dev/null 2>&1
    done
    # A node is only known to the CLI once it has registered, a moment after it was started.
    for i in 1 2 3; do
      for _ in $(seq 120); do
        rabbitmqctl -q -n "$(node "$i")" await_startup --timeout 120 >/dev/null 2>&1 && break
        sleep 1
      done
      rabbitmqctl -q -n "$(node "$i")" await_startup --timeout 10 >/dev/null
    done
    for i in 2 3; do
      rabbitmqctl -q -n "$(node "$i")" stop_app >/dev/null
      rabbitmqctl -q -n "$(node "$i")" join_cluster "$(node 1)" >/dev/null
      rabbitmqctl -q -n "$(node "$i")" start_app >/dev/null
    done
    urls=()
    for i in 1 2 3; do urls+=("amqp://guest:guest@127.0.0.1:$((first + i - 1))/%2f"); done
    (IFS=,; echo "AMQP_URL=${urls[*]}")
    ;;
  stop)
    dir=${3:?the directory given to start}
    for i in 1 2 3; do
      rabbitmqctl -q -n "$(node "$i")" stop >/dev/null 2>&1 || true
    done
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start NAME FIRST_PORT DIR | stop NAME DIR" >&2
    exit 2
    ;;
esac
