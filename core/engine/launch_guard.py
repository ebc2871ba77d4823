"""Launches from inside a job: skipped while a job imports its task, refused unless opted in.

Why this exists: a job runs a task defined in the user's script, so the job process imports
that script. A script that calls ``run.run(...)`` or ``exp.run()`` at top level, without an
``if __name__ == "__main__":`` guard (the shape of the README's own example), would launch
again on every import: one launch per job, forever (540 experiments in 10 minutes locally; on
a shared cluster, a flood). Three rules stop it, whatever the backend:

* Every job's environment carries :data:`DEPTH_ENV` (the launcher's depth + 1), set by the
  engine in each JobSpec, so the local supervisor, the sbatch script and Scripts all see it.
* While the job runner imports the task's modules (:func:`importing_task`), a launch call does
  not launch: the API returns a stand-in record (see :func:`skipped_record`) and warns once,
  naming the fix.
* Any other launch from inside a job (depth >= 1) is refused (the engine raises
  ``LaunchError`` with :func:`launch_problem`'s message) unless the job opted in
  (``NEMORUN_TUI_ALLOW_NESTED=1`` or :func:`allow_nested_launch`); even then, no job is
  launched deeper than :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the job runner imports this module: no project imports at run time
    from types import FrameType

    from core.engine import Plan
    from core.store import ExperimentRecord

#: How deep this process is: unset or 0 outside jobs, 1 in a job, 2 in a job's job…
DEPTH_ENV = "NEMORUN_TUI_DEPTH"
#: Set to ``1`` to let a job launch more jobs (still bounded by MAX_DEPTH).
ALLOW_NESTED_ENV = "NEMORUN_TUI_ALLOW_NESTED"
#: Set to ``1`` in a process that only imports user code (e.g. to inspect a workspace):
#: every launch in it is skipped, as during a job's task import.
IMPORT_ONLY_ENV = "NEMORUN_TUI_IMPORT_ONLY"
#: The deepest a job may be: a launch that would create a job deeper than this is refused.
MAX_DEPTH = 3

FIX = (
    'put the launch under `if __name__ == "__main__":` in the script that defines the task, '
    "so that a job importing the script does not launch it again"
)


class SelfLaunchWarning(UserWarning):
    """A launch call made while a job imported its own task module; it did not launch."""


_importing: list[str] = []  # what is being imported (a stack; normally 0 or 1 entries)
_allowed = False
_warned = False


def allow_nested_launch(allowed: bool = True) -> None:
    """Opt in: this job process may launch more jobs (up to :data:`MAX_DEPTH` deep).

    Only launches made while the task *runs* count; one made while the job imports the
    task's module is still skipped (that is the self-launch this module prevents).
    """
    global _allowed
    _allowed = allowed


def current_depth() -> int | None:
    """This process's depth from :data:`DEPTH_ENV` (0 when unset); None when the value is not
    a small non-negative integer (then nobody can tell, and launching is refused)."""
    raw = os.environ.get(DEPTH_ENV, "").strip()
    if not raw:
        return 0
    if not raw.isdigit() or len(raw) > 3:
        return None
    return int(raw)


def job_env() -> dict[str, str]:
    """The variables every job's environment carries (its depth)."""
    depth = current_depth()
    return {DEPTH_ENV: str((MAX_DEPTH if depth is None else depth) + 1)}


@contextlib.contextmanager
def importing_task(what: str) -> Iterator[None]:
    """While the body runs, launches are skipped: a job is importing its task's modules."""
    _importing.append(what)
    try:
        yield
    finally:
        _importing.pop()


def in_task_import() -> bool:
    """True while a job imports its task (or in an import-only process)."""
    return bool(_importing) or os.environ.get(IMPORT_ONLY_ENV) == "1"


def _nested_allowed() -> bool:
    return _allowed or os.environ.get(ALLOW_NESTED_ENV) == "1"


def launch_problem() -> str | None:
    """Why a launch from this process must not go ahead, or None when it may.

    The engine raises ``LaunchError`` with this message before recording anything, so a
    refused launch leaves no trace in the store.
    """
    if in_task_import():
        what = _importing[-1] if _importing else f"{IMPORT_ONLY_ENV}=1"
        return f"not launching: this process is importing a job's task ({what}); {FIX}"
    depth = current_depth()
    if depth is None:
        raw = os.environ.get(DEPTH_ENV, "")[:20]
        return (
            f"not launching: {DEPTH_ENV}={raw!r} is not a job depth (a small integer), so "
            "how deeply this process is nested cannot be told"
        )
    if depth == 0:
        return None
    if not _nested_allowed():
        return (
            f"not launching from inside a nemorun-tui job (depth {depth}): a job may launch "
            f"jobs only if it opts in with {ALLOW_NESTED_ENV}=1 or run.allow_nested_launch(); "
            f"if this is a script launching itself again, {FIX}"
        )
    if depth + 1 > MAX_DEPTH:
        return (
            f"not launching: a job at depth {depth} may not launch deeper jobs (at most "
            f"{MAX_DEPTH} levels, even with {ALLOW_NESTED_ENV}=1)"
        )
    return None


def _caller() -> tuple[str, int]:
    """The first frame outside this project's own packages: where the user called run()."""
    # This file is <root>/core/engine/launch_guard.py.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ours = tuple(os.path.join(root, pkg) + os.sep for pkg in ("core", "nemorun_tui"))
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(ours):
            return filename, frame.f_lineno
        frame = frame.f_back
    return "<unknown>", 0


def warn_skipped(call: str) -> None:
    """Warn (once per process) that ``call`` did not launch because of a task import."""
    global _warned
    if _warned:
        return
    _warned = True
    filename, line = _caller()
    what = _importing[-1] if _importing else "user code"
    warnings.warn_explicit(
        f"nemorun-tui: {call} was called while this job imports {what}; it did not launch "
        f"(it returns a stand-in record, and status()/logs() on it return nothing). Fix: {FIX}.",
        SelfLaunchWarning,
        filename,
        line,
    )


def skipped_record(plan: Plan, reason: str) -> ExperimentRecord:
    """A stand-in for a launch that was skipped: stored nowhere, every job UNSUBMITTED.

    Returned instead of raising, so the rest of a script's top-level code (printing the
    record, reading its state) keeps working while the job imports it.
    """
    from core.engine.engine import _kind
    from core.store import ExperimentRecord, JobRecord

    jobs = [
        JobRecord(
            name=j.name,
            kind=_kind(j.task),
            backend=j.executor.backend,
            profile=j.executor.profile_name,
            reason=reason,
            dependencies=list(j.dependencies),
        )
        for j in plan.jobs
    ]
    return ExperimentRecord(id="not-launched", title=plan.title, created_at=time.time(), jobs=jobs)
