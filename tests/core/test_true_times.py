"""Times are true: a job seen ended late keeps the end time it really had.

``ended_at`` (and so the duration) comes from the supervisor's result file on the local
backend and from sacct's End on Slurm, never from the moment the monitor first saw the end.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from ci_services import slurm_available
from services import require_service

from backends.slurm import parse
from core.config import Script
from core.engine import Engine, Plan
from core.engine.executors import LocalExecutor, LocalTunnel, SlurmExecutor
from core.engine.states import JobState
from core.store import Store

LATE = 3.0  # seconds between the job's end and the first look at it


async def _wait_for_file(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.02)


async def test_local_echo_seen_late_keeps_its_true_end(tmp_path: Path) -> None:
    engine = Engine(Store(tmp_path / "home"))
    plan = Plan(title="times")
    plan.add(Script(inline="echo hi"), LocalExecutor(), name="echo")
    record = await engine.launch(plan)
    result_file = engine.store.job_dir(record.id, "echo") / "result.json"
    await _wait_for_file(result_file)  # ended; nobody has polled it yet
    result = json.loads(result_file.read_text())
    await asyncio.sleep(LATE)
    await engine.refresh([record.id])
    job = engine.store.load(record.id).jobs[0]
    assert job.state is JobState.SUCCEEDED
    assert job.ended_at == pytest.approx(result["ended_at"], abs=1e-6)
    assert job.observed_at is not None and job.observed_at - job.ended_at >= LATE - 0.1
    assert job.duration is not None and job.duration < 0.5, job.duration


@pytest.mark.slurm
@pytest.mark.slow
async def test_slurm_echo_seen_late_ends_at_sacct_end(tmp_path: Path) -> None:
    ok, why = slurm_available()
    require_service(ok, why)
    jobs = tmp_path / "cluster-jobs"
    engine = Engine(Store(tmp_path / "home"))
    plan = Plan(title="slurm-times")
    plan.add(
        Script(inline="echo hi"),
        SlurmExecutor(tunnel=LocalTunnel(job_dir=str(jobs)), poll_rate=5.0),
        name="echo",
    )
    record = await engine.launch(plan)
    job_id = record.jobs[0].handle.job_id  # type: ignore[union-attr]
    await _wait_for_file(jobs / record.id / "echo" / f"exitcode-{job_id}")
    await asyncio.sleep(LATE)
    deadline = time.monotonic() + 60
    while True:  # accounting may lag the controller a little
        await engine.refresh([record.id])
        job = engine.store.load(record.id).jobs[0]
        if job.state.is_terminal or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert job.state is JobState.SUCCEEDED, job.reason
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "End"],
        capture_output=True,
        text=True,
        check=True,
        env={"SLURM_TIME_FORMAT": "standard", "TZ": "UTC", "PATH": "/usr/bin:/bin"},
    ).stdout.strip()
    sacct_end = parse.parse_time(out)
    assert sacct_end is not None, out
    assert job.ended_at is not None and abs(job.ended_at - sacct_end) <= 1.0
    assert job.observed_at is not None and job.observed_at - job.ended_at >= LATE - 1.0
    # The duration runs from our submit to Slurm's End (queue wait included, which on a busy
    # one-node CI cluster can take a second or two), never to the moment the end was seen.
    assert job.submitted_at is not None and job.duration is not None
    assert job.duration == pytest.approx(sacct_end - job.submitted_at, abs=1.0)
    assert job.duration <= job.observed_at - job.submitted_at - (LATE - 1.0)
