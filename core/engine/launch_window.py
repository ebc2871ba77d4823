"""The launch window: between a backend starting a job and the store recording its handle.

A launcher killed there (SIGKILL, OOM, a closed laptop) used to leave a running job that the
store listed as UNSUBMITTED; ``cancel`` then said "cancelled before submission" while the job
went on to succeed. Three things close the window:

* **Hold, then release.** The engine submits every job *held* (``JobSpec.held``) and calls the
  backend's ``release(handle)`` only after the handle is recorded. The local supervisor waits
  for the release and, if its launcher dies first, records that the job was not run; Slurm
  submits with ``--hold`` and releases with ``scontrol release``.
* **Adopt by tag.** A job the store has no handle for may still exist: backends with
  ``find(run_tag, job_dir)`` look it up, and :func:`adopt` records the handle, so cancel
  stops the real job and the monitor reports its real state.
* **A crash point for tests.** :func:`crash_point` SIGKILLs the process at a named point when
  :data:`CRASH_ENV` names it; only tests set that variable.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from core.engine.states import JobState

if TYPE_CHECKING:
    from collections.abc import Callable

    from core.engine.protocol import Handle
    from core.store import ExperimentRecord, Store

#: Tests set this to a crash point's name to have the process SIGKILL itself there.
CRASH_ENV = "NEMORUN_TUI_TEST_CRASH_AT"
#: The monitor looks for unrecorded jobs only in experiments at least this old (a live
#: launcher records each handle within milliseconds of submitting), and at most once per
#: ``ADOPT_RETRY_SECONDS`` per job (a Slurm lookup costs scheduler calls).
ADOPT_AFTER_SECONDS = 30.0
ADOPT_RETRY_SECONDS = 60.0
#: Lookups per job per process: a launch that died before submitting has nothing to find.
ADOPT_TRIES = 3


def crash_point(name: str) -> None:
    """SIGKILL this process here if the test hook names this point (never set outside
    tests); ``<name>:stop`` SIGSTOPs it instead, to hold a live launcher in the window."""
    wanted = os.environ.get(CRASH_ENV)
    if wanted == name:
        os.kill(os.getpid(), signal.SIGKILL)
    elif wanted == f"{name}:stop":
        # Aimed at this thread, so the stop is taken on the way back from this very call
        # (a process-wide kill let another thread take it while this one ran on a little).
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)


def run_tag(exp_id: str, job_name: str) -> str:
    """The tag a job is submitted under (Slurm job name, local spec.json): unique per run."""
    return f"nrt-{exp_id}-{job_name}"


async def release(backend: Any, handle: Handle, store: Store, exp_id: str, job: str) -> None:
    """Let a held job start (backends that cannot hold have no ``release``: nothing to do).

    A failure is logged as an event, not raised: the job is recorded, so it is tracked, and
    the other jobs of the experiment must still be submitted. (A local job not released
    ends "not run" after its hold timeout; a Slurm job stays held, visible as PENDING.)
    """
    releaser = getattr(backend, "release", None)
    if releaser is None:
        return
    try:
        await releaser(handle)
    except Exception as exc:
        store.append_event(exp_id, {"kind": "release-failed", "job": job, "error": str(exc)})


async def find(backend: Any, store: Store, exp_id: str, job_name: str) -> Handle | None:
    """The handle of a job that was submitted but never recorded, if the backend has one."""
    finder = getattr(backend, "find", None)
    if finder is None:
        return None
    found: Handle | None = await finder(
        run_tag(exp_id, job_name), str(store.job_dir(exp_id, job_name))
    )
    return found


def record_adopted(store: Store, exp_id: str, job_name: str, handle: Handle) -> bool:
    """Record a found handle on a job that has none; False if someone recorded one first."""
    now = time.time()
    adopted = False

    def mutate(record: ExperimentRecord) -> bool:
        nonlocal adopted
        job = record.job(job_name)
        if job.handle is not None:
            return False
        job.handle = handle
        adopted = True
        if not job.state.is_terminal:
            job.state = JobState.SUBMITTED
            job.submitted_at = job.submitted_at or now
            job.observed_at = now
            job.source = "engine (found by run tag)"
            job.reason = "the launcher ended before recording this job; found by its run tag"
        return True

    store.update(exp_id, mutate)
    if adopted:
        store.append_event(exp_id, {"kind": "adopted", "job": job_name, "handle": str(handle)})
    return adopted


async def adopt(backend: Any, store: Store, exp_id: str, job_name: str) -> Handle | None:
    """Find and record the handle of an unrecorded job; returns the job's handle (or None)."""
    handle = await find(backend, store, exp_id, job_name)
    if handle is None:
        return None
    record_adopted(store, exp_id, job_name, handle)
    return store.load(exp_id).job(job_name).handle


