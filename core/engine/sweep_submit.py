"""A sweep whose points differ only in overrides is submitted as ONE array job.

Why: a 1,000-point sweep submitted job by job is 1,000 sbatch calls (the scheduler's
per-user RPC limits, minutes of submission, 1,000 entries in ``squeue``); as an array it is
one sbatch, and ``%`` (:attr:`core.engine.Plan.array_throttle`) caps how many run at once.
The local backend has the same capability: one pool process starting the points (throttled).

The engine calls :func:`submit_as_array` before its per-job loop. It applies when every job
is a sweep point (``PlannedJob.point``), no job depends on another, all share one executor
(same profile, same packaged code) and that executor's backend has the optional capability
``submit_array(specs, throttle) -> (array_handle, [task_handle, ...])``. Otherwise it does
nothing and the jobs are submitted one by one, as before.

The order of a launch is kept: the points are already recorded (UNSUBMITTED); the array is
submitted held, every task handle is recorded in one manifest write, and only then is the
array released.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from typing import TYPE_CHECKING, Any

from core.engine import launch_guard, launch_window, registry
from core.engine.launch_events import OnLaunchEvent, Submitted
from core.engine.protocol import BackendError, DryRun, Handle
from core.engine.states import JobState, StatusReport

if TYPE_CHECKING:
    from core.engine.engine import Engine, Plan, PlannedJob
    from core.store import ExperimentRecord

#: The job name under which the array itself is described (its script and logs folder).
ARRAY_NAME = "_array"


def array_jobs(plan: Plan) -> list[PlannedJob] | None:
    """The jobs to submit as one array, or None when the plan is not such a sweep."""
    jobs = plan.jobs
    if len(jobs) < 2 or plan.sequential:
        return None
    if any(j.point is None or j.dependencies for j in jobs):
        return None
    first = jobs[0].executor
    if getattr(first, "array", None):  # the user asked for an array of each job already
        return None
    key = json.dumps(first.to_dict(), sort_keys=True)
    sha = _package_sha(jobs[0])
    for job in jobs[1:]:
        if json.dumps(job.executor.to_dict(), sort_keys=True) != key or _package_sha(job) != sha:
            return None
    backend = registry.get_backend(first)
    if getattr(backend, "submit_array", None) is None:
        return None
    return list(jobs)


def _package_sha(job: PlannedJob) -> str | None:
    return getattr(job.package, "sha256", None) if job.package is not None else None


async def submit_as_array(engine: Engine, exp_id: str, plan: Plan, emit: OnLaunchEvent) -> set[str]:
    """Submit the plan's points as one array when it qualifies; the names it took care of."""
    jobs = array_jobs(plan)
    if jobs is None:
        return set()
    backend: Any = registry.get_backend(jobs[0].executor)  # has submit_array (array_jobs)
    workdir = os.getcwd()
    specs = []
    for job in jobs:
        spec = engine.job_spec(exp_id, job, {}, workdir, None)
        spec.held = True
        spec.env.update(launch_guard.job_env())
        specs.append(spec)
    names = [j.name for j in jobs]
    try:
        array_handle, handles = await backend.submit_array(specs, plan.array_throttle)
        if len(handles) != len(jobs):
            raise BackendError(f"the array has {len(handles)} tasks for {len(jobs)} points")
    except Exception as exc:
        detail = str(exc) if isinstance(exc, (BackendError, OSError)) else repr(exc)
        reason = f"submit failed: {detail}"
        report = StatusReport(state=JobState.FAILED, source="engine", reason=reason)
        engine.store.record_statuses(exp_id, dict.fromkeys(names, report))
        for name in names:
            emit(Submitted(name, JobState.FAILED, None, reason))
        return set(names)
    by_name = dict(zip(names, handles, strict=True))
    try:
        ended = _record_handles(engine, exp_id, by_name)
    except Exception as exc:  # a full disk: never leave an array running untracked
        with contextlib.suppress(Exception):
            await backend.cancel(array_handle)
        reason = f"submitted, but the handles could not be recorded (cancelled): {exc}"
        with contextlib.suppress(Exception):
            report = StatusReport(state=JobState.FAILED, source="engine", reason=reason)
            engine.store.record_statuses(exp_id, dict.fromkeys(names, report))
        for name in names:
            emit(Submitted(name, JobState.FAILED, None, reason))
        return set(names)
    for name in ended:  # cancelled while the array was being submitted
        with contextlib.suppress(Exception):
            await backend.cancel(by_name[name])
    await launch_window.release(backend, array_handle, engine.store, exp_id, ARRAY_NAME)
    for name, handle in by_name.items():
        state = JobState.CANCELLED if name in ended else JobState.SUBMITTED
        emit(
            Submitted(name, state, handle, "cancelled while submitting" if name in ended else None)
        )
    return set(names)


