"""Hang detection (core.engine.stall) with real local jobs that go silent.

Bounded: each job sleeps a fixed time at most and is cancelled at the end.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.config import Script
from core.engine import Engine, LaunchError, Plan, registry
from core.engine.executors import LocalExecutor
from core.engine.stall import StallConfigError, StallNotice, parse_duration
from core.engine.states import JobState
from core.store import Store

BOUND = 60.0
REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "nemorun_tui.cli"]


@pytest.fixture
async def engine(tmp_path: Path) -> Engine:
    yield Engine(Store(tmp_path / "home"))
    await registry.close_all()


def test_durations() -> None:
    assert parse_duration("15m") == 900.0
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("90s") == 90.0
    assert parse_duration("2.5") == 2.5
    assert parse_duration(None) is None
    assert parse_duration("") is None
    for bad in ("soon", "15x", "-1m", "0s", "m15"):
        with pytest.raises(StallConfigError):
            parse_duration(bad)


async def test_a_bad_stall_after_is_refused_before_recording(engine: Engine) -> None:
    plan = Plan(title="bad")
    plan.add(Script(inline="true"), LocalExecutor(stall_after="soonish"), name="j")
    with pytest.raises(LaunchError, match="stall_after"):
        await engine.launch(plan)
    plan = Plan(title="bad2")
    plan.add(Script(inline="true"), LocalExecutor(stall_after="1m", on_stall="page"), name="j")
    with pytest.raises(LaunchError, match="on_stall"):
        await engine.launch(plan)
    assert engine.store.list() == []


async def poll_until(engine: Engine, exp_id: str, check: object) -> object:
    deadline = time.monotonic() + BOUND
    while True:
        await engine.refresh([exp_id])
        record = engine.store.load(exp_id)
        if check(record.jobs[0]):  # type: ignore[operator]
            return record
        assert time.monotonic() < deadline, record.jobs[0]
        await asyncio.sleep(0.1)


async def test_a_silent_job_is_flagged_stalled_then_unflagged_when_output_resumes(
    engine: Engine,
) -> None:
    plan = Plan(title="silent")
    text = "echo one; sleep 4; echo two; sleep 30"
    plan.add(Script(inline=text), LocalExecutor(stall_after="1s", cancel_grace_seconds=1), name="j")
    started = time.time()
    record = await engine.launch(plan)
    try:
        stalled = await poll_until(engine, record.id, lambda j: j.stalled)
        job = stalled.jobs[0]
        assert job.state is JobState.RUNNING  # a flag, not a state
        assert job.last_output_at is not None
        # The time of the last output ("one"), not when the flag was noticed.
        assert started - 1 <= job.last_output_at <= time.time() - 1.0
        kinds = [e["kind"] for e in engine.store.events(record.id)]
        assert "stalled" in kinds
        shown = subprocess.run(
            [*CLI, "--home", str(engine.store.home), "status", record.id, "--no-refresh"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert "STALLED: no output since" in shown.stdout, shown.stdout
        # "two" arrives: no longer stalled (then silent again for good).
        resumed = await poll_until(
            engine, record.id, lambda j: not j.stalled and j.last_output_at != job.last_output_at
        )
        assert resumed.jobs[0].state is JobState.RUNNING
    finally:
        await engine.cancel(record.id)
    done = engine.store.load(record.id)
    assert done.jobs[0].state is JobState.CANCELLED


async def test_a_job_that_keeps_writing_is_never_flagged(engine: Engine) -> None:
    plan = Plan(title="chatty")
    text = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo $i; sleep 0.25; done"
    plan.add(Script(inline=text), LocalExecutor(stall_after="2s"), name="j")
    record = await engine.launch(plan)
    done = await asyncio.wait_for(engine.wait(record.id, max_interval=0.1), BOUND)
    assert done.jobs[0].state is JobState.SUCCEEDED
    assert "stalled" not in [e["kind"] for e in engine.store.events(record.id)]
    assert not done.jobs[0].stalled


async def test_on_stall_cancel_cancels_and_notify_tells_subscribers(engine: Engine) -> None:
    queue = engine.monitor.subscribe()
    plan = Plan(title="stall-actions")
    plan.add(
        Script(inline="echo hi; sleep 30"),
        LocalExecutor(stall_after="1s", on_stall="cancel", cancel_grace_seconds=1),
        name="cancelme",
    )
    plan.add(
        Script(inline="echo hi; sleep 30"),
        LocalExecutor(stall_after="1s", on_stall="notify", cancel_grace_seconds=1),
        name="tellme",
    )
    record = await engine.launch(plan)
    try:
        deadline = time.monotonic() + BOUND
        while True:
            await engine.refresh([record.id])
            jobs = {j.name: j for j in engine.store.load(record.id).jobs}
            if jobs["cancelme"].state.is_terminal and jobs["tellme"].stalled:
                break
            assert time.monotonic() < deadline, jobs
            await asyncio.sleep(0.1)
        assert jobs["cancelme"].state is JobState.CANCELLED
        assert jobs["tellme"].state is JobState.RUNNING
        notices = []
        while not queue.empty():
            event = queue.get_nowait()
            if isinstance(event, StallNotice):
                notices.append(event)
        assert [n.job for n in notices] == ["tellme"]
        assert notices[0].silent_for >= 1.0
    finally:
        await engine.cancel(record.id)
