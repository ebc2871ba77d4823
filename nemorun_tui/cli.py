"""The ``nemorun-tui`` command line: the app with no arguments, a scripting CLI otherwise.

Exit codes: 0 every job succeeded (or the command did what was asked), 1 a job failed or was
cancelled, 2 bad usage or input (nothing written), 130 interrupted. Progress goes to stderr,
job output and ``--json`` to stdout, so both can be piped. Textual is imported only when the
app opens; the CLI path stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from core.engine import Engine, Plan
    from core.store import ExperimentRecord, StateChange, Store

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEMO_WORKSPACE = str(Path(__file__).with_name("demo_workspace.py"))

EPILOG = """\
examples:
  nemorun-tui                                   open the app
  nemorun-tui run train trainer.max_steps=50 optimizer.lr=1e-3
  nemorun-tui run --script "nvidia-smi; sleep 5" --executor gpu --detach
  nemorun-tui ls --json | jq '.[0].id'
  nemorun-tui logs train -f                     follow the latest `train` run
  nemorun-tui relaunch train-2026 optimizer.lr=3e-4

EXP is an id, a unique id prefix, or a title (the latest run with that title).
exit codes: 0 success, 1 a job failed or was cancelled, 2 usage/validation error, 130 interrupted.
"""


class UsageError(Exception):
    """Bad input from the user; printed as one line, exit 2."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line; with ``only``, just that command's subparser.

    Building all eight subparsers costs more than listing 10,000 experiments' stats, so a
    command named on the line gets only its own; ``--help`` and mistakes get the full parser.
    """
    parser = argparse.ArgumentParser(
        prog="nemorun-tui",
        description="Compose, launch and watch ML experiments; without a command, open the app.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--home", help="store directory (default: $NEMORUN_TUI_HOME or XDG data dir)"
    )
    parser.add_argument("--workspace", help="recipes: a .py file, a directory or a module")
    parser.add_argument("--version", action="version", version="nemorun-tui 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # --home/--workspace are accepted before or after the command (SUPPRESS: a value given
    # after the command wins, and its absence does not erase one given before).
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--home", default=argparse.SUPPRESS, help="store directory")
    shared.add_argument(
        "--workspace",
        default=argparse.SUPPRESS,
        help="recipes: a .py file, a directory or a module",
    )
    for name, (help_text, add_arguments) in COMMANDS.items():
        if only is None or name == only:
            add_arguments(sub.add_parser(name, parents=[shared], help=help_text))
    return parser


def _run_args(p: argparse.ArgumentParser) -> None:
    p.epilog, p.formatter_class = EPILOG, argparse.RawDescriptionHelpFormatter
    p.add_argument("recipe", nargs="?", help="recipe name from the workspace")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides")
    p.add_argument("--script", help="run this shell command instead of a recipe")
    _common_launch(p)
    p.add_argument(
        "--dryrun", action="store_true", help="show what would be submitted; write nothing"
    )


def _ls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output (see README)")
    p.add_argument("--limit", type=int, default=None, help="show at most N experiments")


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("exp", metavar="EXP")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--no-refresh", action="store_true", help="show the stored state without polling"
    )


def _logs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("exp", metavar="EXP")
    p.add_argument("job", nargs="?", metavar="JOB")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    p.add_argument("--stderr", action="store_true", help="the stderr stream instead of stdout")


def _cancel_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("exp", metavar="EXP")
    p.add_argument("job", nargs="?", metavar="JOB")


def _relaunch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("exp", metavar="EXP")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument(
        "--repackage",
        action="store_true",
        help="package the current code instead of reusing the parent's archive",
    )
    _common_launch(p, name=False)


def _recipes_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


#: Every command: its one-line help and what adds its arguments, in the order --help lists them.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "run": ("launch a recipe or a script", _run_args),
    "ls": ("list experiments, newest first", _ls_args),
    "status": ("refresh and show an experiment's jobs", _status_args),
    "logs": ("print a job's output", _logs_args),
    "cancel": ("cancel a job or every live job of an experiment", _cancel_args),
    "relaunch": ("run a past experiment again, with overrides", _relaunch_args),
    "recipes": ("list the workspace's recipes", _recipes_args),
    "rebuild-index": ("rebuild the listing cache from the manifests", lambda p: None),
}


def command_in(argv: Sequence[str]) -> str | None:
    """The command named on the line, when it is a known one and no top-level flag other than
    ``--home``/``--workspace`` comes before it (those need the full parser)."""
    args = iter(argv)
    for arg in args:
        if arg in ("--home", "--workspace"):
            next(args, None)
        elif arg.startswith(("--home=", "--workspace=")):
            continue
        elif arg.startswith("-"):
            return None
        else:
            return arg if arg in COMMANDS else None
    return None


def _common_launch(p: argparse.ArgumentParser, *, name: bool = True) -> None:
    p.add_argument("--executor", metavar="PROFILE", help="executor profile from config.toml")
    if name:
        p.add_argument("--name", help="experiment title (default: the recipe's name)")
    p.add_argument("--detach", action="store_true", help="return once submitted")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines, no job output")


# ---------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> NoReturn:
    sys.exit(run_cli(argv))


def run_cli(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(only=command_in(argv)).parse_args(argv)
    if args.command is None:
        return _open_app(args)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("nemorun-tui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        code = _user_error_code(exc)
        if code is None:
            raise
        print(f"nemorun-tui: error: {exc}", file=sys.stderr)
        return code


def _user_error_code(exc: Exception) -> int | None:
    """Known error types → exit code; unknown ones re-raise (a bug deserves a traceback)."""
    from core.engine import LaunchError
    from core.protocol import BackendError
    from core.registry import UnknownBackendError
    from core.settings import SettingsError
    from core.store import StoreError, StoreWriteError
    from core.transport import TransportError

    if isinstance(exc, StoreWriteError):  # disk full, read-only: not the user's input
        return EXIT_FAILED

    usage: tuple[type[BaseException], ...] = (
        UsageError,
        LaunchError,
        SettingsError,
        StoreError,
        UnknownBackendError,
    )
    if isinstance(exc, usage):
        return EXIT_USAGE
    if "core.overrides" in sys.modules:
        from core.overrides import OverrideError

        if isinstance(exc, OverrideError):
            return EXIT_USAGE
    if "core.packaging" in sys.modules:
        from core.packaging import PackagingError

        if isinstance(exc, PackagingError):
            return EXIT_USAGE
    if "core.recipes" in sys.modules:
        from core import recipes

        if isinstance(exc, (recipes.WorkspaceError, recipes.UnknownRecipeError)):
            return EXIT_USAGE
    if isinstance(exc, (BackendError, TransportError)):
        return EXIT_FAILED
    return None


def _engine(args: argparse.Namespace) -> Engine:
    from core.engine import Engine

    return Engine.from_environment(args.home)


def _workspace_ref(args: argparse.Namespace, engine: Engine) -> str:
    from core.settings import WORKSPACE_ENV

    return (
        args.workspace
        or os.environ.get(WORKSPACE_ENV)
        or engine.settings.workspace
        or DEMO_WORKSPACE
    )


def _store(args: argparse.Namespace) -> Store:
    """The store alone: listing and reading need neither the engine nor asyncio."""
    from core.paths import resolve_home
    from core.store import Store

    return Store(resolve_home(args.home))


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "ls":
        return _cmd_ls(args)
    if command == "status":
        return _cmd_status(args, _store(args))
    if command == "rebuild-index":
        store = _store(args)
        store.rebuild_index()
        print(f"index rebuilt: {len(store.list())} experiments", file=sys.stderr)
        return EXIT_OK
    engine = _engine(args)
    if command == "run":
        return _cmd_run(args, engine)
    if command == "logs":
        return _cmd_logs(args, engine)
    if command == "cancel":
        return _cmd_cancel(args, engine)
    if command == "relaunch":
        return _cmd_relaunch(args, engine)
    if command == "recipes":
        return _cmd_recipes(args, engine)
    raise UsageError(f"unknown command {command}")


# -- run / relaunch ------------------------------------------------------------------------
def _cmd_run(args: argparse.Namespace, engine: Engine) -> int:
    from core.engine import Plan

    profile = engine.profile(args.executor)
    if args.script is not None:
        if args.recipe or args.overrides:
            raise UsageError("give either RECIPE [KEY=VALUE ...] or --script, not both")
        from core.config import Script

        if not args.script.strip():
            raise UsageError("--script needs a command")
        plan = Plan(title=args.name or "script")
        plan.add(Script(inline=args.script), profile, name="script")
    else:
        if not args.recipe:
            raise UsageError("name a recipe (see `nemorun-tui recipes`) or use --script")
        if "=" in args.recipe:
            raise UsageError(f"`{args.recipe}` looks like an override; put the recipe name first")
        from core.overrides import apply_overrides
        from core.recipes import discover

        workspace = _workspace_ref(args, engine)
        ws = discover(workspace)
        recipe = ws.get(args.recipe)
        task = apply_overrides(recipe.make(), args.overrides, factories=ws.factories)
        plan = Plan(
            title=args.name or recipe.name,
            workspace=workspace,
            recipe=recipe.name,
            overrides=list(args.overrides),
        )
        plan.add(task, profile, name=recipe.name)
    return _launch(plan, engine, args)


def _cmd_relaunch(args: argparse.Namespace, engine: Engine) -> int:
    exp_id = engine.store.resolve(args.exp)
    plan = engine.relaunch_plan(
        exp_id, args.overrides, executor=args.executor, repackage=args.repackage
    )
    return _launch(plan, engine, args)


def _launch(plan: Plan, engine: Engine, args: argparse.Namespace) -> int:
    import asyncio

    if getattr(args, "dryrun", False):
        for result in asyncio.run(engine.dryrun(plan)):
            print(f"# backend: {result.backend}\n# {result.summary}")
            for name, text in result.artifacts.items():
                print(f"## {name}\n{text.rstrip()}")
        return EXIT_OK
    quiet = args.quiet
    engine.validate(plan)
    for warning in asyncio.run(engine.package(plan)):
        _progress(f"warning: {warning}")
    if not quiet:
        for job in plan.jobs:
            pkg = job.package
            if pkg is not None and pkg.sha256:
                how = "reused" if pkg.reused else "packaged"
                _progress(
                    f"{job.name}: code {how} ({pkg.size / 1e6:.1f} MB, sha256 {pkg.sha256[:12]})"
                )
        engine.upload_progress = _upload_meter()
    record = engine.record(plan)
    if not quiet:
        parent = f" (relaunch of {plan.parent})" if plan.parent else ""
        _progress(f"experiment {record.id} recorded{parent}")
    return asyncio.run(_submit_and_wait(engine, plan, record.id, detach=args.detach, quiet=quiet))


async def _submit_and_wait(
    engine: Engine, plan: Plan, exp_id: str, *, detach: bool, quiet: bool
) -> int:
    import asyncio

    try:
        await engine.submit_recorded(exp_id, plan)
        record = engine.store.load(exp_id)
        if not quiet:
            for job in record.jobs:
                where = f" as {job.handle.job_id}" if job.handle else ""
                _progress(
                    f"{job.name}: {job.state.value}{where}"
                    + (f" ({job.reason})" if job.reason else "")
                )
        if detach:
            if not quiet:
                _progress(f"detached; follow with: nemorun-tui logs {exp_id} -f")
            return EXIT_OK if all(j.handle for j in record.jobs) else EXIT_FAILED
        record = await _wait_streaming(engine, exp_id, quiet=quiet)
    except asyncio.CancelledError:
        raise
    finally:
        from core import registry

        await registry.close_all()
    return _report_outcome(record, quiet)


async def _wait_streaming(engine: Engine, exp_id: str, *, quiet: bool) -> ExperimentRecord:
    """Wait for the end, printing transitions; a single job's output streams to stdout.

    Ctrl-C cancels the live jobs (and waits for that), instead of leaving them orphaned or
    hanging; a second Ctrl-C leaves at once.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    interrupted = {"n": 0}
    pending: list[asyncio.Task[list[str]]] = []

    def on_sigint() -> None:
        interrupted["n"] += 1
        if interrupted["n"] == 1:
            _progress("interrupted: cancelling the experiment (Ctrl-C again to leave it running)")
            pending.append(loop.create_task(engine.cancel(exp_id)))
        elif main_task is not None:
            main_task.cancel()

    loop.add_signal_handler(signal.SIGINT, on_sigint)

    def on_change(change: StateChange) -> None:
        if quiet:
            return
        report = change.report
        extra = []
        if report.exit_code is not None:
            extra.append(f"exit {report.exit_code}")
        if report.reason:
            extra.append(report.reason)
        tail = f" ({'; '.join(extra)})" if extra else ""
        _progress(f"{change.job}: {change.old.value} → {change.new.value} [{report.source}]{tail}")

    record = engine.store.load(exp_id)
    follower = None
    if not quiet and len(record.jobs) == 1 and record.jobs[0].handle is not None:
        follower = asyncio.create_task(_copy_logs(engine, exp_id, record.jobs[0].name))
    try:
        record = await engine.wait(exp_id, on_change)
        if follower is not None:
            try:
                await asyncio.wait_for(follower, timeout=10)
            except Exception as exc:  # the run's outcome, not the log stream, sets the exit code
                _progress(f"warning: log streaming stopped early: {exc or type(exc).__name__}")
    except asyncio.CancelledError:
        _progress(f"left running; see: nemorun-tui status {exp_id}")
        raise KeyboardInterrupt from None
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if follower is not None and not follower.done():
            follower.cancel()
    return record


