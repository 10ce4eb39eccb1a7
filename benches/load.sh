#!/usr/bin/env bash
# Load benchmark of the example service with wrk (Debian's `wrk`): requests per second with and
# without PerfmonLayer, alternated over several rounds (medians reported, as this machine is
# shared and noisy), and the metrics endpoint's latency while the service is under load.
#
#   bash benches/load.sh            # 3 rounds of 10 s per variant
#   ROUNDS=5 SECONDS_PER_RUN=15 bash benches/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
DUR="${SECONDS_PER_RUN:-10}"
CONNS="${CONNECTIONS:-32}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release -q -p perfmon-examples --example clinic
BIN=target/release/examples/clinic
PORT="${PORT:-3917}"
ADDR="127.0.0.1:$PORT"

start() { # $@: extra flags
  PERFMON_EXAMPLE_SECONDS=0 PERFMON_EXAMPLE_ADDR="$ADDR" "$BIN" --serve "$@" >/dev/null 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    curl -sf "http://$ADDR/api/monitoring/live" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the example did not start" >&2; exit 1
}
stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
trap stop EXIT

rps() { # $1: path
  wrk -t2 -c"$CONNS" -d"${DUR}s" "http://$ADDR$1" | awk '/Requests\/sec/ {print $2}'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

declare -a with without
for r in $(seq 1 "$ROUNDS"); do
  start --no-layer; without+=("$(rps /api/ping)"); stop
  start; with+=("$(rps /api/ping)"); stop
  echo "round $r: without layer ${without[-1]} req/s, with layer ${with[-1]} req/s"
done
m_without=$(printf '%s\n' "${without[@]}" | median)
m_with=$(printf '%s\n' "${with[@]}" | median)
loss=$(awk -v a="$m_without" -v b="$m_with" 'BEGIN {printf "%.2f", (a - b) / a * 100}')
echo
echo "GET /api/ping, wrk -t2 -c$CONNS, ${DUR}s x $ROUNDS rounds (medians):"
echo "  without PerfmonLayer: $m_without req/s"
echo "  with PerfmonLayer:    $m_with req/s"
echo "  throughput lost:      $loss %"

# the metrics endpoint while the service is loaded
start
wrk -t2 -c"$CONNS" -d"$((DUR + 2))s" "http://$ADDR/api/ping" >/dev/null &
LOAD=$!
sleep 1
echo
echo "GET /api/monitoring/metrics while /api/ping is under load (wrk -t1 -c1 -d${DUR}s --latency):"
wrk -t1 -c1 -d"${DUR}s" --latency "http://$ADDR/api/monitoring/metrics" | sed -n '/Latency Distribution/,/Requests\/sec/p'
wait "$LOAD" || true
requests=$(curl -sf "http://$ADDR/api/monitoring/metrics?type=api&path=/api/ping" | sed -n 's/.*"totalRequests":\([0-9]*\).*/\1/p' | head -n1)
echo "requests recorded for /api/ping in the window: $requests"
stop
trap - EXIT
