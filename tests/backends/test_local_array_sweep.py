"""A local sweep is one pool process that starts its points at most ``throttle`` at a time.

Each point keeps its own run directory, logs and result; points waiting for a slot read
PENDING with the reason, can be cancelled before they start, and end "not run" when the
pool (or the launcher holding it) is gone. Secrets reach every point's process, never a file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backends.local import LocalBackend
from backends.local import supervisor as sv
from backends.local.array_sweep import default_throttle
from core.engine.executors import LocalExecutor
from core.engine.protocol import Handle, JobSpec
from core.engine.states import JobState, StatusReport

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0


@pytest.fixture
async def backend() -> AsyncIterator[LocalBackend]:
    b = LocalBackend.from_profile(LocalExecutor(cancel_grace_seconds=1.0))
    yield b
    await b.close()


def points(
    tmp_path: Path, scripts: list[str], *, held: bool = False, **kw: object
) -> list[JobSpec]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return [
        JobSpec(
            experiment_id="sweep-1",
            job_name=f"p{i}",
            run_tag=f"sweep-1-p{i}",
            argv=["bash", "-c", script],
            executor=LocalExecutor(cancel_grace_seconds=1.0),
            job_dir=str(tmp_path / "exp" / "jobs" / f"p{i}"),
            workdir=str(work),
            held=held,
            **kw,  # type: ignore[arg-type]
        )
        for i, script in enumerate(scripts)
    ]


async def states(b: LocalBackend, handles: list[Handle]) -> list[StatusReport]:
    reports = await b.poll(handles)
    return [reports[h] for h in handles]


async def until(
    b: LocalBackend, handles: list[Handle], done: object, what: str
) -> list[StatusReport]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        reports = await states(b, handles)
        if done(reports):  # type: ignore[operator]
            return reports
        if time.monotonic() > deadline:
            pytest.fail(f"never {what}: {reports}")
        await asyncio.sleep(0.05)


def all_ended(reports: list[StatusReport]) -> bool:
    return all(r.state.is_terminal for r in reports)


def log(handle: Handle, stream: str = "stdout") -> str:
    return (Path(handle.job_id) / sv.LOGS / sv.STREAMS[stream]).read_text()


async def test_at_most_throttle_points_run_at_once_and_every_point_runs(
    backend: LocalBackend, tmp_path: Path
) -> None:
    mark = tmp_path / "running"
    mark.mkdir()
    # Each point counts the points running beside it, through files in `mark`.
    script = textwrap.dedent(
        f"""\
        touch {mark}/$NEMORUN_JOB_NAME
        ls {mark} | wc -l
        sleep 0.6
        rm {mark}/$NEMORUN_JOB_NAME
        """
    )
    pool, handles = await backend.submit_array(points(tmp_path, [script] * 5), 2)
    reports = await until(
        backend, handles, lambda rs: any(r.state is JobState.PENDING for r in rs), "PENDING"
    )
    waiting = [r for r in reports if r.state is JobState.PENDING]
    assert waiting and all(r.reason and "at most 2 at once" in r.reason for r in waiting)
    reports = await until(backend, handles, all_ended, "ended")
    assert [r.state for r in reports] == [JobState.SUCCEEDED] * 5
    seen = [int(log(h).strip()) for h in handles]
    assert max(seen) <= 2 and max(seen) == 2, seen  # two ran together, never three
    result = sv.read_json(os.path.join(pool.job_id, sv.RESULT))
    assert result is not None and (result["started"], result["skipped"]) == (5, 0)


async def test_a_point_cancelled_while_waiting_never_runs(
    backend: LocalBackend, tmp_path: Path
) -> None:
    specs = points(tmp_path, ["sleep 1.5; echo first", "echo second ran"])
    _, (first, second) = await backend.submit_array(specs, 1)
    assert (await states(backend, [second]))[0].state is JobState.PENDING
    await backend.cancel(second)
    (report,) = await states(backend, [second])
    assert report.state is JobState.CANCELLED and report.reason == "cancelled before it started"
    first_report, second_report = await until(backend, [first, second], all_ended, "ended")
    assert first_report.state is JobState.SUCCEEDED and log(first) == "first\n"
    assert second_report.state is JobState.CANCELLED and log(second) == ""


async def test_points_left_by_a_killed_pool_read_not_run(
    backend: LocalBackend, tmp_path: Path
) -> None:
    pool, handles = await backend.submit_array(points(tmp_path, ["sleep 1"] * 3), 1)
    await until(backend, handles, lambda rs: rs[0].state is JobState.RUNNING, "running")
    pids = sv.read_json(os.path.join(pool.job_id, sv.PIDS)) or {}
    os.kill(pids["supervisor"]["pid"], signal.SIGKILL)
    reports = await until(backend, handles, all_ended, "ended")
    assert reports[0].state is JobState.SUCCEEDED  # its own supervisor still had it
    for report in reports[1:]:
        assert report.state is JobState.FAILED
        assert report.reason == "not run: the sweep's pool process ended before starting it"


async def test_a_held_sweep_whose_launcher_dies_runs_no_point(tmp_path: Path) -> None:
    """The launcher submits held and dies before recording: nothing runs, each point says so."""
    code = textwrap.dedent(
        f"""\
        import asyncio, pickle, sys
        sys.path[:0] = [{str(REPO)!r}, {str(REPO / "tests")!r}]
        from pathlib import Path
        from backends.local import LocalBackend
        from test_local_array_sweep import points
        specs = points(Path({str(tmp_path)!r}), ["echo ran"] * 2, held=True)
        asyncio.run(LocalBackend().submit_array(specs, 2))
        """
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests' / 'backends'}"}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)
    handles = [Handle("local", "local", str(tmp_path / "exp" / "jobs" / f"p{i}")) for i in (0, 1)]
    b = LocalBackend()
    reports = await until(b, handles, all_ended, "ended")
    for handle, report in zip(handles, reports, strict=True):
        assert report.state is JobState.FAILED and report.reason is not None
        assert report.reason.startswith("not run: the launcher ended before")
        assert log(handle) == ""


async def test_secrets_reach_each_point_but_no_file(backend: LocalBackend, tmp_path: Path) -> None:
    secret = "s3cr3t-value-for-the-pool"
    specs = points(
        tmp_path,
        ['echo "$TOKEN $NEMORUN_JOB_NAME $PLAIN"'] * 2,
        secret_env={"TOKEN": secret},
        env={"PLAIN": "visible"},
    )
    pool, handles = await backend.submit_array(specs, 2)
    await until(backend, handles, all_ended, "ended")
    assert [log(h) for h in handles] == [f"{secret} p0 visible\n", f"{secret} p1 visible\n"]
    for root in (Path(pool.job_id), *(Path(h.job_id) for h in handles)):
        for path in root.rglob("*"):
            if path.is_file() and path.name != sv.STREAMS["stdout"]:
                assert secret.encode() not in path.read_bytes(), path


async def test_the_dry_run_says_how_many_run_at_once(backend: LocalBackend, tmp_path: Path) -> None:
    specs = points(tmp_path, ["echo 'a b'", "true"])
    dry = await backend.dryrun_array(specs, None)
    assert f"2 points on this machine, at most {default_throttle()} at once" in dry.summary
    assert dry.artifacts["points"] == "p0: bash -c 'echo '\"'\"'a b'\"'\"''\np1: bash -c true\n"
    assert not (tmp_path / "exp").exists()  # a dry run writes nothing


async def test_a_points_run_time_leaves_out_its_wait_for_a_slot(tmp_path: Path) -> None:
    """Through the engine: the second point of a 1-slot sweep waits for the first; its
    record keeps when it started, so its duration is its run, and the wait is `queued`."""
    from core.config import Script
    from core.engine import Engine, registry
    from core.engine.sweep_plan import task_sweep_plan
    from core.store import Store
    from core.sweep import parse_param

    engine = Engine(Store(tmp_path / "home"))
    plan = task_sweep_plan(
        Script(inline="sleep 0.8"),
        [parse_param("env.N=1,2")],
        LocalExecutor(),
        title="slots",
        throttle=1,
    )
    try:
        record = await engine.launch(plan)
        done = await asyncio.wait_for(engine.wait(record.id, max_interval=0.1), TIMEOUT)
    finally:
        await registry.close_all()
    first, second = done.jobs
    assert [first.state, second.state] == [JobState.SUCCEEDED] * 2
    assert first.started_at is not None and second.started_at is not None
    assert second.started_at >= first.ended_at - 0.05  # type: ignore[operator]
    assert second.queued is not None and second.queued >= 0.7
    assert second.duration == second.ended_at - second.started_at  # type: ignore[operator]
    assert second.duration < second.ended_at - second.submitted_at - 0.5  # type: ignore[operator]
    result = sv.read_json(os.path.join(second.handle.job_id, sv.RESULT))  # type: ignore[union-attr]
    assert result is not None and second.started_at == result["started_at"]


async def test_cancelling_a_whole_sweep_starts_no_waiting_point(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """All markers first (cancel_many): stopping the running points frees slots, and the
    pool must not hand them to the points being cancelled."""
    _, handles = await backend.submit_array(points(tmp_path, ["echo started; sleep 30"] * 6), 2)
    await until(backend, handles, lambda rs: rs[1].state is JobState.RUNNING, "running")
    await backend.cancel_many(handles)
    reports = await until(backend, handles, all_ended, "ended")
    assert [r.state for r in reports] == [JobState.CANCELLED] * 6
    started = [h for h in handles if log(h)]
    assert len(started) == 2, [r.reason for r in reports]  # only the two that were running
    for report in reports[2:]:
        assert report.reason == "cancelled before it started"