async def _copy_logs(engine: Engine, exp_id: str, job: str) -> None:
    out = sys.stdout.buffer
    async for chunk in engine.logs(exp_id, job, follow=True):
        out.write(chunk)
        out.flush()


def _report_outcome(record: ExperimentRecord, quiet: bool) -> int:
    from core.states import JobState

    ok = all(j.state is JobState.SUCCEEDED for j in record.jobs)
    if not quiet:
        took = (record.ended_at or time.time()) - record.created_at
        _progress(f"experiment {record.id}: {record.state.value} in {took:.2f}s")
    return EXIT_OK if ok else EXIT_FAILED


# -- ls / status -----------------------------------------------------------------------
def _cmd_ls(args: argparse.Namespace) -> int:
    if args.limit is not None:  # a slice: render it directly
        rows = _store(args).list(limit=args.limit)
        text = _render_json(rows) if args.json else _render_table(rows)
    else:
        from core.paths import resolve_home
        from core.store.index import cached_listing

        # Local times depend on the zone, so the cached table does too; the version names
        # this code's rendering, so a changed format is never served from an older cache.
        zone = f"{os.environ.get('TZ', '')}:{time.tzname}:{time.timezone}:{time.altzone}"
        kind, render = (
            (f"json:{RENDER_VERSION}", _render_json)
            if args.json
            else (f"table:{RENDER_VERSION}:{zone}", _render_table)
        )
        # The index's copy when nothing changed (no store import needed), else via the
        # store, which refreshes the index and keeps the new rendering.
        cached = cached_listing(str(resolve_home(args.home)), kind)
        text = cached if cached is not None else _store(args).rendered_listing(kind, render)
    if not text:
        print("no experiments yet; try: nemorun-tui run --script 'echo hello'", file=sys.stderr)
        return EXIT_OK
    sys.stdout.write(text)
    return EXIT_OK


