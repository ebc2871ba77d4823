"""Retries: ``retries=N`` on a profile re-submits a failed job up to N times.

Why here and not in a backend: every backend fails differently, but "try again" is the
same decision everywhere, and it must be recorded the same way. The monitor hands each
tick's reports to :func:`retry_failed` before recording them; a FAILED report of a job that
has attempts left (and whose cancel nobody asked for) is not recorded as the job's end:
the attempt is kept in the job's ``attempts`` (number, handle, exit code, reason, times) and
a new submission takes its place, so the job's state is always its last attempt's.

A cancelled job is never retried (CANCELLED is not FAILED, and a cancel asked while the
attempt was failing counts too). Slurm requeues (``scontrol requeue``, NODE_FAIL and
PREEMPTED with ``--requeue``) keep the job's id and come back as ``restarts`` of the same
attempt: they are not failures and use no retry.

Each attempt runs in its own job folder (``<job dir>/attempt-<n>``) under its own run tag
(``<tag>-a<n>``), because backends keep one submission per folder and tag (that is what
makes a submit idempotent); the task file and packaged code are the recorded ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from core.engine import launch_guard, launch_window, registry
from core.engine.states import JobState, StatusReport
from core.store.records import Attempt

if TYPE_CHECKING:
    from core.engine.engine import Engine
    from core.engine.protocol import Handle
    from core.store import ExperimentRecord, JobRecord


async def retry_failed(
    engine: Engine, exp_id: str, reports: dict[str, StatusReport]
) -> dict[str, StatusReport]:
    """The reports to record: FAILED ones of jobs that were re-submitted are taken out."""
    failed = [name for name, r in reports.items() if r.state is JobState.FAILED]
    if not failed:
        return reports
    record = engine.store.load(exp_id)
    out = dict(reports)
    for name in failed:
        job = record.job(name)
        if job.state.is_terminal or job.handle is None:
            continue
        try:
            profile = engine.executor_of(exp_id, name)
            retries = int(profile.retries or 0)
        except (OSError, ValueError):
            continue
        if retries_natively(profile.backend):
            continue  # its scheduler retried already (its restarts); a second layer would square
        if job.attempt > retries or _cancel_requested(engine, exp_id, job):
            continue
        report = reports[name]
        try:
            await resubmit(engine, exp_id, job, report)
        except Exception as exc:  # the failure stays recorded, with why no retry followed
            why = f"retry {job.attempt + 1} of {retries + 1} not submitted: {exc}"
            out[name] = dataclasses.replace(
                report, reason=f"{report.reason}; {why}" if report.reason else why
            )
            continue
        del out[name]
    return out


def retries_natively(backend: str) -> bool:
    """Whether the backend's scheduler re-runs a failed job itself (``retries`` becomes e.g.
    a Kubernetes Job's ``backoffLimit``, retried even while nobody watches). The engine then
    never re-submits: the scheduler's re-runs show as the job's ``restarts``."""
    from core.engine import registry

    try:
        return bool(getattr(registry.backend_class(backend), "retries_natively", False))
    except registry.UnknownBackendError:
        return False


def _cancel_requested(engine: Engine, exp_id: str, job: JobRecord) -> bool:
    since = job.submitted_at or 0.0
    for event in engine.store.events(exp_id):
        if event.get("kind") == "cancel-requested" and event.get("job") == job.name:
            t = event.get("t")
            if isinstance(t, int | float) and t >= since - 1.0:
                return True
    return False


async def resubmit(engine: Engine, exp_id: str, job: JobRecord, failed: StatusReport) -> Handle:
    """Submit the next attempt of ``job`` (held, released once recorded), return its handle."""
    from core.engine.engine import PlannedJob

    number = job.attempt + 1
    record = engine.store.load(exp_id)
    profile = engine.executor_of(exp_id, job.name)
    planned = PlannedJob(
        name=job.name,
        task=engine.stored_task(exp_id, job.name),
        executor=profile,
        dependencies=list(job.dependencies),
        package=engine.recorded_package(exp_id, job.name),
    )
    if engine.provenance_of(exp_id, job.name) and planned.package is None:
        raise RuntimeError("its packaged code is no longer in the package cache")
    handles = _dependency_handles(record, job)
    spec = engine.job_spec(exp_id, planned, handles, job.workdir or str(Path.cwd()))
    spec.job_dir = str(Path(spec.job_dir) / f"attempt-{number}")
    spec.run_tag = f"{spec.run_tag}-a{number}"
    spec.held = True
    spec.env.update(launch_guard.job_env())
    backend = registry.get_backend(profile)
    handle = await backend.submit(spec)
    try:
        alive = _record_attempt(engine, exp_id, job.name, number, handle, failed)
    except Exception:
        with contextlib.suppress(Exception):
            await backend.cancel(handle)
        raise
    if not alive:
        await backend.cancel(handle)
        return handle
    await launch_window.release(backend, handle, engine.store, exp_id, job.name)
    return handle


def _dependency_handles(record: ExperimentRecord, job: JobRecord) -> dict[str, Handle]:
    return {
        other.name: other.handle
        for other in record.jobs
        if other.name in job.dependencies and other.handle is not None
    }


def _record_attempt(
    engine: Engine, exp_id: str, name: str, number: int, handle: Handle, failed: StatusReport
) -> bool:
    """Keep the failed attempt, make the new one current; False if the job ended meanwhile."""
    now = time.time()
    alive = True
    previous: dict[str, object] = {}

    def mutate(record: ExperimentRecord) -> None:
        nonlocal alive
        job = record.job(name)
        if job.state.is_terminal:
            alive = False
            return
        previous["handle"] = str(job.handle)
        job.attempts.append(
            Attempt(
                number=job.attempt,
                handle=job.handle,
                state=failed.state,
                exit_code=failed.exit_code,
                reason=failed.reason,
                submitted_at=job.submitted_at,
                ended_at=failed.end_time(),
                restarts=max(job.restarts, failed.restarts),
            )
        )
        job.handle = handle
        job.state = JobState.SUBMITTED
        job.reason = f"attempt {number} (retry after: {failed.reason or 'failed'})"
        job.exit_code = None
        job.restarts = 0
        job.submitted_at = now
        job.ended_at = None
        job.started_at = None
        job.observed_at = now
        job.source = "engine:retry"
        job.last_output_at = None
        job.log_bytes = None
        job.stalled = False

    engine.store.update(exp_id, mutate)
    if alive:
        engine.store.append_event(
            exp_id,
            {
                "kind": "retry",
                "job": name,
                "attempt": number,
                "handle": str(handle),
                "previous": previous.get("handle"),
                "exit_code": failed.exit_code,
                "reason": failed.reason,
            },
        )
    return alive
