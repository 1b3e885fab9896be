#!/usr/bin/env bash
# The figures in docs/benchmarks.md, each scenario against a fresh database, with the release
# build and the local PostgreSQL, RabbitMQ and Redis:
#   bench/run.sh create|sustained|drain1|drain2|vs-svix|capacity|growth|faults|fleet|cluster|ab [runs=3]
# Scenarios start and stop the gateway and workers themselves; nothing else may use port 8080.
# vs-svix runs the same scenarios against Payrail and svix-server (built by
# ../shared/peers/svix/build.sh into SVIX_DIR, default ../svix-peer), interleaved, and prints
# the side-by-side table; its RESULT lines are kept in target/vs-svix-*.txt.
# ab runs vs-svix's Payrail scenarios for another build against this one, interleaved:
# AB_OLD names a directory holding that build's gateway, worker and bench (copy them out of
# target/release before checking out the change).
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:?create|sustained|drain1|drain2|vs-svix|capacity|growth|faults|fleet|cluster|ab}
runs=${2:-3}

# The suites that run the binaries under faults, at the issue's scale with release builds; each
# starts its own binaries on a scratch database and prints its figures.
#   faults:  one gateway and one worker, 150 payments a second, a fault every 25 s (kills,
#            cuts, an outage);
#   fleet:   two gateways and two workers, 100 a second, a kill or a cut every 20 s (about
#            10,000 payments);
#   cluster: a three-node RabbitMQ cluster beside the default node, 100 a second, the node in
#            use killed after 20 s.
suite() { # test-binary VARIABLE_PREFIX default-rate default-every [extra VAR=value...]
  local test=$1 knobs=$2 rate=$3 every=$4
  shift 4
  cargo build -q --release -p gateway   # the test finds it beside its own worker binary
  for run in $(seq "$runs"); do
    echo "== $test run $run"
    env "${knobs}_RATE=${RATE:-$rate}" "${knobs}_EVERY=${EVERY:-$every}" "$@" \
      cargo nextest run --release -p worker --test "$test" --no-capture
  done
}
case "$scenario" in
  faults) suite faults PAYRAIL_FAULTS 150 25 PAYRAIL_FAULTS_STRANDED=5; exit 0 ;;
  fleet) suite fleet PAYRAIL_FLEET 100 20 PAYRAIL_FLEET_STRANDED=15; exit 0 ;;
  cluster) suite cluster PAYRAIL_CLUSTER 100 20; exit 0 ;;
esac
bin=target/release
cargo build -q --release -p gateway -p worker -p bench
bench/hot-code.sh --check   # a stale hot-code list shows here as a long layout

