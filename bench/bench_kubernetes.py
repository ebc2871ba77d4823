"""Kubernetes figures against the EMULATED API server (kmock + tests/kube_controller.py).

No real API server installs on this machine kind, so these are the backend's own costs: how
many API requests one refresh of N tracked jobs sends (with the namespace watch it must stay
constant: 0), how long one refresh takes, what a per-job GET poller would send instead
(measured, same server), and how soon a change on the server shows in a refresh.

Run: ``python bench/bench_kubernetes.py`` (or ``make bench``).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from backends.kubernetes import KubernetesBackend  # noqa: E402
from core.engine.executors_kubernetes import KubernetesExecutor  # noqa: E402
from core.engine.protocol import Handle, JobSpec  # noqa: E402
from core.engine.states import JobState  # noqa: E402

SIZES = (1, 10, 100)
REFRESHES = 20


def line(name: str, value: object, note: str = "") -> None:
    print(f"{name:<62} {value!s:>12}  {note}", flush=True)


def spec(ex: KubernetesExecutor, n: int, size: int) -> JobSpec:
    job = JobSpec(
        experiment_id=f"bench-{size}",
        job_name=f"job{n}",
        run_tag=f"bench-{size}-{n}-{time.time_ns()}",
        argv=["sleep", "600"],
        executor=ex,
        job_dir="/unused",
        workdir="/unused",
    )
    job.held = True  # tracked but not started: no 100 processes on a 2-core machine
    return job


async def measure(cluster: Any, size: int) -> None:
    ex = KubernetesExecutor(
        image="ci/local:latest",
        kubeconfig=str(cluster.kubeconfig),
        context=cluster.context,
        namespace=f"bench-{size}",
        qps=1000.0,
        burst=1000,
    )
    backend = KubernetesBackend(ex)
    try:
        handles: list[Handle] = []
        for n in range(size):
            handles.append(await backend.submit(spec(ex, n, size)))
        await backend.poll(handles)  # the first refresh lists and opens the watch
        while backend.cache.stats()["watches"] < 2:  # both watches open before counting
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)

        server_before = sum(cluster.counts().values())
        client_before = sum(backend.api.requests.values())
        times = []
        for _ in range(REFRESHES):
            started = time.perf_counter()
            reports = await backend.poll(handles)
            times.append(time.perf_counter() - started)
        server = (sum(cluster.counts().values()) - server_before) / REFRESHES
        client = (sum(backend.api.requests.values()) - client_before) / REFRESHES
        assert all(r.state is JobState.PENDING for r in reports.values())
        line(f"API requests per refresh, {size} tracked jobs (server count)", f"{server:g}")
        line(f"API requests per refresh, {size} tracked jobs (client count)", f"{client:g}")
        line(
            f"seconds per refresh, {size} jobs (median of {REFRESHES})",
            f"{statistics.median(times):.6f}",
        )

        # What a poller without a watch sends: one GET per job (measured on the same server;
        # the emulator scans all its objects per GET, so these seconds are kmock's, not a
        # real API server's).
        started = time.perf_counter()
        before = cluster.counts()["FETCH jobs"]
        for h in handles:
            await asyncio.to_thread(
                backend.api.json, "get", "batch", "read_namespaced_job", h.job_id, ex.namespace
            )
        naive = cluster.counts()["FETCH jobs"] - before
        line(
            f"  for comparison, one GET per job: requests / seconds ({size})",
            f"{naive} / {time.perf_counter() - started:.3f}",
        )

        # How soon a change on the server shows: release one held job, refresh until RUNNING.
        started = time.perf_counter()
        await backend.release(handles[0])
        while (await backend.poll([handles[0]]))[handles[0]].state is not JobState.RUNNING:
            await asyncio.sleep(0.005)
        line(
            f"seconds from release to RUNNING in a refresh ({size} jobs)",
            f"{time.perf_counter() - started:.3f}",
            "(emulated kubelet start ≈ 0.05 s)",
        )
        stats = backend.cache.stats()
        line(f"lists / watches opened for {size} jobs", f"{stats['lists']} / {stats['watches']}")
        await backend.cancel_experiment(f"bench-{size}")
    finally:
        await backend.close()


def main() -> int:
    import importlib.util

    missing = [m for m in ("kubernetes", "kmock") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"skipped: not installed: {', '.join(missing)} (pip install -e '.[test]')")
        return 0
    print("Kubernetes backend against the emulated API server (kmock), not a real cluster")
    from kube_controller import EmulatedCluster

    with (
        tempfile.TemporaryDirectory(prefix="bench-kube-") as tmp,
        EmulatedCluster(Path(tmp), use_kubectl=False) as cluster,
    ):
        for size in SIZES:
            asyncio.run(measure(cluster, size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
