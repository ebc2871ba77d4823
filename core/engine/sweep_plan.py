"""Sweeps as plans: one experiment, one job per point (core.sweep), and their relaunch.

Every point's task is built and checked (:func:`core.sweep.check_points`) before the plan
exists, so a bad value anywhere stops the sweep before anything is written. Each job carries
its point (values, overrides, mode, throttle) as ``point.json``: the sweep view shows the
varying values from it, and relaunching the failed points keeps them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.engine.engine import POINT_FILE, LaunchError, Plan, PlannedJob
from core.engine.states import JobState
from core.engine.sweep_submit import throttle_problem
from core.sweep import SweepMode, SweepParam, check_points, expand, parse_param

if TYPE_CHECKING:
    from core.engine.engine import Engine
    from core.engine.executors import ExecutorProfile

#: Experiments that are sweeps carry this tag (listings and the app tell them apart).
SWEEP_TAG = "sweep"
#: States whose points ``relaunch --failed`` runs again.
RELAUNCHED_STATES = (JobState.FAILED, JobState.CANCELLED)


def task_sweep_plan(
    task: Any,
    params: Sequence[SweepParam],
    executor: ExecutorProfile,
    *,
    title: str,
    mode: SweepMode = "grid",
    throttle: int | None = None,
    factories: Mapping[str, Callable[[], Any]] | None = None,
    base_name: str = "point",
    tags: Sequence[str] = (),
) -> Plan:
    """The plan of a sweep over ``task``; raises before returning if any point is bad."""
    problem = throttle_problem(throttle)
    if problem:
        raise LaunchError(problem)
    points = expand(params, mode, base_name=base_name)
    tasks = check_points(task, points, factories=factories)
    plan = Plan(title=title, tags=[*tags, *([SWEEP_TAG] if SWEEP_TAG not in tags else [])])
    plan.array_throttle = throttle
    for point, point_task in zip(points, tasks, strict=True):
        plan.add(point_task, executor, name=point.name)
        plan.jobs[-1].point = point.to_dict(mode, throttle)
    return plan


def recipe_sweep_plan(
    engine: Engine,
    workspace: Any,
    recipe: str,
    items: Sequence[str],
    *,
    profile: str | None = None,
    title: str | None = None,
    mode: SweepMode = "grid",
    throttle: int | None = None,
) -> Plan:
    """``run RECIPE -m a=1,2 b=x,y``: the recipe built once, swept over ``items``.

    Imports user code (the recipe), like :meth:`Engine.recipe_plan`.
    """
    from core.nemo_compat import expand_override_files

    found = workspace.get(recipe)
    items = expand_override_files(items)  # `@file.yaml`: its fields, in place
    params = [parse_param(text) for text in items]
    plan = task_sweep_plan(
        found.make(),
        params,
        engine.profile(profile),
        title=title or found.name,
        mode=mode,
        throttle=throttle,
        factories=workspace.factories,
        base_name=found.name,
    )
    plan.workspace = workspace.source or None
    plan.recipe = found.name
    plan.overrides = list(items)
    return plan


def stored_point(engine: Engine, exp_id: str, job: str) -> dict[str, Any] | None:
    """A job's point.json, or None (not a sweep point, or the file is unreadable)."""
    try:
        data = json.loads(engine.store.read_job_file(exp_id, job, POINT_FILE))
    except (FileNotFoundError, ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None


def failed_points_plan(
    engine: Engine,
    exp_id: str,
    overrides: Sequence[str] = (),
    *,
    executor: str | None = None,
    repackage: bool = False,
) -> Plan:
    """A child experiment running again only the FAILED and CANCELLED jobs (points).

    Their stored tasks are reused as they are (no user code imported unless ``overrides``
    change them); dependencies on jobs that are not run again are dropped, since those have
    already ended.
    """
    record = engine.store.load(exp_id)
    again = [j.name for j in record.jobs if j.state in RELAUNCHED_STATES]
    if not again:
        states = ", ".join(sorted({j.state.value for j in record.jobs})) or "no jobs"
        raise LaunchError(f"{exp_id} has no failed or cancelled jobs to relaunch ({states})")
    full = engine.relaunch_plan(exp_id, overrides, executor=executor, repackage=repackage)
    keep = set(again)
    jobs: list[PlannedJob] = []
    throttle = None
    for job in full.jobs:
        if job.name not in keep:
            continue
        job.dependencies = [d for d in job.dependencies if d in keep]
        job.point = stored_point(engine, exp_id, job.name)
        if job.point is not None and throttle is None:
            value = job.point.get("throttle")
            throttle = value if throttle_problem(value) is None else None
        jobs.append(job)
    full.jobs = jobs
    full.array_throttle = throttle
    return full


# -- the sweep view's table (no UI here: the app renders it) ----------------------------------
#: Asked for a job's last value of the chosen metric; None until metrics exist (another
#: issue), then the app passes a reader of the job's recorded metrics.
MetricOf = Callable[[str, str], float | None]


@dataclass
class SweepRow:
    job: str
    values: dict[str, str]
    state: JobState
    duration: float | None
    metric: float | None = None


@dataclass
class SweepTable:
    """One row per point: the varying values (``columns``), state, duration and metric."""

    exp_id: str
    columns: list[str]
    rows: list[SweepRow]

    def sorted_by(self, column: str, *, reverse: bool = False) -> list[SweepRow]:
        """Rows ordered by a value column, ``state``, ``duration`` or ``metric``; numbers
        compare as numbers, and rows without a value go last either way."""

        def key(row: SweepRow) -> tuple[int, Any]:
            if column == "state":
                return (0, (row.state.value,))
            raw: Any = {"duration": row.duration, "metric": row.metric}.get(
                column, row.values.get(column)
            )
            if raw is None or raw == "":
                return (1, ())
            try:
                return (0, (0, float(raw), ""))
            except (TypeError, ValueError):
                return (0, (1, 0.0, str(raw)))

        present = [r for r in self.rows if key(r)[0] == 0]
        missing = [r for r in self.rows if key(r)[0] == 1]
        return sorted(present, key=lambda r: key(r)[1], reverse=reverse) + missing


def sweep_table(engine: Engine, exp_id: str, metric_of: MetricOf | None = None) -> SweepTable:
    """The sweep view's rows; jobs without a point.json show their name as the only value."""
    record = engine.store.load(exp_id)
    columns: list[str] = []
    rows = []
    for job in record.jobs:
        point = stored_point(engine, exp_id, job.name)
        values = point.get("values") if point else None
        if not isinstance(values, dict):
            values = {"job": job.name}
        shown = {str(k): str(v) for k, v in values.items()}
        for key in shown:
            if key not in columns:
                columns.append(key)
        metric = metric_of(exp_id, job.name) if metric_of is not None else None
        rows.append(SweepRow(job.name, shown, job.state, job.duration, metric))
    return SweepTable(exp_id, columns, rows)