#: Bump when _render_json or _render_table change what they print (the index keeps renderings).
RENDER_VERSION = 2


def _render_json(rows: list[Any]) -> str:
    return json.dumps([r.to_dict() for r in rows], indent=2, sort_keys=True) + "\n"


def _render_table(rows: list[Any]) -> str:
    if not rows:
        return ""
    lines = [f"{'ID':<44} {'STATE':<10} {'JOBS':>4} {'EXECUTOR':<12} {'CREATED':<19} TITLE"]
    for r in rows:
        state = "DAMAGED" if r.damaged else r.state
        lines.append(
            f"{r.id:<44} {state:<10} {r.n_jobs:>4} {','.join(r.executors) or '-':<12} "
            f"{_when(r.created_at):<19} {r.title}" + (f"  ! {r.damaged}" if r.damaged else "")
        )
    return "\n".join(lines) + "\n"


def _cmd_status(args: argparse.Namespace, store: Store) -> int:
    exp_id = store.resolve(args.exp)
    record = store.load(exp_id)
    if not args.no_refresh and not record.state.is_terminal:
        # Only live jobs are polled; a finished experiment needs no engine at all.
        import asyncio

        engine = _engine(args)
        asyncio.run(_refresh_and_close(engine, exp_id))
        record = engine.store.load(exp_id)
    if args.json:
        data = record.to_dict()
        data["state"] = record.state.value
        data["events"] = store.events(exp_id)
        _print_json(data)
    else:
        print(f"{record.id}  {record.title}  {record.state.value}")
        if record.parent:
            print(f"  parent: {record.parent}")
        for j in record.jobs:
            dur = j.duration
            extra = [f"exit {j.exit_code}"] if j.exit_code is not None else []
            if j.reason:
                extra.append(j.reason)
            if j.observed_at:
                extra.append(f"seen {_age(j.observed_at)} ago via {j.source}")
            print(
                f"  {j.name:<20} {j.state.value:<10} {j.backend:<8} "
                f"{(f'{dur:.1f}s' if dur is not None else '-'):>8}  {'; '.join(extra)}"
            )
    from core.states import JobState

    if record.state in (JobState.FAILED, JobState.CANCELLED):
        return EXIT_FAILED
    return EXIT_OK


