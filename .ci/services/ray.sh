#!/usr/bin/env bash
# A real Ray head for the Ray backend tests: Jobs API (dashboard) on http://127.0.0.1:8265.
#
# Ray (~240 MB) goes into its OWN venv, never the project's .venv: the project talks to the
# Jobs REST API and must not depend on the ray package. Loopback only
# (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes every Ray process use 127.0.0.1), object store
# capped at 300 MB, 2 CPUs (the machine's), temp dir under $D. Idempotent: a head that already
# answers /api/version is left alone. Loud: a head that does not come up exits non-zero.
# Tests find it through these files in $NEMORUN_CI_DIR/ray (default /tmp/nemorun-ci/ray):
#   address  the dashboard URL (http://127.0.0.1:8265)
#   python   the Ray venv's interpreter (Ray on Slurm starts `ray start` with it)
#   start.log, tmp/  the head's output and Ray's session/log dirs
# Stop it with: $D/venv/bin/ray stop --force   (gcs_server and raylet ignore SIGTERM)
set -euo pipefail
CI_DIR=${NEMORUN_CI_DIR:-/tmp/nemorun-ci}
D=$CI_DIR/ray
VENV=$D/venv
PORT=${NEMORUN_CI_RAY_DASHBOARD_PORT:-8265}
GCS_PORT=${NEMORUN_CI_RAY_GCS_PORT:-6379}
RAY_SPEC=${NEMORUN_CI_RAY_SPEC:-ray[default]==2.58.0}
URL=http://127.0.0.1:$PORT
mkdir -p "$D"

up() { curl -sf --max-time 3 "$URL/api/version" >/dev/null 2>&1; }

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! "$VENV/bin/python" -c 'import ray.dashboard, ray.scripts.scripts' >/dev/null 2>&1; then
    echo "installing $RAY_SPEC into $VENV"
    "$VENV/bin/python" -m pip install -q "$RAY_SPEC"
fi
command -v curl >/dev/null || {
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 curl >/dev/null
}
echo "$URL" > "$D/address"
echo "$VENV/bin/python" > "$D/python"

if up; then
    echo "ray head already up at $URL"
    exit 0
fi

export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0
# Job entrypoints inherit the PATH of `ray start`: the venv first, so `python` has ray.
export PATH=$VENV/bin:$PATH
# A job without a working_dir runs in the cwd of `ray start`: not the clone CI runs from.
cd "$D"
"$VENV/bin/ray" start --head --node-ip-address=127.0.0.1 --port="$GCS_PORT" \
    --num-cpus=2 --object-store-memory=300000000 \
    --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$PORT" \
    --temp-dir="$D/tmp" --disable-usage-stats >"$D/start.log" 2>&1 \
    || { echo "ray start failed:" >&2; tail -30 "$D/start.log" >&2; exit 1; }
for _ in $(seq 1 240); do up && break; sleep 0.5; done
up || { echo "ray head did not answer on $URL" >&2; tail -30 "$D/start.log" >&2; exit 1; }
echo "ray head ready at $URL (venv $VENV)"
