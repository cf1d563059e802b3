#!/bin/bash
# Run the aiohttp service under the monitor (started by TASKLEAK_MONITOR, no
# code change), drive it with jittery load, and keep its samples and alerts.
#   LEAK=1 ./run.sh 8080 150    # with the slow leak: alerts name server.py:25
#   LEAK=0 ./run.sh 8080 150    # same load, no leak: no alert expected
# Needs aiohttp and an installed taskleak in the Python on PATH (or $PYTHON).
set -eu
PY=${PYTHON:-python}
PORT=${1:-8080}
SECONDS_=${2:-150}
LEAK=${LEAK:-1}
OUT=${OUT:-$(mktemp -d)}
cd "$(dirname "$0")"
LEAK=$LEAK TASKLEAK_MONITOR=0.25 TASKLEAK_MONITOR_ALLOW='heartbeat=1' \
TASKLEAK_MONITOR_JSONL="$OUT/samples.jsonl" "$PY" server.py "$PORT" 2> "$OUT/alerts.txt" &
SRV=$!
sleep 3
"$PY" load.py "$PORT" "$SECONDS_"
kill -INT $SRV
wait $SRV || true
echo "alerts (samples and alerts as JSON lines in $OUT/samples.jsonl):"
cat "$OUT/alerts.txt"
