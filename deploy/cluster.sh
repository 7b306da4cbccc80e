#!/usr/bin/env bash
# A real multi-process Spark cluster on this machine, from pyspark's own jars:
# a standalone master, N workers (separate JVMs, their executors running this project's
# venv Python for mapInPandas), and a Spark Connect server submitted to the master.
# Everything binds to 127.0.0.1; `down` stops exactly the processes `up` started (by pid).
#
#   deploy/cluster.sh up      # prints the sc:// URL to use
#   deploy/cluster.sh status
#   deploy/cluster.sh down
#
#   GEOSID_ENGINE=remote GEOSID_SPARK_REMOTE=sc://127.0.0.1:15003 GEOSID_LAKE_COMMITTER=delta-rs \
#     .venv/bin/geosid ingest --source tsmc2014
#
# Settings (environment): GEOSID_CLUSTER_DIR (pids, logs, work dirs; default .cluster),
# GEOSID_CLUSTER_WORKERS (2), GEOSID_CLUSTER_WORKER_CORES (1), GEOSID_CLUSTER_WORKER_MEMORY
# (2g), GEOSID_CLUSTER_MASTER_PORT (7078), GEOSID_CLUSTER_CONNECT_PORT (15003), GEOSID_VENV.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${GEOSID_VENV:-$ROOT/.venv}
PY=$VENV/bin/python
STATE=${GEOSID_CLUSTER_DIR:-$ROOT/.cluster}
WORKERS=${GEOSID_CLUSTER_WORKERS:-2}
CORES=${GEOSID_CLUSTER_WORKER_CORES:-1}
MEMORY=${GEOSID_CLUSTER_WORKER_MEMORY:-2g}
MASTER_PORT=${GEOSID_CLUSTER_MASTER_PORT:-7078}
CONNECT_PORT=${GEOSID_CLUSTER_CONNECT_PORT:-15003}

export SPARK_HOME
SPARK_HOME=$("$PY" -c "import os, pyspark; print(os.path.dirname(pyspark.__file__))")
export SPARK_LOCAL_IP=127.0.0.1 SPARK_MASTER_HOST=127.0.0.1
export PYSPARK_PYTHON=$PY PYSPARK_DRIVER_PYTHON=$PY
export SPARK_LOG_DIR=$STATE/logs SPARK_PID_DIR=$STATE
MASTER_URL=spark://127.0.0.1:$MASTER_PORT

wait_port() {  # wait_port PORT SECONDS NAME
  "$PY" - "$1" "$2" "$3" "$STATE/logs" <<'EOF'
import socket, sys, time
port, limit, name = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit(f"cluster: {name} did not open 127.0.0.1:{port} within {limit:.0f}s (logs: {sys.argv[4]})")
EOF
}

start() {  # start NAME COMMAND...
  local name=$1; shift
  nohup "$@" >"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$STATE/$name.pid"
}

running() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

up() {
  if running connect; then
    echo "cluster: already up (sc://127.0.0.1:$CONNECT_PORT)"; return 0
  fi
  mkdir -p "$STATE/logs"
  start master "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port "$MASTER_PORT" --webui-port 0
  wait_port "$MASTER_PORT" 60 master
  for i in $(seq 1 "$WORKERS"); do
    mkdir -p "$STATE/work-$i"
    start "worker-$i" "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker "$MASTER_URL" \
      --host 127.0.0.1 --cores "$CORES" --memory "$MEMORY" --webui-port 0 --work-dir "$STATE/work-$i"
  done
  # Executors get ~all of a worker's memory; the driver (the Connect server) stays small.
  start connect "$SPARK_HOME/bin/spark-submit" --class org.apache.spark.sql.connect.service.SparkConnectServer \
    --master "$MASTER_URL" --name geosid-connect \
    --driver-memory 1g --executor-memory "$(echo "$MEMORY" | sed 's/g$//')g" --executor-cores "$CORES" \
    --conf spark.driver.host=127.0.0.1 --conf spark.driver.bindAddress=127.0.0.1 \
    --conf spark.connect.grpc.binding.address=127.0.0.1 --conf spark.connect.grpc.binding.port="$CONNECT_PORT" \
    --conf spark.ui.enabled=false --conf spark.sql.session.timeZone=UTC \
    --conf spark.pyspark.python="$PY" --conf spark.executorEnv.PYSPARK_PYTHON="$PY" \
    spark-internal
  wait_port "$CONNECT_PORT" 180 connect
  echo "cluster: up: master $MASTER_URL, $WORKERS worker(s) x $CORES core(s) x $MEMORY, Spark Connect sc://127.0.0.1:$CONNECT_PORT"
}

down() {
  local name pid
  for name in connect $(cd "$STATE" 2>/dev/null && ls worker-*.pid 2>/dev/null | sed 's/\.pid$//') master; do
    if [ -f "$STATE/$name.pid" ]; then
      pid=$(cat "$STATE/$name.pid")
      if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
      fi
      rm -f "$STATE/$name.pid"
    fi
  done
  echo "cluster: down"
}

status() {
  local name
  for name in master $(cd "$STATE" 2>/dev/null && ls worker-*.pid 2>/dev/null | sed 's/\.pid$//') connect; do
    if running "$name"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
