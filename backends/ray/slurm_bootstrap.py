"""Run inside a Slurm allocation: bring up a Ray cluster, run one Ray job on it, tear it down.

The sbatch script of a ``slurm_ray`` job runs ``<ray_python> slurm_bootstrap.py <config>``
(stdlib only; the cluster's Ray venv provides ``ray``). Steps, each visible in the Slurm log:

1. nodes from ``scontrol show hostnames``: the head on the first (this batch host), one worker
   per other node (``srun``); a single node stays on 127.0.0.1. Ports are picked free, the
   temp dir is per Slurm job, so two clusters (or a user's own head) share a node safely;
2. wait until the dashboard answers and every node is ALIVE (``head_start_timeout``);
3. submit the entrypoint to that head's Jobs API, the body prepared by the client (secrets
   are added here from this process's environment, so they were never on disk);
4. mirror the Ray job's status into ``ray-status.json`` (the client's poll reads that file:
   no network path from the login node to the compute node is needed), until it ends;
5. tear down: stop the job if still live, kill every process of this cluster (``ray stop``
   would kill *every* Ray on the node), exit with the job's exit code.

SIGTERM (``scancel``) jumps to 5 at once: Slurm's KillWait may be 2 seconds.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
KEPT = ("status", "message", "driver_exit_code", "start_time", "end_time", "submission_id")


class Cancelled(Exception):
    """The Slurm job is being cancelled."""


def log(message: str) -> None:
    print(f"[nemorun slurm-ray {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (a session change does not change the parent)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            out.append(child)
            todo.append(child)
    return out


def kill_tree(roots: list[int]) -> None:
    """SIGKILL the roots and all below them, until nothing is left (gcs ignores SIGTERM)."""
    for _ in range(20):
        pids = [p for r in roots for p in descendants(r)] + roots
        alive = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                alive.append(pid)
            except ProcessLookupError:
                pass
        roots = [r for r in roots if r in alive]
        if not alive:
            return
        time.sleep(0.1)


def main() -> int:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    job_dir = config["job_dir"]
    status_path = os.path.join(job_dir, "ray-status.json")
    ray = os.path.join(os.path.dirname(config["ray_python"]), "ray")
    slurm_id = os.environ.get("SLURM_JOB_ID", "0")

    def on_term(signum: int, _frame: object) -> None:
        raise Cancelled(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    nodelist = os.environ.get("SLURM_JOB_NODELIST", "")
    nodes = [socket.gethostname()]
    if nodelist:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True
        )
        nodes = out.stdout.split() or nodes
    single = len(nodes) == 1
    ip = "127.0.0.1" if single else socket.gethostbyname(nodes[0])
    gcs, dash, client, agent_http, agent_grpc, metrics, env_agent, nm, om = free_ports(9)
    temp_dir = config.get("temp_dir") or f"/tmp/nemorun-ray-{slurm_id}"
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(config["ray_python"]) + os.pathsep + env.get("PATH", "")
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["NEMORUN_RAY_CLUSTER"] = slurm_id  # every process of this cluster carries it
    if single:
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keeps every Ray process on loopback
    common = ["--block", "--disable-usage-stats", *config.get("ray_start_args", [])]
    if config.get("object_store_memory"):
        common.append(f"--object-store-memory={int(config['object_store_memory'])}")
    if config.get("num_cpus") is not None:
        common.append(f"--num-cpus={int(config['num_cpus'])}")
    head_cmd = [
        ray, "start", "--head", f"--node-ip-address={ip}", f"--port={gcs}",
        "--include-dashboard=true", f"--dashboard-host={ip}", f"--dashboard-port={dash}",
        f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={env_agent}", f"--node-manager-port={nm}",
        f"--object-manager-port={om}", f"--temp-dir={temp_dir}", *common,
    ]  # fmt: skip
    address = f"http://{ip}:{dash}"
    cluster_log = open(os.path.join(job_dir, "ray-cluster.log"), "ab")  # noqa: SIM115 - for children
    procs: list[subprocess.Popen[bytes]] = []
    sid = config["body"]["submission_id"]
    final: dict[str, Any] = {}
    try:
        log(f"starting Ray head on {nodes[0]} ({ip}), dashboard {address}, temp dir {temp_dir}")
        procs.append(
            subprocess.Popen(head_cmd, env=env, stdout=cluster_log, stderr=cluster_log, cwd=job_dir)
        )
        if not single:
            worker_cmd = [
                "srun", "--overlap", f"--nodes={len(nodes) - 1}", "--ntasks-per-node=1",
                f"--exclude={nodes[0]}", ray, "start", f"--address={ip}:{gcs}",
                f"--temp-dir={temp_dir}", *common,
            ]  # fmt: skip
            log(f"starting {len(nodes) - 1} Ray worker(s) on {','.join(nodes[1:])}")
            procs.append(
                subprocess.Popen(worker_cmd, env=env, stdout=cluster_log, stderr=cluster_log)
            )
        deadline = time.monotonic() + float(config.get("head_start_timeout", 120))
        alive = 0
        while True:
            if procs[0].poll() is not None:
                raise RuntimeError(f"ray start exited {procs[0].returncode} (see ray-cluster.log)")
            try:
                data = http("GET", f"{address}/api/v0/nodes", timeout=5)
                rows = data["data"]["result"]["result"]
                alive = sum(1 for r in rows if r.get("state") == "ALIVE")
                if alive >= len(nodes):
                    break
            except (OSError, ValueError, KeyError, TypeError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray cluster not healthy in time ({alive}/{len(nodes)} nodes)")
            time.sleep(0.5)
        log(f"Ray cluster healthy: {alive} node(s)")
        write_json(
            os.path.join(job_dir, "ray-cluster.json"),
            {"address": address, "nodes": nodes, "slurm_job_id": slurm_id, "temp_dir": temp_dir},
        )
        body = config["body"]
        secrets = {n: os.environ[n] for n in config.get("secret_names", []) if n in os.environ}
        if secrets:
            blob = base64.b64encode(json.dumps(secrets).encode()).decode()
            body.setdefault("runtime_env", {}).setdefault("env_vars", {})[
                config["secret_env_var"]
            ] = blob
        http("POST", f"{address}/api/jobs/", body, timeout=30)
        log(f"submitted Ray job {sid}")
        last = None
        while True:
            try:
                info = http("GET", f"{address}/api/jobs/{sid}", timeout=10)
            except (OSError, ValueError) as exc:
                log(f"cannot ask the head ({exc}); retrying")
                time.sleep(1.0)
                continue
            keep = {k: info.get(k) for k in KEPT}
            keep["address"] = address
            if keep != last:
                write_json(status_path, keep)
                last = keep
            if info.get("status") in TERMINAL:
                final = keep
                break
            time.sleep(1.0)
        log(f"Ray job {sid} ended {final.get('status')}")
    except Cancelled as why:
        log(f"cancelled ({why}): stopping Ray job {sid} and the cluster")
        with contextlib.suppress(Exception):
            http("POST", f"{address}/api/jobs/{sid}/stop", {}, timeout=1)
        final = {
            "status": "STOPPED",
            "message": f"stopped by Slurm ({why}: scancel, preemption or time limit)",
            "submission_id": sid,
        }
        write_json(status_path, {**final, "address": address})
    except Exception as exc:
        log(f"failed: {exc}")
        final = {"status": "FAILED", "message": f"Ray on Slurm: {exc}", "submission_id": sid}
        write_json(status_path, {**final, "address": address})
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        kill_tree([p.pid for p in procs])
        log("Ray cluster torn down")
    if final.get("status") == "SUCCEEDED":
        return 0
    code = final.get("driver_exit_code")
    if final.get("status") == "STOPPED":
        return 143
    return code if isinstance(code, int) and code > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