async def _refresh_and_close(engine: Engine, exp_id: str) -> None:
    from core import registry

    try:
        await engine.refresh([exp_id])
    finally:
        await registry.close_all()


# -- logs / cancel / recipes ------------------------------------------------------------
def _cmd_logs(args: argparse.Namespace, engine: Engine) -> int:
    import asyncio

    exp_id = engine.store.resolve(args.exp)
    stream = "stderr" if args.stderr else "stdout"

    async def copy() -> None:
        from core import registry

        out = sys.stdout.buffer
        try:
            async for chunk in engine.logs(exp_id, args.job, follow=args.follow, stream=stream):
                out.write(chunk)
                out.flush()
        finally:
            await registry.close_all()

    asyncio.run(copy())
    return EXIT_OK


def _cmd_cancel(args: argparse.Namespace, engine: Engine) -> int:
    import asyncio

    exp_id = engine.store.resolve(args.exp)

    async def go() -> list[str]:
        from core import registry

        try:
            return await engine.cancel(exp_id, args.job)
        finally:
            await registry.close_all()

    asked = asyncio.run(go())
    if asked:
        _progress(f"cancel requested for {', '.join(asked)} in {exp_id}")
    else:
        _progress(f"nothing to cancel: every job of {exp_id} has already ended")
    return EXIT_OK


def _cmd_recipes(args: argparse.Namespace, engine: Engine) -> int:
    from core.recipes import discover

    ws = discover(_workspace_ref(args, engine))
    items = sorted(ws.recipes.values(), key=lambda r: r.name)
    if args.json:
        _print_json([{"name": r.name, "help": r.help or "", "module": r.module} for r in items])
    else:
        for r in items:
            print(f"{r.name:<20} {r.help or ''}")
    return EXIT_OK


# -- the app ---------------------------------------------------------------------------
def _open_app(args: argparse.Namespace) -> int:
    from nemorun_tui.app import run_app

    return run_app(home=args.home, workspace=args.workspace or None, demo_workspace=DEMO_WORKSPACE)


# -- output helpers ----------------------------------------------------------------------
def _upload_meter() -> Any:
    """Progress for uploads: bytes, percentage and rate, at most two lines a second."""
    from core.progress import RateMeter, describe_transfer

    return RateMeter(
        lambda done, total, rate: _progress(f"upload {describe_transfer(done, total, rate)}"),
        min_interval=0.5,
    )


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _age(ts: float) -> str:
    seconds = max(0.0, time.time() - ts)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


if __name__ == "__main__":  # pragma: no cover
    main()
