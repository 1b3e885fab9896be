#!/usr/bin/env bash
# Writes bench/hot-symbols.txt: every function the release gateway and worker execute while
# they start and serve the benchmark's load, hottest first. The release link lays these out
# together at the start of .text (gateway/build.rs, worker/build.rs), so a process's executed
# code shares pages instead of pulling in a 64 KiB fault-around window wherever one function
# sits among cold ones (docs/benchmarks.md, "Hot code together").
#
# It runs both binaries under valgrind's callgrind (apt install valgrind), which sees every
# function executed, not a sample. Regenerate after a new Rust release (every symbol name
# changes with it), new dependencies or a large change of the code; a stale list is only less
# effective (names it no longer finds are skipped).
#   bench/hot-code.sh          # needs PostgreSQL, RabbitMQ and Redis, and port 8080 free
#   bench/hot-code.sh --check  # how much of the list the release binaries lay out together
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --check ]; then
  for b in gateway worker; do
    nm -n --defined-only "target/release/$b" | awk -v list=bench/hot-symbols.txt '
      BEGIN { while ((getline name < list) > 0) hot[name] = 1 }
      $2 ~ /^[tT]$/ { if (!first) first = strtonum("0x" $1); n++
                      if ($3 in hot) { found++; end = strtonum("0x" $1) - first } }
      END { printf "hot code: %s lays out %d listed functions in the first %.1f MiB of %d functions\n",
            "'"$b"'", found, end / 1048576, n }'
  done
  exit 0
fi
command -v valgrind >/dev/null || { echo "valgrind is needed (apt install valgrind)" >&2; exit 1; }
# The layout changes no name and no function run: any release build serves.
cargo build -q --release -p gateway -p worker -p bench
bin=target/release
out=$(mktemp -d)
db=payrail_hotcode
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable"
export AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f REDIS_URL=redis://127.0.0.1:6379
export PAYRAIL_AMQP_PREFIX=$db PAYRAIL_REDIS_PREFIX=$db
export PAYRAIL_ADMIN_TOKEN=hotcode-admin-token-5d0c7f21a9e4 PAYRAIL_WEBHOOK_TARGETS=loopback
export PAYRAIL_DASHBOARD_SECRET=hotcode-dashboard-secret-of-some-length RUST_LOG=warn
psql -q postgres://postgres@127.0.0.1:5432/postgres \
  -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
"$bin/gateway" migrate >/dev/null
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  psql -q postgres://postgres@127.0.0.1:5432/postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
  for q in webhook-fanout webhook-fanout.dead; do rabbitmqctl -q delete_queue "$db.$q" >/dev/null 2>&1 || true; done
  for x in events dead-letter live; do
    rabbitmqctl -q eval "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"$db.$x\">>), false, <<\"cli\">>)." >/dev/null 2>&1 || true
  done
  redis-cli --scan --pattern "$db:*" | xargs -r redis-cli del >/dev/null
  rm -rf "$out"
}
trap cleanup EXIT
grind() { # name
  valgrind --tool=callgrind --demangle=no --dump-instr=no --compress-strings=no \
    --compress-pos=no --callgrind-out-file="$out/$1.out" "$bin/$1" >/dev/null 2>"$out/$1.log" &
  pids+=($!)
}
grind gateway
for _ in $(seq 600); do
  curl -sf http://127.0.0.1:8080/health/ready >/dev/null && break
  sleep 0.5
done
grind worker
sleep 5
# The benchmark's two shapes, small: a closed loop, then a fixed rate.
"$bin/bench" create --deliver --concurrency 4 --seconds 20 --base http://127.0.0.1:8080 \
  --admin-token "$PAYRAIL_ADMIN_TOKEN" >/dev/null
"$bin/bench" sustained --rate 20 --events 200 --base http://127.0.0.1:8080 \
  --admin-token "$PAYRAIL_ADMIN_TOKEN" >/dev/null
# SIGTERM: both stop as in production, and callgrind writes its profile when they exit.
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || true; done
pids=()
# Each function's own instruction count (the cost lines under its `fn=`, less those of its
# calls), summed over both binaries, hottest first. Written aside and moved, so a failed run
# leaves the last list in place rather than an empty one.
python3 - "$out/gateway.out" "$out/worker.out" >"$out/hot-symbols.txt" <<'EOF'
import sys, collections
cost = collections.Counter()
for path in sys.argv[1:]:
    fn, after_call = None, False
    for line in open(path, errors="replace"):
        if line.startswith("fn="):
            fn = line[3:].strip()
            cost[fn] += 0  # listed even when all its cost is in its calls
        elif line.startswith("calls="):
            after_call = True  # the next cost line is the callee's, not this function's own
        elif fn and line[:1].isdigit():
            if not after_call:
                parts = line.split()
                cost[fn] += int(parts[1]) if len(parts) > 1 else 0
            after_call = False
for name, _ in cost.most_common():
    if not name.startswith("0x"):
        print(name)
EOF
mv "$out/hot-symbols.txt" bench/hot-symbols.txt
echo "bench/hot-symbols.txt: $(wc -l <bench/hot-symbols.txt) functions"
