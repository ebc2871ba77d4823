"""``run.sweep(task, {"optimizer.lr": [1e-3, 3e-4], "seed": "range(0,3)"})``: the Python
side of ``nemorun-tui run RECIPE -m ...`` (same expansion, same checks, same array job).

It returns the launched :class:`core.engine.experiment.Experiment` rather than raising on
a failed point: a sweep with some failed points is a normal outcome, to be looked at and
relaunched (``nemorun-tui relaunch EXP --failed``), not an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.engine.executors import ExecutorProfile
from core.engine.experiment import Experiment
from core.engine.sweep_plan import task_sweep_plan
from core.sweep import SweepMode, params_from_mapping


def sweep(
    task: Any,
    values: Mapping[str, Any],
    executor: ExecutorProfile | None = None,
    *,
    mode: SweepMode = "grid",
    title: str | None = None,
    throttle: int | None = None,
    detach: bool = False,
    dryrun: bool = False,
    home: str | Path | None = None,
) -> Experiment:
    """Run ``task`` once per point of ``values`` as one experiment; returns it.

    ``values`` maps dotted paths to a list of values, a sweep string (``"1,2"``,
    ``"range(0,10,2)"``, ``"choice(a,b)"``) or one value. ``mode="zip"`` pairs the lists
    instead of crossing them. On Slurm the points become one array job, locally one pool
    (``throttle``: at most that many at once; locally one per CPU by default). Every point
    is checked before anything is written.
    """
    from core.engine import task_name

    name = task_name(task)
    exp = Experiment(title or name, executor, home=home)
    profile = executor or exp.engine.profile()
    exp.plan = task_sweep_plan(
        task,
        params_from_mapping(values),
        profile,
        title=exp.plan.title,
        mode=mode,
        throttle=throttle,
        base_name=name,
    )
    if dryrun:
        exp.dryrun()
        return exp
    exp.run(detach=detach)
    return exp
