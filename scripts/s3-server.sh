#!/usr/bin/env bash
# A local S3 server for tests: SeaweedFS `weed mini`, bound to 127.0.0.1, telemetry off.
#   scripts/s3-server.sh start   # starts it (if not running), creates the test bucket,
#                                # prints the environment to `eval`
#   scripts/s3-server.sh stop    # stops it and removes its data
#   scripts/s3-server.sh kill    # kills it (SIGKILL, like a crash) and keeps its data:
#                                # `start` again restarts it on the same data
# A second server beside the shared one (tests/it/s3_restart.rs) sets ADPS_S3_DIR and
# every port: ADPS_S3_PORT (S3), ADPS_S3_MASTER_PORT, ADPS_S3_VOLUME_PORT,
# ADPS_S3_FILER_PORT, ADPS_S3_ADMIN_PORT (each also takes the port + 10000 for gRPC);
# unset ones keep weed's defaults. WebDAV, Iceberg and Lance are off.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${ADPS_S3_DIR:-$PWD/target/s3-server}
port=${ADPS_S3_PORT:-8333}
ports=()
for p in master:${ADPS_S3_MASTER_PORT:-} volume:${ADPS_S3_VOLUME_PORT:-} \
         filer:${ADPS_S3_FILER_PORT:-} admin:${ADPS_S3_ADMIN_PORT:-}; do
  if [ -n "${p#*:}" ]; then ports+=("-${p%%:*}.port=${p#*:}"); fi
done
bucket=${ADPS_S3_BUCKET:-adps-test}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-adps-test}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-adps-test-secret}
case "${1:-}" in
  start)
    venv=$(scripts/tools.sh)
    mkdir -p "$dir"
    if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
      nohup "$venv/bin/weed" mini -dir="$dir" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.telemetry=false -admin.ui=false -webdav=false -s3.port.iceberg=0 \
        -s3.port.lance=0 -s3.port="$port" ${ports[@]+"${ports[@]}"} -bucket="$bucket" \
        >> "$dir/weed.log" 2>&1 &
      echo $! > "$dir/weed.pid"
      for _ in $(seq 1 120); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.5
      done
      (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null || { echo "S3 server did not start; log:" >&2; tail -20 "$dir/weed.log" >&2; exit 1; }
    fi
    # The bucket is created asynchronously after the port opens: wait until it answers.
    for _ in $(seq 1 60); do
      code=$(python3 - "$port" "$bucket" <<'PY' 2>/dev/null || true
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/{sys.argv[2]}", timeout=2)
    print(200)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print(0)
PY
)
      # 403 (unsigned request refused) means the bucket exists; 404 means not yet.
      case "$code" in 200|403) break;; esac
      sleep 0.5
    done
    cat <<ENV
export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
export AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export ADPS_TEST_S3_BUCKET=$bucket
ENV
    ;;
  stop)
    if [ -f "$dir/weed.pid" ]; then
      kill "$(cat "$dir/weed.pid")" 2>/dev/null || true
      sleep 1
      kill -9 "$(cat "$dir/weed.pid")" 2>/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  kill)
    if [ -f "$dir/weed.pid" ]; then
      pid=$(cat "$dir/weed.pid")
      kill -9 "$pid" 2>/dev/null || true
      # Gone once its S3 port no longer answers.
      for _ in $(seq 1 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null || break
        sleep 0.1
      done
      rm -f "$dir/weed.pid"
    fi
    ;;
  *) echo "usage: $0 start|stop|kill" >&2; exit 2;;
esac
