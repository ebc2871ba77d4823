"""A sweep as one Slurm array job: one sbatch for every point (core.engine.sweep_submit).

Each point keeps its own job folder and task file, exactly as if it had been submitted
alone; what changes is who starts it. The array's script runs ``points.sh``, which picks
the point of ``$SLURM_ARRAY_TASK_ID`` and ``exec``s its command with that point's job name,
run tag and job dir in the environment. Task ``i`` is point ``i``; its handle is
``<array id>_<i>``, which squeue/sacct/scancel address directly, and its logs and exit
code are the array's ``slurm-<id>_<i>.out|err`` and ``exitcode-<id>_<i>``.

Everything in ``points.sh`` comes from the engine's JobSpecs and is quoted with
:func:`shlex.quote`: the values a user swept never become shell code.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.slurm.script import remote_job_dir, render
from core.engine.executors import SlurmExecutor
from core.engine.launch_window import run_tag
from core.engine.protocol import BackendError, DryRun, Handle, JobSpec
from core.transport import TransportError

if TYPE_CHECKING:
    from backends.slurm.backend import SlurmBackend

#: The array's own folder, next to the points' folders (``<job_dir>/<exp>/_array``).
ARRAY_NAME = "_array"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def array_spec(specs: list[JobSpec], throttle: int | None) -> JobSpec:
    """The one JobSpec submitted for all points: ``bash points.sh`` with ``--array``."""
    first = specs[0]
    executor = first.executor
    if not isinstance(executor, SlurmExecutor):
        raise BackendError(f"a Slurm array needs a SlurmExecutor, got {type(executor).__name__}")
    array = f"0-{len(specs) - 1}" + (f"%{throttle}" if throttle else "")
    arr_exec = dataclasses.replace(executor, array=array)
    local_dir = str(Path(first.job_dir).parent.parent / ARRAY_NAME)
    spec = JobSpec(
        experiment_id=first.experiment_id,
        job_name=ARRAY_NAME,
        run_tag=run_tag(first.experiment_id, ARRAY_NAME),
        argv=["bash"],
        executor=arr_exec,
        job_dir=local_dir,
        workdir=first.workdir,
        env={k: v for k, v in first.env.items() if all(s.env.get(k) == v for s in specs)},
        secret_env=dict(first.secret_env),
        archive=first.archive,
        archive_sha256=first.archive_sha256,
        progress=first.progress,
        held=first.held,
    )
    spec.argv = ["bash", posixpath.join(remote_job_dir(arr_exec, spec), "points.sh")]
    return spec


def points_script(specs: list[JobSpec], point_argvs: list[list[str]], dirs: list[str]) -> str:
    """``case $SLURM_ARRAY_TASK_ID`` → the point's environment and command."""
    lines = [
        "#!/bin/bash",
        f"# nemorun-tui: {len(specs)} sweep points of experiment "
        + specs[0].experiment_id.replace("\n", " ")
        + ", one per array task",
        'case "${SLURM_ARRAY_TASK_ID:-}" in',
    ]
    for index, (spec, argv, job_dir) in enumerate(zip(specs, point_argvs, dirs, strict=True)):
        env = {
            **spec.env,
            "NEMORUN_JOB_NAME": spec.job_name,
            "NEMORUN_RUN_TAG": spec.run_tag,
            "NEMORUN_JOB_DIR": job_dir,
        }
        lines.append(f"  {index})")
        for name, value in env.items():
            if not _ENV_NAME.match(name):
                raise BackendError(f"invalid environment variable name {name!r}")
            if name in spec.secret_env:
                continue
            lines.append(f"    export {name}={shlex.quote(str(value))}")
        lines.append(f"    exec {shlex.join(str(a) for a in argv)} ;;")
    lines.append(
        '  *) echo "nemorun-tui: no sweep point for array task ${SLURM_ARRAY_TASK_ID:-?}" >&2;'
        " exit 2 ;;"
    )
    lines.append("esac")
    return "\n".join(lines) + "\n"


