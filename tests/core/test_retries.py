"""Retries (core.engine.retries) with real local jobs: attempts recorded, last one decides.

Bounded: every job runs a fixed short script; ``retries`` caps the re-submissions.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import Script
from core.engine import Engine, Plan, registry
from core.engine.executors import LocalExecutor
from core.engine.states import JobState
from core.store import Store

BOUND = 60.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def engine(tmp_path: Path) -> Engine:
    yield Engine(Store(tmp_path / "home"))
    await registry.close_all()


async def run(engine: Engine, plan: Plan) -> object:
    record = await engine.launch(plan)
    return await asyncio.wait_for(engine.wait(record.id, max_interval=0.1), BOUND)


async def test_fails_first_succeeds_second_ends_succeeded_with_two_attempts(
    engine: Engine, tmp_path: Path
) -> None:
    marker = tmp_path / "tried-once"
    # The first attempt leaves a marker and fails; the second finds it and succeeds.
    text = f"if [ -e {marker} ]; then echo second; exit 0; fi; touch {marker}; echo first; exit 3"
    plan = Plan(title="flaky")
    plan.add(Script(inline=text), LocalExecutor(retries=2), name="flaky")
    done = await run(engine, plan)
    job = done.jobs[0]
    assert job.state is JobState.SUCCEEDED, job.reason
    attempts = job.all_attempts()
    assert [a.number for a in attempts] == [1, 2]
    first, second = attempts
    assert first.state is JobState.FAILED and first.exit_code == 3
    assert first.reason == "exited with code 3"
    assert first.handle is not None and second.handle is not None
    assert first.handle != second.handle
    assert first.submitted_at and first.ended_at and first.submitted_at <= first.ended_at
    assert second.submitted_at is not None and second.submitted_at >= first.ended_at - 0.5
    assert second.state is JobState.SUCCEEDED and second.exit_code == 0
    # The log is the current attempt's.
    out = b"".join([c async for c in engine.logs(done.id)])
    assert out == b"second\n"
    kinds = [e["kind"] for e in engine.store.events(done.id)]
    assert kinds.count("retry") == 1
    # Stored: a fresh read of the manifest has the attempt.
    manifest = json.loads((engine.store.exp_dir(done.id) / "experiment.json").read_text())
    assert manifest["jobs"][0]["attempts"][0]["exit_code"] == 3


async def test_always_failing_ends_failed_after_n_plus_one_attempts(engine: Engine) -> None:
    plan = Plan(title="broken")
    plan.add(Script(inline="echo no; exit 7"), LocalExecutor(retries=2), name="broken")
    done = await run(engine, plan)
    job = done.jobs[0]
    assert job.state is JobState.FAILED
    attempts = job.all_attempts()
    assert [a.number for a in attempts] == [1, 2, 3]
    assert all(a.state is JobState.FAILED and a.exit_code == 7 for a in attempts)
    assert len({a.handle for a in attempts}) == 3


async def test_a_backend_that_retries_natively_is_never_resubmitted(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kubernetes maps ``retries`` onto backoffLimit: the engine must not retry on top."""
    from backends.local import LocalBackend
    from core.engine.retries import retries_natively

    assert retries_natively("kubernetes") and not retries_natively("local")
    monkeypatch.setattr(LocalBackend, "retries_natively", True, raising=False)
    plan = Plan(title="native")
    plan.add(Script(inline="exit 7"), LocalExecutor(retries=2), name="native")
    done = await run(engine, plan)
    assert done.jobs[0].state is JobState.FAILED
    assert done.jobs[0].attempts == []
    assert [e["kind"] for e in engine.store.events(done.id)].count("retry") == 0


async def test_no_retries_by_default(engine: Engine) -> None:
    plan = Plan(title="once")
    plan.add(Script(inline="exit 1"), LocalExecutor(), name="once")
    done = await run(engine, plan)
    assert done.jobs[0].state is JobState.FAILED
    assert done.jobs[0].attempts == []


async def test_a_cancelled_job_is_never_retried(engine: Engine) -> None:
    plan = Plan(title="cancel")
    plan.add(
        Script(inline="echo up; sleep 30"),
        LocalExecutor(retries=3, cancel_grace_seconds=1.0),
        name="sleeper",
    )
    record = await engine.launch(plan)
    for _ in range(200):
        await engine.refresh([record.id])
        if engine.store.load(record.id).jobs[0].state is JobState.RUNNING:
            break
        await asyncio.sleep(0.05)
    await asyncio.wait_for(engine.cancel(record.id), BOUND)
    done = await asyncio.wait_for(engine.wait(record.id, max_interval=0.1), BOUND)
    assert done.jobs[0].state is JobState.CANCELLED
    assert done.jobs[0].attempts == []


async def test_a_job_failing_while_its_cancel_is_asked_is_not_retried(engine: Engine) -> None:
    # The job ignores SIGTERM's meaning and exits 1 on it: FAILED, but the user asked to stop.
    plan = Plan(title="cancel-fail")
    plan.add(
        Script(inline="trap 'exit 1' TERM; echo up; sleep 30 & wait"),
        LocalExecutor(retries=3, cancel_grace_seconds=1.0),
        name="stubborn",
    )
    record = await engine.launch(plan)
    for _ in range(200):
        await engine.refresh([record.id])
        if engine.store.load(record.id).jobs[0].state is JobState.RUNNING:
            break
        await asyncio.sleep(0.05)
    await asyncio.wait_for(engine.cancel(record.id), BOUND)
    done = await asyncio.wait_for(engine.wait(record.id, max_interval=0.1), BOUND)
    assert done.jobs[0].state in (JobState.CANCELLED, JobState.FAILED)
    assert done.jobs[0].attempts == []


def test_status_shows_the_attempts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    marker = tmp_path / "m"
    text = f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; exit 4"
    engine = Engine(Store(home))

    async def go() -> str:
        plan = Plan(title="flaky-status")
        plan.add(Script(inline=text), LocalExecutor(retries=1), name="flaky")
        done = await run(engine, plan)
        await registry.close_all()
        return done.id

    exp_id = asyncio.run(go())
    cli = [sys.executable, "-m", "nemorun_tui.cli", "--home", str(home), "status"]
    shown = subprocess.run([*cli, exp_id], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "attempt 2 of 2" in shown.stdout
    assert "attempt 1: FAILED exit 4" in shown.stdout
    as_json = subprocess.run(
        [*cli, exp_id, "--json"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    job = json.loads(as_json.stdout)["jobs"][0]
    assert [a["number"] for a in job["attempts"]] == [1, 2]
    assert job["attempts"][0]["exit_code"] == 4 and job["attempts"][1]["state"] == "SUCCEEDED"