def cancel_unsubmitted(store: Store, exp_id: str, job_name: str, reason: str) -> Handle | None:
    """Mark a job without a handle CANCELLED, atomically; if a handle was recorded meanwhile
    (its launcher is alive and just submitted it), change nothing and return that handle so
    the caller cancels the real job instead of reporting a cancel that did not happen."""
    now = time.time()
    found: Handle | None = None
    old: JobState | None = None

    def mutate(record: ExperimentRecord) -> bool:
        nonlocal found, old
        job = record.job(job_name)
        if job.handle is not None:
            found = job.handle
            return False
        if job.state.is_terminal:
            return False
        old = job.state
        job.state, job.reason, job.exit_code = JobState.CANCELLED, reason, None
        job.observed_at = job.ended_at = now
        job.source = "engine"
        return True

    store.update(exp_id, mutate)
    if old is not None:
        store.append_event(
            exp_id,
            {
                "kind": "state",
                "job": job_name,
                "from": old.value,
                "to": JobState.CANCELLED.value,
                "source": "engine",
                "reason": reason,
                "exit_code": None,
                "observed_at": now,
            },
        )
    return found


async def handle_to_cancel(backend: Any, store: Store, exp_id: str, job_name: str) -> Handle | None:
    """For ``cancel`` of a job the store has no handle for: the real job's handle if one
    exists (found by its run tag, or recorded meanwhile), else None after marking the job
    CANCELLED. So cancel never reports CANCELLED for a job that is running."""
    handle = await adopt(backend, store, exp_id, job_name)
    if handle is not None:
        return handle
    return cancel_unsubmitted(store, exp_id, job_name, "cancelled before submission")


class Adopter:
    """The monitor's sweep for jobs submitted by a launcher that died before recording them.

    Only experiments older than :data:`ADOPT_AFTER_SECONDS` are looked at (a live launcher
    records a handle within milliseconds), and each job at most once per
    :data:`ADOPT_RETRY_SECONDS`, :data:`ADOPT_TRIES` times (a Slurm lookup is two scheduler
    calls).
    """

    def __init__(self) -> None:
        self._tried: dict[tuple[str, str], tuple[float, int]] = {}

    async def sweep(
        self, store: Store, record: ExperimentRecord, backend_for: Callable[[str], Any]
    ) -> bool:
        """Adopt what can be found; True when a handle was recorded (reload the record)."""
        if time.time() - record.created_at < ADOPT_AFTER_SECONDS:
            return False
        adopted = False
        for job in record.jobs:
            if job.handle is not None or job.state is not JobState.UNSUBMITTED:
                continue
            key = (record.id, job.name)
            now = time.monotonic()
            last, tries = self._tried.get(key, (-ADOPT_RETRY_SECONDS, 0))
            if tries >= ADOPT_TRIES or now - last < ADOPT_RETRY_SECONDS:
                continue
            self._tried[key] = (now, tries + 1)
            try:
                handle = await find(backend_for(job.name), store, record.id, job.name)
            except Exception:  # a lookup that fails now is retried later; never fatal here
                continue
            if handle is not None and record_adopted(store, record.id, job.name, handle):
                adopted = True
                # Its launcher is gone, so nobody will release it: a held Slurm job would
                # wait in the queue for ever. Stop it, as a local one ends "not run".
                try:
                    await backend_for(job.name).cancel(handle)
                except Exception as exc:  # tracked anyway; the event says why it still waits
                    store.append_event(
                        record.id, {"kind": "cancel-failed", "job": job.name, "error": str(exc)}
                    )
        return adopted
