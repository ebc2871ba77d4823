"""Launchers on the local backend: real torchrun ranks (CPU torch, gloo) under the supervisor.

Every test is bounded (``asyncio.wait_for``) and launches a fixed number of ranks.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import time
from pathlib import Path

import pytest
from rank_scripts import ALL_REDUCE, SLEEPER
from services import require_service

from core.config import Script
from core.engine import Engine, Plan, registry
from core.engine.executors import LocalExecutor
from core.engine.states import JobState
from core.launchers import FaultTolerance, Torchrun
from core.store import Store

BOUND = 120.0


def need_torch() -> None:
    require_service(
        importlib.util.find_spec("torch") is not None,
        "torch is not installed (pip install torch==2.13.0: the CPU wheel)",
    )


@pytest.fixture
async def engine(tmp_path: Path) -> Engine:
    yield Engine(Store(tmp_path / "home"))
    await registry.close_all()


def script(tmp_path: Path, text: str, name: str = "job.py") -> Script:
    path = tmp_path / name
    path.write_text(text)
    return Script(path=str(path), entrypoint="python")


async def rank_text(engine: Engine, exp_id: str, rank: int) -> str:
    return b"".join([c async for c in engine.logs(exp_id, rank=rank)]).decode()


async def test_two_ranks_all_reduce_through_torchrun(engine: Engine, tmp_path: Path) -> None:
    need_torch()
    plan = Plan(title="ddp-local")
    plan.add(
        script(tmp_path, ALL_REDUCE),
        LocalExecutor(ntasks_per_node=2, launcher="torchrun"),
        name="allreduce",
    )
    record = await engine.launch(plan)
    done = await asyncio.wait_for(engine.wait(record.id, max_interval=0.2), BOUND)
    job = done.jobs[0]
    assert job.state is JobState.SUCCEEDED, job.reason
    for rank in (0, 1):
        text = await rank_text(engine, record.id, rank)
        # 1 + 2 summed over both ranks: each rank holds the reduced value.
        assert f"rank={rank} world=2 sum=3 env_rank={rank}\n" in text, text
        assert "[rank" not in text  # the prefix is taken off
    whole = b"".join([c async for c in engine.logs(record.id)]).decode()
    assert "[rank0]:rank=0 world=2 sum=3" in whole and "[rank1]:rank=1 world=2 sum=3" in whole


async def test_dryrun_shows_the_exact_launch_line(engine: Engine, tmp_path: Path) -> None:
    plan = Plan(title="ddp-dry")
    task = script(tmp_path, "print('hi')")
    launcher = Torchrun(rdzv_port=29533, max_restarts=2, extra_args=["--monitor-interval=1"])
    plan.add(task, LocalExecutor(ntasks_per_node=3, launcher=launcher), name="j")
    [dry] = await engine.dryrun(plan)
    line = dry.artifacts["command"]
    assert line.split()[1:3] == ["-m", "torch.distributed.run"]
    for flag in (
        "--nnodes=1",
        "--nproc-per-node=3",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=127.0.0.1:29533",
        "--max-restarts=2",
        "--tee=3",
        "--monitor-interval=1",
    ):
        assert flag in line.split(), (flag, line)
    assert line.endswith(str(task.path))
    assert dry.summary.splitlines()[0] == line


async def test_cancel_stops_every_rank(engine: Engine, tmp_path: Path) -> None:
    need_torch()
    plan = Plan(title="ddp-cancel")
    plan.add(
        script(tmp_path, SLEEPER),
        LocalExecutor(ntasks_per_node=2, launcher="torchrun", cancel_grace_seconds=2.0),
        name="sleepers",
    )
    record = await engine.launch(plan)
    pids: dict[int, int] = {}
    deadline = time.monotonic() + BOUND
    while len(pids) < 2:
        assert time.monotonic() < deadline, "the ranks never started"
        await engine.refresh([record.id])
        whole = b"".join([c async for c in engine.logs(record.id)]).decode()
        for rank, pid in re.findall(r"\[rank(\d)\]:pid=(\d+)", whole):
            pids[int(rank)] = int(pid)
        await asyncio.sleep(0.2)
    for pid in pids.values():
        os.kill(pid, 0)  # alive before the cancel
    assert await asyncio.wait_for(engine.cancel(record.id), BOUND) == ["sleepers"]
    done = await asyncio.wait_for(engine.wait(record.id, max_interval=0.2), BOUND)
    assert done.jobs[0].state is JobState.CANCELLED
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_several_tasks_without_a_launcher_are_refused(engine: Engine, tmp_path: Path) -> None:
    plan = Plan(title="no-launcher")
    plan.add(script(tmp_path, "print(1)"), LocalExecutor(ntasks_per_node=2), name="j")
    record = await engine.launch(plan)
    job = record.jobs[0]
    assert job.state is JobState.FAILED
    assert "ntasks_per_node=2 needs a launcher" in (job.reason or "")


async def test_ft_launcher_missing_package_is_a_clear_error_before_anything_runs(
    engine: Engine, tmp_path: Path
) -> None:
    if importlib.util.find_spec("nvidia_resiliency_ext") is not None:
        pytest.skip("nvidia-resiliency-ext is installed here: nothing is missing")
    plan = Plan(title="ft")
    plan.add(
        script(tmp_path, "print(1)"),
        LocalExecutor(ntasks_per_node=2, launcher=FaultTolerance(rank_heartbeat_timeout=30)),
        name="j",
    )
    record = await engine.launch(plan)
    job = record.jobs[0]
    assert job.state is JobState.FAILED and job.handle is None  # never started
    assert "nvidia_resiliency_ext" in (job.reason or "")
    assert "fault-tolerant launcher" in (job.reason or "")
    # The dry run still shows what would run, with the ft flags.
    [dry] = await engine.dryrun(plan)
    assert "--ft-rank-heartbeat-timeout=30" in dry.artifacts["command"].split()
    assert dry.artifacts["command"].split()[0].endswith("/ft_launcher")