async def dryrun_array(engine: Engine, exp_id: str, plan: Plan) -> DryRun | None:
    """The one array submission a sweep would make (script, command, points), or None
    when the plan is not submitted as an array. Writes nothing."""
    jobs = array_jobs(plan)
    if jobs is None:
        return None
    backend: Any = registry.get_backend(jobs[0].executor)
    dry = getattr(backend, "dryrun_array", None)
    if dry is None:
        return None
    workdir = os.getcwd()
    specs = [engine.job_spec(exp_id, job, {}, workdir, None) for job in jobs]
    result: DryRun = await dry(specs, plan.array_throttle)
    return result


def _record_handles(engine: Engine, exp_id: str, handles: dict[str, Handle]) -> set[str]:
    """Every task handle in one manifest write (a 1,000-point sweep is not 1,000 rewrites of
    a 1,000-job manifest); returns the points that had already ended (cancelled)."""
    now = time.time()
    ended: set[str] = set()

    def mutate(record: ExperimentRecord) -> None:
        for job in record.jobs:
            handle = handles.get(job.name)
            if handle is None:
                continue
            job.handle = handle
            if job.state.is_terminal:
                ended.add(job.name)
                continue
            job.state = JobState.SUBMITTED
            job.submitted_at = now
            job.observed_at = now
            job.source = "engine"

    engine.store.update(exp_id, mutate)
    for name, handle in handles.items():
        engine.store.append_event(exp_id, {"kind": "submitted", "job": name, "handle": str(handle)})
    return ended


async def cancel_batched(engine: Engine, exp_id: str, targets: list[Any]) -> list[str]:
    """One ``cancel_many`` per backend for the live jobs that have handles, when a backend
    has it and holds several of them (a 1,000-point array is one scancel, not 1,000).

    Returns the names asked to stop; on any failure nothing is claimed and the engine
    cancels job by job as before.
    """
    groups: dict[int, tuple[Any, list[Any]]] = {}
    for rec in targets:
        if rec.state.is_terminal or rec.handle is None:
            continue
        backend = engine.backend_for(exp_id, rec.name)
        if getattr(backend, "cancel_many", None) is None:
            continue
        groups.setdefault(id(backend), (backend, []))[1].append(rec)
    asked: list[str] = []
    for backend, recs in groups.values():
        if len(recs) < 2:
            continue
        for rec in recs:
            engine.store.append_event(exp_id, {"kind": "cancel-requested", "job": rec.name})
        try:
            await backend.cancel_many([rec.handle for rec in recs])
        except Exception:  # the per-job path retries them and reports each failure
            continue
        asked.extend(rec.name for rec in recs)
    return asked


def throttle_problem(throttle: Any) -> str | None:
    """Why ``throttle`` is not a usable ``%`` limit (None: it is)."""
    if throttle is None:
        return None
    if isinstance(throttle, bool) or not isinstance(throttle, int) or throttle < 1:
        return f"the array throttle must be a whole number >= 1, not {throttle!r}"
    return None


def replace_point(job: PlannedJob, point: dict[str, Any]) -> PlannedJob:
    """A copy of ``job`` carrying ``point`` (relaunching failed points keeps their values)."""
    return dataclasses.replace(job, point=dict(point))
