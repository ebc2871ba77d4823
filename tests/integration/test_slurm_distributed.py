"""Distributed launches on the real Slurm cluster: torchrun ranks, requeue, retries, stalls.

Every job is bounded (a fixed script, ``--time`` limits) and the test waits with a timeout.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import subprocess
import time
from pathlib import Path

import pytest
from ci_services import slurm_available
from services import require_service

from core.config import Script
from core.engine import Engine, Plan, registry
from core.engine.executors import LocalTunnel, SlurmExecutor
from core.engine.states import JobState
from core.store import Store

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
BOUND = 240.0

ALL_REDUCE = """
import os, socket, torch, torch.distributed as dist
dist.init_process_group("gloo")
rank = dist.get_rank()
t = torch.tensor([float(rank + 1)])
dist.all_reduce(t)
print(
    f"rank={rank} world={dist.get_world_size()} sum={t.item():g} node={os.environ['GROUP_RANK']}"
    f" slurm={os.environ['SLURMD_NODENAME']}"
)
dist.destroy_process_group()
"""


@pytest.fixture
async def engine(tmp_path: Path) -> Engine:
    ok, why = slurm_available()
    require_service(ok, why)
    yield Engine(Store(tmp_path / "home"))
    await registry.close_all()


def executor(tmp_path: Path, **kw: object) -> SlurmExecutor:
    return SlurmExecutor(
        tunnel=LocalTunnel(job_dir=str(tmp_path / "cluster")), poll_rate=5.0, time="5", **kw
    )


async def finished(engine: Engine, exp_id: str) -> object:
    return await asyncio.wait_for(engine.wait(exp_id, max_interval=0.5), BOUND)


async def test_two_ranks_all_reduce_through_torchrun_on_one_node(
    engine: Engine, tmp_path: Path
) -> None:
    require_service(importlib.util.find_spec("torch") is not None, "torch is not installed")
    path = tmp_path / "allreduce.py"
    path.write_text(ALL_REDUCE)
    plan = Plan(title="ddp-slurm")
    plan.add(
        Script(path=str(path), entrypoint="python"),
        executor(tmp_path, ntasks_per_node=2, launcher="torchrun"),
        name="allreduce",
    )
    [dry] = await engine.dryrun(plan)
    assert "srun --nodes=1 --ntasks=1 --ntasks-per-node=1" in dry.artifacts["sbatch.sh"]
    assert '"--rdzv-endpoint=$NEMORUN_RDZV_ENDPOINT"' in dry.artifacts["sbatch.sh"]
    record = await engine.launch(plan)
    done = await finished(engine, record.id)
    job = done.jobs[0]
    assert job.state is JobState.SUCCEEDED, (job.reason, await _text(engine, done.id, None))
    for rank in (0, 1):
        text = await _text(engine, done.id, rank)
        assert f"rank={rank} world=2 sum=3 node=0 slurm=" in text, text


def multi_partition() -> tuple[bool, str]:
    """The CI cluster's 2-node partition (node2, node3: .ci/services/slurm.sh)."""
    out = subprocess.run(
        ["sinfo", "-h", "-p", "multi", "-o", "%D %T"], capture_output=True, text=True
    )
    rows = out.stdout.split()
    if out.returncode != 0 or not rows:
        return False, "no partition `multi` (2 nodes) on this cluster: run .ci/services/slurm.sh"
    return True, ""


async def test_two_nodes_two_ranks_each_all_reduce_through_torchrun(
    engine: Engine, tmp_path: Path
) -> None:
    require_service(importlib.util.find_spec("torch") is not None, "torch is not installed")
    ok, why = multi_partition()
    require_service(ok, why)
    path = tmp_path / "allreduce.py"
    path.write_text(ALL_REDUCE)
    plan = Plan(title="ddp-2-nodes")
    plan.add(
        Script(path=str(path), entrypoint="python"),
        executor(tmp_path, nodes=2, ntasks_per_node=2, partition="multi", launcher="torchrun"),
        name="allreduce",
    )
    record = await engine.launch(plan)
    done = await finished(engine, record.id)
    job = done.jobs[0]
    assert job.state is JobState.SUCCEEDED, (job.reason, await _text(engine, done.id, None))
    nodes = set()
    for rank in range(4):
        text = await _text(engine, done.id, rank)
        # 1 + 2 + 3 + 4 over four ranks on two nodes (two launchers, one per node).
        match = re.search(
            rf"^rank={rank} world=4 sum=10 node=(\d) slurm=(\S+)$", text, re.MULTILINE
        )
        assert match, text
        nodes.add(match.groups())
    assert nodes == {("0", "node2"), ("1", "node3")} or nodes == {("0", "node3"), ("1", "node2")}


