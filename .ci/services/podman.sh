#!/usr/bin/env bash
# Rootful podman + its Docker-compatible API on a unix socket, for the Docker backend's tests.
#
# No Docker engine runs on this machine kind; podman's `system service` speaks the Docker
# Engine API that the `docker` Python SDK uses. No registry is reachable, so the base image
# (localhost/busybox:ci) is imported from the static busybox of the Debian package.
#
# Idempotent (a running, answering service is reused) and loud (any failure exits non-zero).
# Everything lives in $NEMORUN_CI_DIR/podman (default /tmp/nemorun-ci/podman):
#   podman.sock        the API socket (tests: DOCKER_HOST=unix://<that>)
#   containers.conf    the engine config the service runs with (CONTAINERS_CONF)
#   service.pid, service.log
# Gotchas (verified on this machine kind, see shared/infra): crun refuses the hybrid cgroup
# layout, so runc + cgroupfs; CAP_SYS_RESOURCE is missing, so the default ulimits must stay
# at or below the current hard limits; the Docker API ignores netns="none" from this file,
# so the backend passes network_mode itself.
set -euo pipefail
CI_DIR=${NEMORUN_CI_DIR:-/tmp/nemorun-ci}
D=$CI_DIR/podman
SOCK=$D/podman.sock
IMAGE=localhost/busybox:ci
PY_IMAGE=localhost/python:ci
export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=600)

# catatonit: podman's --init (the backend starts containers with an init, so a cancel's
# SIGTERM reaches the job instead of a PID 1 that ignores it). python3/bash: copied into the
# second image below.
PKGS=(podman runc catatonit busybox-static curl python3 bash)
if ! dpkg -s "${PKGS[@]}" >/dev/null 2>&1; then
    echo "installing ${PKGS[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    apt-get install "${APT_OPTS[@]}" "${PKGS[@]}" >/dev/null
fi

mkdir -p "$D"
chmod 700 "$CI_DIR" "$D"
N=$(ulimit -Hn)
cat > "$D/containers.conf" <<CONF
[containers]
netns = "none"
default_ulimits = ["nofile=$N:$N", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF=$D/containers.conf

if ! podman image exists "$IMAGE"; then
    echo "building $IMAGE from the static busybox"
    R=$D/rootfs
    rm -rf "$R"
    mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/proc" "$R/sys" "$R/dev"
    cp /bin/busybox "$R/bin/busybox"
    for a in $("$R/bin/busybox" --list); do
        [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"
    done
    echo "root:x:0:0:root:/root:/bin/sh" > "$R/etc/passwd"
    echo "root:x:0:" > "$R/etc/group"
    chmod 1777 "$R/tmp"
    tar -C "$R" -cf "$D/busybox.tar" .
    podman import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' \
        "$D/busybox.tar" "$IMAGE" >/dev/null
    rm -rf "$R" "$D/busybox.tar"
fi

# localhost/python:ci = the busybox rootfs + bash + Debian's CPython (binary, standard library,
# and every shared library ldd names for them), for jobs that need bash or Python (the
# protocol contract suite runs `bash -c` and `python3 -c`).
if ! podman image exists "$PY_IMAGE"; then
    echo "building $PY_IMAGE (busybox + bash + $(readlink -f /usr/bin/python3))"
    R=$D/pyroot
    rm -rf "$R"
    mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/proc" "$R/sys" "$R/dev" "$R/usr/bin" "$R/usr/lib"
    cp /bin/busybox "$R/bin/busybox"
    for a in $("$R/bin/busybox" --list); do
        [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"
    done
    echo "root:x:0:0:root:/root:/bin/sh" > "$R/etc/passwd"
    echo "root:x:0:" > "$R/etc/group"
    chmod 1777 "$R/tmp"
    PY=$(readlink -f /usr/bin/python3)
    PYLIB=/usr/lib/$(basename "$PY")
    cp "$PY" "$R/usr/bin/"
    ln -sf "$(basename "$PY")" "$R/usr/bin/python3"
    ln -sf "$(basename "$PY")" "$R/usr/bin/python"
    cp /usr/bin/bash "$R/bin/bash"
    tar -C / --exclude='*/test' --exclude='*/tests' --exclude='*/__pycache__' \
        --exclude='*/site-packages' --exclude='*/dist-packages' --exclude='*/idlelib' \
        --exclude='*/tkinter' --exclude='*/ensurepip' -cf - "${PYLIB#/}" | tar -C "$R" -xf -
    # Shared libraries: of the interpreter, bash and every extension module, copied to
    # the same paths (ldd's /lib/... is /usr/lib/... on merged-usr Debian).
    ln -sf usr/lib "$R/lib"
    ln -sf usr/lib64 "$R/lib64"
    mkdir -p "$R/usr/lib64"
    for f in "$PY" /usr/bin/bash "$PYLIB"/lib-dynload/*.so; do
        ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true
    done | sort -u | while read -r lib; do
        real=$(readlink -f "$lib")
        dest=$R/usr${lib#/usr}
        mkdir -p "$(dirname "$dest")"
        cp "$real" "$dest"
    done
    tar -C "$R" -cf "$D/python.tar" .
    podman import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/usr/bin:/bin' \
        "$D/python.tar" "$PY_IMAGE" >/dev/null
    rm -rf "$R" "$D/python.tar"
fi
podman run --rm --network none "$IMAGE" echo "podman runs $IMAGE"
podman run --rm --network none --init "$PY_IMAGE" python3 -c 'import json, hashlib, ssl, sys; print("podman runs", sys.version.split()[0], "in localhost/python:ci")'
podman run --rm --network none "$PY_IMAGE" bash -c 'echo "bash $BASH_VERSION"'

ping() { curl -sf --max-time 5 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }
running() {
    local pid
    pid=$(cat "$D/service.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = podman ] &&
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}
if running && ping; then
    echo "podman API already up on unix://$SOCK (pid $(cat "$D/service.pid"))"
    exit 0
fi
if running; then
    kill "$(cat "$D/service.pid")" || true
    sleep 0.5
fi
rm -f "$SOCK" "$D/service.pid"
# setsid + nohup: the service outlives this script (CI runs the tests after it returns).
# Started from its own folder: every container's conmon inherits the service's working
# directory, and one that disappears (a removed checkout) makes every later start fail.
cd "$D"
setsid nohup podman system service --time=0 "unix://$SOCK" >"$D/service.log" 2>&1 < /dev/null &
echo $! > "$D/service.pid"
for _ in $(seq 1 80); do
    ping && break
    sleep 0.25
done
ping || { echo "podman API did not come up on $SOCK" >&2; tail -20 "$D/service.log" >&2; exit 1; }
echo "podman API ready: DOCKER_HOST=unix://$SOCK (pid $(cat "$D/service.pid")); files in $D"