def dryrun_array(specs: list[JobSpec], throttle: int | None) -> DryRun:
    """What :func:`submit_array` would write and run, with no side effects."""
    spec = array_spec(specs, throttle)
    executor = spec.executor
    assert isinstance(executor, SlurmExecutor)
    rendered = render(executor, spec)
    points = [render(_slurm(p), p) for p in specs]
    script = points_script(specs, [r.argv for r in points], [r.job_dir for r in points])
    summary = (
        f"ONE sbatch for {len(specs)} points: array {executor.array}; job dir {rendered.job_dir}"
    )
    artifacts = {
        "sbatch.sh": rendered.script,
        "points.sh": script,
        "command": shlex.join(rendered.sbatch_argv),
    }
    return DryRun(backend="slurm", summary=summary, artifacts=artifacts)


def _slurm(spec: JobSpec) -> SlurmExecutor:
    if not isinstance(spec.executor, SlurmExecutor):
        raise BackendError(
            f"a Slurm array needs a SlurmExecutor, got {type(spec.executor).__name__}"
        )
    return spec.executor


async def submit_array(
    backend: SlurmBackend, specs: list[JobSpec], throttle: int | None
) -> tuple[Handle, list[Handle]]:
    """Prepare every point's folder and task file, then ONE sbatch; (array, task handles)."""
    if not specs:
        raise BackendError("an array needs at least one point")
    spec = array_spec(specs, throttle)
    executor = backend._executor_of(spec)
    t = backend.transport()
    argvs, dirs = [], []
    try:
        for point in specs:
            rendered = render(backend._executor_of(point), point)
            await t.makedirs(rendered.job_dir)
            if rendered.task_upload is not None:
                local, remote = rendered.task_upload
                await t.put(Path(local), remote)
            argvs.append(rendered.argv)
            dirs.append(rendered.job_dir)
        array_dir = remote_job_dir(executor, spec)
        await t.makedirs(array_dir)
        await t.write(
            posixpath.join(array_dir, "points.sh"),
            points_script(specs, argvs, dirs).encode(),
            0o700,
        )
    except TransportError as exc:
        raise BackendError(f"cannot prepare the sweep's points: {exc}") from exc
    handle = await backend.submit(spec)
    tasks = [
        Handle(handle.backend, handle.target, f"{handle.job_id}_{i}") for i in range(len(specs))
    ]
    return handle, tasks


async def unsplit_tasks(
    backend: SlurmBackend, handles: list[Handle], known: dict[str, Any]
) -> dict[str, Any]:
    """Rows for array-task handles (``<id>_<i>``) that neither squeue nor sacct lists.

    A task that never started (cancelled, or its array ended, while it was still pending)
    gets no record of its own: sacct keeps one record under the array's bare id for all
    of them. Each such task takes that record's (terminal) state, so a cancelled sweep
    point reads CANCELLED instead of UNKNOWN. One sacct call, and only while such tasks
    exist.
    """
    from backends.slurm import parse
    from backends.slurm.backend import SACCT_ENV

    missing = [
        h
        for h in handles
        if "_" in h.job_id
        and h.job_id not in known
        and parse.is_job_id(h.job_id)
        and not any(getattr(r, "array_job", None) == h.job_id for r in known.values())
    ]
    if not missing:
        return {}
    bases = sorted({parse.array_job_of(h.job_id) for h in missing}, key=int)
    rc, out, _ = await backend._run(
        ["sacct", "-n", "-P", "-X", "-D", "-j", ",".join(bases), "-o", parse.SACCT_FORMAT],
        env=SACCT_ENV,
    )
    if rc != 0:
        return {}
    rows = parse.group_by_key(parse.parse_sacct(out, names=backend._names))
    found: dict[str, Any] = {}
    for h in missing:
        base = parse.array_job_of(h.job_id)
        own = rows.get(h.job_id)
        if own is not None:
            # The pending remainder's record (``<id>_[2-5%2]``), which asking for the tasks
            # by id does not return but asking for the array does; it names this task.
            if own.state.is_terminal:
                found[h.job_id] = dataclasses.replace(
                    own,
                    key=h.job_id,
                    started_at=None,
                    reason=own.reason
                    or f"never started: the array's pending tasks ended {own.slurm_state}",
                )
            continue
        row = rows.get(base)
        if row is None or row.array_job is not None or not row.state.is_terminal:
            continue
        found[h.job_id] = dataclasses.replace(
            row,
            key=h.job_id,
            array_job=base,
            started_at=None,
            reason=f"never started: the array's pending tasks ended {row.slurm_state}",
        )
    return found