async def _text(engine: Engine, exp_id: str, rank: int | None, stream: str = "stdout") -> str:
    chunks = engine.logs(exp_id, rank=rank, stream=stream)  # type: ignore[arg-type]
    return b"".join([c async for c in chunks]).decode(errors="replace")


async def test_requeue_is_a_restart_of_the_same_job_not_a_failure(
    engine: Engine, tmp_path: Path
) -> None:
    marker = tmp_path / "ran-once"
    # First run: mark and wait to be requeued; second run: finish at once.
    again = tmp_path / "again"
    text = f"if [ -e {marker} ]; then touch {again}; exit 0; fi; touch {marker}; sleep 120"
    plan = Plan(title="requeue")
    plan.add(
        Script(inline=text),
        executor(tmp_path, retries=2, additional_parameters={"requeue": True}),
        name="rq",
    )
    record = await engine.launch(plan)
    job_id = record.jobs[0].handle.job_id  # type: ignore[union-attr]
    deadline = time.monotonic() + BOUND
    while not marker.exists():
        assert time.monotonic() < deadline, "the job never started"
        await asyncio.sleep(0.2)
    rq = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    assert rq.returncode == 0, rq.stderr
    # Slurm holds a requeued job back for ~2 minutes (its BeginTime); let it start now.
    for _ in range(120):
        held = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True
        ).stdout.split()
        if held == ["PENDING", "BeginTime"]:
            update = ["scontrol", "update", f"JobId={job_id}", "StartTime=now"]
            if subprocess.run(update, capture_output=True).returncode == 0:
                break
        elif held[:1] != ["PENDING"] and marker.exists() and (tmp_path / "again").exists():
            break
        await asyncio.sleep(0.25)
    done = await finished(engine, record.id)
    job = done.jobs[0]
    assert job.state is JobState.SUCCEEDED, job.reason
    assert job.restarts >= 1  # recorded as a restart of the same job
    assert job.attempts == []  # ... not as a failed attempt
    assert job.handle is not None and job.handle.job_id == job_id


async def test_retries_on_slurm_fail_first_then_succeed(engine: Engine, tmp_path: Path) -> None:
    marker = tmp_path / "tried"
    text = f"if [ -e {marker} ]; then echo ok; exit 0; fi; touch {marker}; exit 5"
    plan = Plan(title="retry-slurm")
    plan.add(Script(inline=text), executor(tmp_path, retries=1), name="flaky")
    done = await finished(engine, (await engine.launch(plan)).id)
    job = done.jobs[0]
    assert job.state is JobState.SUCCEEDED, job.reason
    first, second = job.all_attempts()
    assert first.state is JobState.FAILED and first.exit_code == 5
    assert first.handle != second.handle


async def test_a_silent_slurm_job_is_flagged_stalled(engine: Engine, tmp_path: Path) -> None:
    plan = Plan(title="stall-slurm")
    plan.add(
        Script(inline="echo hello; sleep 60"),
        executor(tmp_path, stall_after="2s"),
        name="quiet",
    )
    record = await engine.launch(plan)
    try:
        deadline = time.monotonic() + BOUND
        while True:
            await engine.refresh([record.id])
            job = engine.store.load(record.id).jobs[0]
            if job.stalled:
                break
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.5)
        assert job.state is JobState.RUNNING
        assert job.last_output_at is not None and job.last_output_at <= time.time() - 2
    finally:
        await engine.cancel(record.id)