db=payrail_bench
# Loopback: TLS to a database on the same host only costs CPU on both ends.
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable"
export AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f REDIS_URL=redis://127.0.0.1:6379
export PAYRAIL_AMQP_PREFIX=payrail_bench PAYRAIL_REDIS_PREFIX=payrail_bench
export PAYRAIL_ADMIN_TOKEN=bench-admin-token-7c1e9a20d4b36f85 PAYRAIL_WEBHOOK_TARGETS=loopback
# Real mode requires it (every gateway signs dashboard sessions with it).
export PAYRAIL_DASHBOARD_SECRET=bench-dashboard-secret-of-some-length
export RUST_LOG=warn
target=(--base http://127.0.0.1:8080 --admin-token "$PAYRAIL_ADMIN_TOKEN")
pids=()

stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
# The scratch databases go with the script, however it ends (the figures are printed by then),
# unless KEEP_DB=1 keeps them to query afterwards (docs/benchmarks.md's time breakdown).
drop_scratch() {
  [ -z "${KEEP_DB:-}" ] || return 0
  for name in $db payrail_bench_empty payrail_bench_history svix_bench; do
    psql -q postgres://postgres@127.0.0.1:5432/postgres \
      -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" 2>/dev/null || true
  done
}
trap 'stop_all; drop_scratch' EXIT

fresh() {
  psql -q postgres://postgres@127.0.0.1:5432/postgres \
    -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  "$bin/gateway" migrate >/dev/null
}

start_gateway() {
  "$bin/gateway" >/dev/null & pids+=($!)
  for _ in $(seq 100); do
    curl -sf http://127.0.0.1:8080/health/ready >/dev/null && return
    sleep 0.1
  done
  echo "the gateway did not become ready" >&2; exit 1
}

payrail_run() {
  fresh
  start_gateway
  "$bin/worker" >/dev/null & pids+=($!)
  "$bin/bench" "$@" --system payrail "${target[@]}" \
    --cpu-of gateway,worker,postgres,beam.smp,redis-server --rss-of gateway,worker
  stop_all
}

svix_dir=${SVIX_DIR:-../svix-peer}
svix_peer=../shared/peers/svix
svix_run() {
  # A fresh database and queue (Redis db 5 is svix's alone, see start.sh) for every run.
  psql -q postgres://postgres@127.0.0.1:5432/postgres -c "DROP DATABASE IF EXISTS svix_bench WITH (FORCE)"
  redis-cli -n 5 flushdb >/dev/null
  "$svix_peer/start.sh" "$svix_dir" >/dev/null
  "$bin/bench" "$@" --system svix --base http://127.0.0.1:8071 \
    --admin-token "$(cat "$svix_dir/svix-token.txt")" \
    --cpu-of svix-server,postgres,redis-server --rss-of svix-server || true
  "$svix_peer/stop.sh" "$svix_dir"
}

if [ "$scenario" = vs-svix ]; then
  [ -x "$svix_dir/target/release/svix-server" ] \
    || { echo "no svix-server in $svix_dir: run $svix_peer/build.sh first (see its README)" >&2; exit 1; }
  trap 'stop_all; drop_scratch; "$svix_peer/stop.sh" "$svix_dir"' EXIT
  out=target/vs-svix-$(date +%Y%m%d-%H%M%S).txt
  # The issue's scenario: 3,000 events after 200 of warm-up at 300/s and at 400/s, then a
  # closed loop over 32 connections; the two systems alternate, and which goes first too.
  for run in $(seq "$runs"); do
    for s in "sustained --rate 300 --events 3000" "sustained --rate 400 --events 3000" \
             "create --deliver --concurrency 32 --seconds 10"; do
      read -ra args <<<"$s"
      echo "== vs-svix run $run: $s"
      if [ $((run % 2)) = 1 ]; then
        payrail_run "${args[@]}"; svix_run "${args[@]}"
      else
        svix_run "${args[@]}"; payrail_run "${args[@]}"
      fi
    done 2>&1 | tee -a "$out"
  done
  "$bin/bench" compare "$out"
  exit 0
fi

if [ "$scenario" = ab ]; then
  old=${AB_OLD:?set AB_OLD to a directory holding another build of gateway, worker and bench}
  ab_run() { # binaries label scenario...
    local bin=$1
    echo "-- $2"
    shift 2
    payrail_run "$@"
  }
  for run in $(seq "$runs"); do
    for s in "create --deliver --concurrency 32 --seconds 10" "sustained --rate 300 --events 3000"; do
      read -ra args <<<"$s"
      echo "== ab run $run: $s"
      if [ $((run % 2)) = 1 ]; then
        ab_run "$old" "other ($old)" "${args[@]}"; ab_run "$bin" "this build" "${args[@]}"
      else
        ab_run "$bin" "this build" "${args[@]}"; ab_run "$old" "other ($old)" "${args[@]}"
      fi
    done
  done
  exit 0
fi

if [ "$scenario" = growth ]; then
  # Creation and delivery on two databases side by side, interleaved: one with FILL_ATTEMPTS
  # (10 million) attempt rows of history in 25 past days' partitions (and 2 million events and
  # deliveries), one with the same partitions empty. Then what removing a day costs each way
  # (its rows deleted in batches, or its partitions dropped).
  url() { echo "postgres://postgres@127.0.0.1:5432/$1?sslmode=disable"; }
  for name in payrail_bench_empty payrail_bench_history; do
    psql -q postgres://postgres@127.0.0.1:5432/postgres \
      -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name"
    DATABASE_URL=$(url $name) "$bin/gateway" migrate >/dev/null
  done
  "$bin/bench" fill --database-url "$(url payrail_bench_empty)" --attempts 0
  "$bin/bench" fill --database-url "$(url payrail_bench_history)" --attempts "${FILL_ATTEMPTS:-10000000}"
  measure() { # database
    echo "-- growth: $1"
    export DATABASE_URL; DATABASE_URL=$(url "$1")
    start_gateway
    "$bin/worker" >/dev/null & local worker=$!
    "$bin/bench" sustained "${target[@]}" --rate "${RATE:-300}" --seconds "${SECONDS_:-20}" \
      --name "sustained ${RATE:-300}/s, $1" --cpu-of gateway,worker,postgres
    kill "$worker"; wait "$worker" 2>/dev/null || true
    "$bin/bench" drain "${target[@]}" --count "${COUNT:-20000}" --workers 1 \
      --worker-bin "$bin/worker" | sed "s/drain $((${COUNT:-20000})), 1 worker(s)/drain, $1/"
    stop_all
  }
  for run in $(seq "$runs"); do
    echo "== growth run $run"
    if [ $((run % 2)) = 1 ]; then
      measure payrail_bench_empty; measure payrail_bench_history
    else
      measure payrail_bench_history; measure payrail_bench_empty
    fi
  done
  "$bin/bench" retention-cost --database-url "$(url payrail_bench_history)"
  exit 0
fi

for run in $(seq "$runs"); do
  echo "== $scenario run $run"
  fresh
  start_gateway
  case $scenario in
    create)
      "$bin/worker" >/dev/null & pids+=($!)
      "$bin/bench" create "${target[@]}" --concurrency 32 --seconds 10 ;;
    sustained)
      "$bin/worker" >/dev/null & pids+=($!)
      "$bin/bench" sustained "${target[@]}" --rate "${RATE:-400}" --seconds "${SECONDS_:-60}" ;;
    capacity)
      # What one event costs each part: CPU per process (the bench's figures), and from the
      # database's own counters, WAL bytes, commits and rows written per event, and from the
      # broker, messages published and delivered (warm-up included: RATE × SECONDS_ + 200).
      "$bin/worker" >/dev/null & pids+=($!)
      sql="select pg_current_wal_lsn(), xact_commit, tup_inserted, tup_updated, tup_deleted
           from pg_stat_database where datname = '$db'"
      before=$(psql -tAF' ' postgres://postgres@127.0.0.1:5432/$db -c "$sql")
      rate=${RATE:-300} secs=${SECONDS_:-20}
      "$bin/bench" sustained "${target[@]}" --rate "$rate" --seconds "$secs" \
        --cpu-of gateway,worker,postgres,beam.smp,redis-server --rss-of gateway,worker
      sleep 1   # pg_stat counters are flushed by the backends every second at most
      after=$(psql -tAF' ' postgres://postgres@127.0.0.1:5432/$db -c "$sql")
      events=$((rate * secs + 200))
      psql -tA postgres://postgres@127.0.0.1:5432/$db -c "select
        'per event: WAL ' || round(pg_wal_lsn_diff('${after%% *}', '${before%% *}') / $events) || ' bytes'" 
      read -r _ c1 i1 u1 d1 <<<"$before"; read -r _ c2 i2 u2 d2 <<<"$after"
      awk -v n=$events -v c=$((c2 - c1)) -v i=$((i2 - i1)) -v u=$((u2 - u1)) -v d=$((d2 - d1)) \
        'BEGIN { printf "per event: %.2f commits, %.2f rows inserted, %.2f updated, %.2f deleted\n", c/n, i/n, u/n, d/n }'
      rabbitmqctl -q list_queues name messages_ready 2>/dev/null | grep payrail_bench || true ;;
    drain1|drain2)
      "$bin/bench" drain "${target[@]}" --count "${COUNT:-50000}" --workers "${scenario#drain}" \
        --worker-bin "$bin/worker" ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
  esac
  stop_all
done
