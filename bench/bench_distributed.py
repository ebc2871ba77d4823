"""Distributed launches (issue 13): seconds from launch until every rank is running.

For torchrun with 2 ranks and, as the in-run reference, 1 rank: on the local executor, on
the real Slurm cluster (one node, LocalTunnel), and on 2 Slurm nodes with one rank each
(the CI cluster's partition ``multi``); plus bare ``torchrun`` without the engine. Each
rank's script prints the wall time as its very first statement (rank started) and again
once ``init_process_group`` returned (rank joined: every rank reached the rendezvous). A
figure is the latest of the ranks minus the moment ``Engine.launch`` was called. Runs are
paired (1 rank, 2 ranks, 1, 2 …) so a drift in the machine's speed moves both sides of a
ratio alike.

Needs torch (the CPU wheel: ``pip install torch==2.13.0``); Slurm figures are skipped, with
why, when the cluster is not running. ``NRT_BENCH_RUNS`` sets the pairs (default 3).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _util import figure

RANK_SCRIPT = """
import time
started = time.time()
import os
rank = os.environ["RANK"]
print(f"started rank={rank} t={started:.6f}", flush=True)
import torch.distributed as dist
dist.init_process_group("gloo")
print(f"joined rank={rank} t={time.time():.6f}", flush=True)
dist.barrier()
dist.destroy_process_group()
"""
_LINE = re.compile(r"\[rank(\d+)\]:(started|joined) rank=\d+ t=([0-9.]+)")


async def one(
    engine: object, executor: object, script: Path, title: str, entrypoint: str = "python"
) -> tuple[float, float]:
    from core.config import Script
    from core.engine import Plan
    from core.engine.states import JobState

    plan = Plan(title=title)
    plan.add(Script(path=str(script), entrypoint=entrypoint), executor, name="ranks")  # type: ignore[arg-type]
    t0 = time.time()
    record = await engine.launch(plan)  # type: ignore[attr-defined]
    done = await asyncio.wait_for(engine.wait(record.id, max_interval=0.2), 300)  # type: ignore[attr-defined]
    if done.jobs[0].state is not JobState.SUCCEEDED:
        raise SystemExit(f"{title}: {done.jobs[0].state.value} {done.jobs[0].reason}")
    text = b"".join([c async for c in engine.logs(record.id)]).decode()  # type: ignore[attr-defined]
    seen: dict[str, list[float]] = {"started": [], "joined": []}
    for _, kind, t in _LINE.findall(text):
        seen[kind].append(float(t))
    return max(seen["started"]) - t0, max(seen["joined"]) - t0


async def series(label: str, make_executor: object, runs: int, entrypoint: str = "python") -> None:
    from core.engine import Engine, registry
    from core.store import Store

    with tempfile.TemporaryDirectory(prefix="nrt-bench-dist-") as tmp:
        script = Path(tmp) / "ranks.py"
        script.write_text(RANK_SCRIPT)
        engine = Engine(Store(Path(tmp) / "home"))
        results: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
        try:
            await one(engine, make_executor(1, tmp), script, "warm-up", entrypoint)  # type: ignore[operator]
            for _ in range(runs):
                for n in (1, 2):
                    executor = make_executor(n, tmp)  # type: ignore[operator]
                    title = f"{label}-{n}"
                    results[n].append(await one(engine, executor, script, title, entrypoint))
        finally:
            await registry.close_all()
    for n in (1, 2):
        figure(f"{label}: launch -> all {n} rank(s) started", [s for s, _ in results[n]])
        figure(f"{label}: launch -> all {n} rank(s) joined", [j for _, j in results[n]])
    ratios = [b[1] / a[1] for a, b in zip(results[1], results[2], strict=True)]
    figure(f"{label}: joined, 2 ranks / 1 rank (paired)", ratios, unit="x")


def bare_torchrun(n: int, runs: int) -> None:
    """The same ranks started by ``python -m torch.distributed.run`` from a shell, no engine:
    what the launcher itself costs on this machine right now (torch's import dominates)."""
    from core.launchers import RANK_PREFIX_ENV, free_port

    with tempfile.TemporaryDirectory(prefix="nrt-bench-bare-") as tmp:
        script = Path(tmp) / "ranks.py"
        script.write_text(RANK_SCRIPT)
        joined = []
        for _ in range(runs):
            argv = [
                sys.executable, "-m", "torch.distributed.run", "--nnodes=1",
                f"--nproc-per-node={n}", "--rdzv-backend=c10d",
                f"--rdzv-endpoint=127.0.0.1:{free_port()}", "--tee=3", str(script),
            ]  # fmt: skip
            t0 = time.time()
            out = subprocess.run(
                argv, capture_output=True, text=True, env={**os.environ, **RANK_PREFIX_ENV}
            ).stdout
            joined.append(max(float(t) for _, k, t in _LINE.findall(out) if k == "joined") - t0)
    figure(f"bare torchrun (no engine): start -> all {n} rank(s) joined", joined)


def docker_series(runs: int) -> None:
    """torchrun in one podman container (the CI image lent this machine's torch read-only,
    as tests/backends/test_docker.py does): ranks on the container's loopback."""
    import sysconfig

    from ci_services import PYTHON_IMAGE, docker_available, docker_url

    from core.engine.executors_docker import DockerExecutor

    ok, why = docker_available()
    libdir = "/usr/lib/x86_64-linux-gnu"
    if not ok or sys.version_info[:2] != (3, 11) or not os.path.isdir(libdir):
        print(f"docker skipped: {why if not ok else 'needs Python 3.11 and ' + libdir}")
        return
    purelib = sysconfig.get_paths()["purelib"]

    def docker(n: int, tmp: str) -> object:
        return DockerExecutor(
            container_image=PYTHON_IMAGE,
            base_url=docker_url(),
            pull="never",
            launcher="torchrun",
            ntasks_per_node=n,
            volumes=[f"{purelib}:/opt/site:ro", f"{libdir}:{libdir}:ro", f"{tmp}:{tmp}:ro"],
            env_vars={"PYTHONPATH": "/opt/site"},
        )

    asyncio.run(series("docker torchrun", docker, runs, entrypoint="python3"))


def main() -> int:
    if importlib.util.find_spec("torch") is None:
        print("skipped: torch is not installed (pip install torch==2.13.0)")
        return 0
    from core.engine.executors import LocalExecutor, LocalTunnel, SlurmExecutor

    runs = int(os.environ.get("NRT_BENCH_RUNS", "3"))

    def local(n: int, tmp: str) -> object:
        return LocalExecutor(ntasks_per_node=n, launcher="torchrun")

    asyncio.run(series("local torchrun", local, runs))
    bare_torchrun(2, runs)
    docker_series(runs)

    from ci_services import slurm_available

    ok, why = slurm_available()
    if not ok:
        print(f"slurm skipped: {why}")
        return 0

    def slurm(n: int, tmp: str) -> object:
        return SlurmExecutor(
            ntasks_per_node=n,
            launcher="torchrun",
            tunnel=LocalTunnel(job_dir=str(Path(tmp) / "cluster")),
            poll_rate=5.0,
            time="5",
        )

    asyncio.run(series("slurm torchrun", slurm, runs))

    multi = subprocess.run(["sinfo", "-h", "-p", "multi", "-o", "%D"], capture_output=True)
    if not multi.stdout.strip():
        print("slurm 2 nodes skipped: no partition `multi` (run .ci/services/slurm.sh)")
        return 0

    def nodes(n: int, tmp: str) -> object:
        # n=1: one node, one rank (the reference); n=2: two nodes, one rank each.
        return SlurmExecutor(
            nodes=n,
            ntasks_per_node=1,
            partition="multi",
            launcher="torchrun",
            tunnel=LocalTunnel(job_dir=str(Path(tmp) / "cluster")),
            poll_rate=5.0,
            time="5",
        )

    asyncio.run(series("slurm torchrun, ranks on separate nodes", nodes, runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
