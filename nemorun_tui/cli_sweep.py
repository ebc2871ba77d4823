"""The sweep parts of the CLI: ``run RECIPE -m a=1,2 b=x,y`` and ``relaunch EXP --failed``.

cli.py keeps only the flags and a call into here, so the command line's parsing and the
sweep's logic change independently. With ``-m`` every ``KEY=VALUE`` is a sweep item (core.sweep
says the syntax); an item with one value is the same in every point.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.engine import Engine


def add_run_sweep_args(p: argparse.ArgumentParser) -> None:
    """``-m/--multirun``, ``--zip`` and ``--throttle`` on ``run``."""
    p.add_argument(
        "-m",
        "--multirun",
        action="store_true",
        help="sweep: every KEY=VALUE may list values (a=1,2 b=range(0,10,2) c=choice(x,y)); "
        "one job per point of their grid",
    )
    p.add_argument(
        "--zip",
        action="store_true",
        help="with -m: pair the i-th values of every list instead of crossing them",
    )
    p.add_argument(
        "--to-yaml",
        action="store_true",
        help="print the resolved config (every point's with -m) as YAML; run nothing",
    )
    p.add_argument(
        "--throttle",
        metavar="N",
        default=None,
        help="with -m: at most N points run at once (on Slurm the array's %%N; locally the "
        "default is one per CPU)",
    )


def add_relaunch_failed_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--failed",
        action="store_true",
        help="run again only the failed and cancelled jobs (sweep points) of EXP",
    )


def _throttle(text: str | None) -> int | None:
    from core.engine import LaunchError as UsageError  # see cmd_run_sweep

    if text is None:
        return None
    value = text.strip()
    if not value.isdigit() or not 1 <= int(value) <= 1_000_000:
        raise UsageError(f"--throttle takes a whole number from 1 to 1000000, got {value[:20]!r}")
    return int(value)


def cmd_run_sweep(args: argparse.Namespace, engine: Engine) -> int:
    """``run RECIPE -m ...``: every point checked, then one experiment (one array on Slurm)."""
    # Usage errors are core's LaunchError (exit 2): under `python -m nemorun_tui.cli` this
    # module imports a second copy of nemorun_tui.cli, whose UsageError the CLI would not know.
    from core.engine import LaunchError as UsageError
    from core.engine.sweep_plan import recipe_sweep_plan
    from core.recipes import discover
    from nemorun_tui.cli import _launch, _workspace_ref

    if args.script is not None:
        raise UsageError("-m sweeps a recipe's config; it cannot be combined with --script")
    if not args.recipe:
        raise UsageError("name a recipe to sweep (see `nemorun-tui recipes`)")
    if "=" in args.recipe:
        raise UsageError(f"`{args.recipe}` looks like an override; put the recipe name first")
    ws = discover(_workspace_ref(args, engine))
    if not args.multirun:  # --to-yaml of one run
        plan = engine.recipe_plan(ws, args.recipe, args.overrides, profile=args.executor)
        return _print_yaml(plan, sweep=False)
    if not args.overrides:
        raise UsageError("-m needs at least one KEY=VALUES item, e.g. optimizer.lr=1e-3,3e-4")
    plan = recipe_sweep_plan(
        engine,
        ws,
        args.recipe,
        args.overrides,
        profile=args.executor,
        title=args.name,
        mode="zip" if args.zip else "grid",
        throttle=_throttle(args.throttle),
    )
    if args.to_yaml:
        return _print_yaml(plan, sweep=True)
    if not args.quiet and not args.dryrun:
        from nemorun_tui.cli import _progress

        _progress(f"sweep: {len(plan.jobs)} points checked")
    return _launch(plan, engine, args)


def _print_yaml(plan: Any, *, sweep: bool) -> int:
    """The resolved config(s) of ``plan`` as YAML on stdout (nothing recorded or run)."""
    import sys

    from core.nemo_compat import task_as_data, to_yaml

    if sweep:
        data: Any = {job.name: task_as_data(job.task) for job in plan.jobs}
    else:
        data = task_as_data(plan.jobs[0].task)
    sys.stdout.write(to_yaml(data))
    return 0


def cmd_relaunch_failed(args: argparse.Namespace, engine: Engine) -> int:
    """``relaunch EXP --failed``: a child experiment with only the failed/cancelled points."""
    from core.engine.sweep_plan import failed_points_plan
    from nemorun_tui.cli import _launch

    exp_id = engine.store.resolve(args.exp)
    plan = failed_points_plan(
        engine, exp_id, args.overrides, executor=args.executor, repackage=args.repackage
    )
    return _launch(plan, engine, args)
