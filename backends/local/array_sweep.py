"""A local sweep as one pool: every point prepared at once, started at most N at a time.

The launcher's side of :mod:`backends.local.pool` (the optional ``submit_array`` capability
that core.engine.sweep_submit uses for sweeps). Each point gets the run directory, spec and
log files a job submitted alone gets, but no supervisor yet: one pool process starts them
as slots free up. ``throttle`` None means one slot per CPU of this machine.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from backends.local import pool as pl
from backends.local import supervisor as sv
from core.engine import launch_guard
from core.engine.protocol import BackendError, DryRun, Handle, JobSpec
from core.fsutil import file_lock, makedirs_exact

if TYPE_CHECKING:
    from backends.local.backend import LocalBackend

#: The sweep's own folder, next to its points' folders (as a Slurm array's).
ARRAY_NAME = "_array"
POOL_SCRIPT = str(Path(pl.__file__).resolve())


def default_throttle() -> int:
    """Points running at once when the sweep does not say: one per CPU we may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def array_dir(specs: list[JobSpec]) -> str:
    return str(Path(os.path.abspath(specs[0].job_dir)).parent.parent / ARRAY_NAME)


def _check(specs: list[JobSpec]) -> None:
    if not specs:
        raise BackendError("a sweep needs at least one point")
    secrets = specs[0].secret_env
    if any(s.secret_env != secrets for s in specs):
        raise BackendError("the points of one local sweep must share their secret env")


def dryrun_array(backend: LocalBackend, specs: list[JobSpec], throttle: int | None) -> DryRun:
    """Every point's command, and how many run at once; writes nothing."""
    _check(specs)
    limit = throttle or default_throttle()
    lines = []
    for spec in specs:
        rendered = backend._render_spec(
            dataclasses.replace(spec, held=False), own_dir=os.path.abspath(spec.job_dir), dry=True
        )
        lines.append(f"{spec.job_name}: {shlex.join(rendered['argv'])}")
    summary = (
        f"{len(specs)} points on this machine, at most {limit} at once"
        + (" (one per CPU; --throttle N to change)" if throttle is None else "")
        + f"; one pool process starts them; sweep folder {array_dir(specs)}"
    )
    return DryRun(backend="local", summary=summary, artifacts={"points": "\n".join(lines) + "\n"})


def submit_array(
    backend: LocalBackend, specs: list[JobSpec], throttle: int | None
) -> tuple[Handle, list[Handle]]:
    """Prepare every point, then start the held pool; (pool handle, point handles)."""
    _check(specs)
    limit = throttle or default_throttle()
    root = Path(array_dir(specs))
    makedirs_exact(root)
    makedirs_exact(root / sv.LOGS)
    with file_lock(root / ".submit.lock"):
        if (root / pl.POOL).exists():
            raise BackendError(f"{root} already holds a submitted sweep")
        code_dir = None
        if specs[0].archive:  # one extraction for every point (they share the package)
            from backends.local.backend import _extract_code

            code_dir = _extract_code(specs[0], root / "code")
        handles, dirs = [], []
        for spec in specs:
            point = dataclasses.replace(spec, held=False)  # the pool is what is held
            if code_dir:
                point = dataclasses.replace(point, workdir=code_dir)
            dirs.append(_prepare_point(backend, point, str(root), limit))
            handles.append(Handle(backend.name, "local", dirs[-1]))
        pool = {"schema": sv.SCHEMA, "points": dirs, "throttle": limit}
        if specs[0].held:
            pool["hold"] = {
                "launcher": sv.identity(os.getpid()),
                "boot_id": sv.boot_id(),
                "timeout_seconds": sv.HOLD_TIMEOUT_SECONDS,
            }
        sv.write_json(str(root / pl.POOL), pool, durable=True)
        pid = _spawn_pool(backend, specs[0], root)
        pids = sv.started_record(pid, "held" if specs[0].held else "starting")
        sv.write_json(str(root / sv.PIDS), pids, durable=False, exclusive=True)
    return Handle(backend.name, "local", str(root)), handles


def _prepare_point(backend: LocalBackend, spec: JobSpec, pool_dir: str, limit: int) -> str:
    from backends.local.backend import _launch_env, _touch_private, job_vars

    run_dir = os.path.abspath(spec.job_dir)
    rendered = backend._render_spec(spec, own_dir=run_dir)
    if not os.path.isdir(rendered["workdir"]):
        raise BackendError(f"workdir {rendered['workdir']} does not exist")
    root = Path(run_dir)
    makedirs_exact(root)
    makedirs_exact(root / sv.LOGS)
    if (root / sv.PIDS).exists() or (root / sv.RESULT).exists() or (root / sv.POOLED).exists():
        raise BackendError(f"{run_dir} already holds a submitted job")
    sv.write_json(str(root / sv.SPEC), rendered, durable=True)
    for stream in sv.STREAMS.values():
        _touch_private(root / sv.LOGS / stream)
    env = {**spec.env, **_launch_env(spec), **job_vars(spec, root)}
    pooled = {
        "schema": sv.SCHEMA,
        "pool": pool_dir,
        "throttle": limit,
        "env": {k: v for k, v in env.items() if k not in spec.secret_env},
    }
    sv.write_json(str(root / sv.POOLED), pooled, durable=True)
    return run_dir


def _spawn_pool(backend: LocalBackend, first: JobSpec, root: Path) -> int:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(launch_guard.job_env())
    env.update(first.secret_env)  # only in memory and the process environment, never on disk
    try:
        pid = sv.spawn_detached(POOL_SCRIPT, str(root), env, str(root / sv.LOGS / "pool.log"))
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot start the sweep's pool process: {exc}") from exc
    backend._spawned.add(pid)
    return pid
