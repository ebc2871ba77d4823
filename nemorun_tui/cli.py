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
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from core.engine import Engine, Plan
    from core.engine.protocol import LogStream
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


def parse_command_line(argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` parsed, with a command's options and its KEY=VALUE words in any order.

    argparse alone stops filling ``KEY=VALUE ...`` at the first option
    (``run train --executor local a=1`` was "unrecognized arguments", with the top-level
    usage); the command's own parser reads its words intermixed, and a mistake prints that
    command's usage.
    """
    argv = list(argv)
    at = _command_at(argv)
    name = argv[at] if at is not None else None
    parser = build_parser(only=name)
    if at is None or name is None:
        return parser.parse_args(argv)
    args = parser.parse_args(argv[:at])  # the top-level options given before the command
    sub = _subparser(parser, name)
    try:
        sub.parse_intermixed_args(argv[at + 1 :], namespace=args)
    except TypeError:  # a command whose words cannot be intermixed (argparse.REMAINDER)
        sub.parse_args(argv[at + 1 :], namespace=args)
    args.command = name
    return args


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise LookupError(name)  # pragma: no cover - build_parser always adds it


def _run_args(p: argparse.ArgumentParser) -> None:
    p.epilog, p.formatter_class = EPILOG, argparse.RawDescriptionHelpFormatter
    p.add_argument("recipe", nargs="?", help="recipe name from the workspace")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides")
    p.add_argument("--script", help="run this shell command instead of a recipe")
    _common_launch(p)
    _tag_note_args(p)
    p.add_argument(
        "--dryrun", action="store_true", help="show what would be submitted; write nothing"
    )
    from nemorun_tui.cli_sweep import add_run_sweep_args

    add_run_sweep_args(p)  # -m/--multirun, --zip, --throttle


def _tag_note_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="tag the experiment (repeat, or a,b); `ls --tag` filters on it",
    )
    p.add_argument("--note", help="a free-text note kept with the experiment")


def _ls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output (see README)")
    # Read as text and checked in _cmd_ls, so a bad N is one line like every other error.
    p.add_argument("--limit", metavar="N", default=None, help="show at most N experiments")
    p.add_argument(
        "--state", metavar="STATE[,STATE]", help="only these states (e.g. running,failed)"
    )
    p.add_argument("--title", metavar="TEXT", help="only titles containing TEXT (any case)")
    p.add_argument(
        "--tag", action="append", default=[], metavar="TAG", help="only runs with TAG (repeat: all)"
    )
    p.add_argument(
        "--since", metavar="WHEN", help="only runs created since WHEN: 30m, 2h, 7d or 2026-12-01"
    )
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--archived", action="store_true", help="only archived runs")
    shown.add_argument("--all", action="store_true", help="archived runs too")


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("exp", metavar="EXP")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--no-refresh", action="store_true", help="show the stored state without polling"
    )
    p.add_argument(
        "--watch",
        "-w",
        action="store_true",
        help="refresh until every job has ended, printing each change",
    )
    p.add_argument(
        "--interval", metavar="S", default="2", help="seconds between --watch refreshes (2)"
    )


def _logs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("exp", metavar="EXP")
    p.add_argument("job", nargs="?", metavar="JOB")
    p.add_argument(
        "--job",
        dest="job_option",
        metavar="JOB",
        help="only this job (default: every job, each line prefixed with its name)",
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    p.add_argument("--stderr", action="store_true", help="the stderr stream instead of stdout")
    p.add_argument(
        "--rank", type=int, metavar="N", help="only rank N's lines (torchrun / ft launchers)"
    )
    _raw_arg(p)


def _raw_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--raw",
        action="store_true",
        help="job output byte for byte even on a terminal (default there: colours only, "
        "every other escape sequence removed; piped output is always raw)",
    )


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
    p.add_argument(
        "--workdir",
        metavar="DIR",
        help="run in DIR (default: the directory the parent was launched from)",
    )
    from nemorun_tui.cli_sweep import add_relaunch_failed_arg

    add_relaunch_failed_arg(p)  # --failed
    _common_launch(p, name=False)


def _import_args(p: argparse.ArgumentParser) -> None:
    from nemorun_tui.cli_import import add_import_args

    add_import_args(p)


def _recipes_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "recipe", nargs="?", metavar="RECIPE", help="show this recipe's fields and defaults"
    )
    p.add_argument("--json", action="store_true")


def _tag_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("exp", metavar="EXP")
    p.add_argument("tags", nargs="+", metavar="TAG")
    p.add_argument("--remove", action="store_true", help="remove these tags instead")


def _note_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("exp", metavar="EXP")
    p.add_argument("note", metavar="TEXT", help='the note ("" removes it)')


def _archive_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("exps", nargs="+", metavar="EXP")
    p.add_argument("--undo", action="store_true", help="unarchive: list them by default again")


def _rm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("exps", nargs="+", metavar="EXP")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


#: Every command: its one-line help and what adds its arguments, in the order --help lists them.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "run": ("launch a recipe or a script", _run_args),
    "ls": ("list experiments, newest first", _ls_args),
    "status": ("refresh and show an experiment's jobs", _status_args),
    "logs": ("print a job's output", _logs_args),
    "cancel": ("cancel a job or every live job of an experiment", _cancel_args),
    "relaunch": ("run a past experiment again, with overrides", _relaunch_args),
    "recipes": ("list the workspace's recipes and factories, or show one", _recipes_args),
    "rebuild-index": ("rebuild the listing cache from the manifests", lambda p: None),
    "tag": ("add (or --remove) tags of an experiment", _tag_args),
    "note": ("set the note of an experiment", _note_args),
    "archive": ("hide experiments from the default listing (--undo: show again)", _archive_args),
    "rm": ("delete finished experiments and their logs (asks first)", _rm_args),
    "import-nemo-run": ("import NeMo Run's experiments (read only)", _import_args),
    # What runs produced (nemorun_tui/cli_results.py), added lazily: see _results_args.
    "metrics": ("print a run's metrics (last values)", lambda p: _results_args("metrics", p)),
    "artifacts": ("list a run's artifacts, checkpoints", lambda p: _results_args("artifacts", p)),
    "fetch": ("copy one artifact here, resumably, verified", lambda p: _results_args("fetch", p)),
    "diff": ("compare two or more runs: what differs", lambda p: _results_args("diff", p)),
}


def _results_args(command: str, p: argparse.ArgumentParser) -> None:
    from nemorun_tui import cli_results

    getattr(cli_results, f"{command}_args")(p)


def command_in(argv: Sequence[str]) -> str | None:
    """The command named on the line, when it is a known one and no top-level flag other than
    ``--home``/``--workspace`` comes before it (those need the full parser)."""
    at = _command_at(argv)
    return None if at is None else argv[at]


def _command_at(argv: Sequence[str]) -> int | None:
    """Where :func:`command_in`'s command is in ``argv`` (None: no such command)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--home", "--workspace"):
            i += 2
            continue
        if arg.startswith(("--home=", "--workspace=")):
            i += 1
            continue
        if arg.startswith("-"):
            return None
        return i if arg in COMMANDS else None
    return None


def _common_launch(p: argparse.ArgumentParser, *, name: bool = True) -> None:
    p.add_argument("--executor", metavar="PROFILE", help="executor profile from config.toml")
    if name:
        p.add_argument("--name", help="experiment title (default: the recipe's name)")
    p.add_argument("--detach", action="store_true", help="return once submitted")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines, no job output")
    _raw_arg(p)


# ---------------------------------------------------------------------------------------
def main(argv: Sequence[str] | Callable[..., Any] | None = None, **options: Any) -> NoReturn:
    """The ``nemorun-tui`` command; ``run.cli.main(fn)`` (a NeMo Run entry point) runs ``fn``
    with the command line's overrides instead (nemorun_tui.nemo_cli)."""
    if callable(argv):
        from nemorun_tui.nemo_cli import run_entrypoint

        sys.exit(run_entrypoint(argv, **options))
    sys.exit(run_cli(argv))


def run_cli(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_command_line(argv)
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
        print(f"nemorun-tui: error: {_for_terminal(str(exc), sys.stderr)}", file=sys.stderr)
        return code


def _user_error_code(exc: Exception) -> int | None:
    """Known error types → exit code; unknown ones re-raise (a bug deserves a traceback)."""
    from core.engine import LaunchError
    from core.engine.protocol import BackendError
    from core.engine.registry import UnknownBackendError
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
    if "core.engine.executor_overrides" in sys.modules:
        from core.engine.executor_overrides import ExecutorOverrideError

        if isinstance(exc, ExecutorOverrideError):
            return EXIT_USAGE
    if "core.packaging" in sys.modules:
        from core.packaging import PackagingError

        if isinstance(exc, PackagingError):
            return EXIT_USAGE
    if "core.recipes" in sys.modules:
        from core import recipes

        if isinstance(exc, (recipes.WorkspaceError, recipes.UnknownRecipeError)):
            return EXIT_USAGE
    if "nemorun_tui.cli_manage" in sys.modules:
        from nemorun_tui.cli_manage import ManageError

        if isinstance(exc, ManageError):
            return EXIT_USAGE
    if "nemorun_tui.cli_filters" in sys.modules:
        from nemorun_tui.cli_filters import FilterError

        if isinstance(exc, FilterError):
            return EXIT_USAGE
    if isinstance(exc, (BackendError, TransportError)):
        return EXIT_FAILED
    return None


def _engine(args: argparse.Namespace) -> Engine:
    from core.engine import Engine

    return Engine.from_environment(args.home)


def _workspace_ref(args: argparse.Namespace, engine: Engine) -> str:
    return engine.settings.workspace_ref(args.workspace, DEMO_WORKSPACE) or DEMO_WORKSPACE


def _store(args: argparse.Namespace) -> Store:
    """The store alone: listing and reading need neither the engine nor asyncio."""
    from core.paths import resolve_home
    from core.store import Store

    return Store(resolve_home(args.home))


#: Longest experiment reference or job name, in UTF-8 bytes: past a file name's limit it
#: can name nothing in the store, and must not reach the filesystem as a path.
MAX_NAME_BYTES = 255
#: Longest ``--name`` (experiment title), in characters: shown in every listing.
MAX_TITLE = 128


def _check_home(args: argparse.Namespace) -> None:
    """A store location that is not a directory: one line, before anything opens it."""
    from core.paths import resolve_home

    home = resolve_home(args.home)
    if home.exists() and not home.is_dir():
        where = "--home" if args.home else "the store"
        raise UsageError(f"{where} {home} is not a directory")
    for parent in home.parents:  # `--home some-file/sub` cannot be created either
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"the store {home} is inside {parent}, which is not a directory")
            break


def _check_names(args: argparse.Namespace) -> None:
    """One line, before anything touches the store, for a name no experiment can have."""
    for attr, what in (("exp", "experiment reference"), ("job", "job name")):
        value = getattr(args, attr, None)
        if value is None:
            continue
        size = len(value.encode("utf-8", "surrogateescape"))
        if size > MAX_NAME_BYTES:
            raise UsageError(
                f"{what} {value[:40]!r}... is too long ({size} bytes; at most {MAX_NAME_BYTES})"
            )
    title = getattr(args, "name", None)
    if title is not None and len(title) > MAX_TITLE:
        raise UsageError(
            f"--name {title[:40]!r}... is too long ({len(title)} characters; at most {MAX_TITLE})"
        )


def _dispatch(args: argparse.Namespace) -> int:
    _check_names(args)
    _check_home(args)
    command = args.command
    if command == "ls":
        return _cmd_ls(args)
    if command == "status":
        if args.watch:
            return _cmd_status_watch(args, _store(args))
        return _cmd_status(args, _store(args))
    if command in ("tag", "note", "archive", "rm"):
        from nemorun_tui import cli_manage

        return cli_manage.run(args, _store(args))
    if command == "import-nemo-run":
        from nemorun_tui.cli_import import cmd_import

        return cmd_import(args)
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
    if command in ("metrics", "artifacts", "fetch", "diff"):
        from nemorun_tui import cli_results

        handler: Callable[[argparse.Namespace, Engine], int] = getattr(
            cli_results, f"cmd_{command}"
        )
        return handler(args, engine)
    raise UsageError(f"unknown command {command}")


# -- run / relaunch ------------------------------------------------------------------------
def _cmd_run(args: argparse.Namespace, engine: Engine) -> int:
    from core.engine import Plan

    if getattr(args, "multirun", False) or getattr(args, "to_yaml", False):
        from nemorun_tui.cli_sweep import cmd_run_sweep

        return cmd_run_sweep(args, engine)  # -m sweeps, --to-yaml prints (cli_sweep)
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
        from core.recipes import discover

        ws = discover(_workspace_ref(args, engine))
        plan = engine.recipe_plan(
            ws, args.recipe, args.overrides, profile=args.executor, title=args.name
        )
    _apply_tag_note(plan, args)
    return _launch(plan, engine, args)


def _apply_tag_note(plan: Plan, args: argparse.Namespace) -> None:
    """``--tag``/``--note`` onto the plan, checked now (a bad tag launches nothing)."""
    from core.store.files import check_note, check_tags

    tags = [t for given in getattr(args, "tag", None) or [] for t in given.split(",")]
    plan.tags = check_tags([*plan.tags, *tags])
    if getattr(args, "note", None) is not None:
        plan.note = check_note(args.note)


def _cmd_relaunch(args: argparse.Namespace, engine: Engine) -> int:
    if getattr(args, "failed", False):
        from nemorun_tui.cli_sweep import cmd_relaunch_failed

        return cmd_relaunch_failed(args, engine)
    exp_id = engine.store.resolve(args.exp)
    plan = engine.relaunch_plan(
        exp_id, args.overrides, executor=args.executor, repackage=args.repackage
    )
    parent_dir = plan.workdir
    if args.workdir is not None:
        workdir = Path(args.workdir).expanduser()
        if not workdir.is_dir():
            raise UsageError(f"--workdir {args.workdir} is not a directory")
        plan.workdir = str(workdir.resolve())
    local = all(job.executor.backend == "local" for job in plan.jobs)
    if local and plan.workdir is not None and not os.path.isdir(plan.workdir):
        raise UsageError(
            f"the parent ran in {plan.workdir}, which no longer exists; "
            "choose another with --workdir DIR"
        )
    if not args.quiet:
        if plan.workdir != parent_dir:
            _progress(f"workdir: {parent_dir or '(not recorded)'} → {plan.workdir}")
        elif plan.workdir is not None:
            _progress(f"workdir: {plan.workdir} (the parent's)")
    return _launch(plan, engine, args)


def _launch(plan: Plan, engine: Engine, args: argparse.Namespace) -> int:
    import asyncio

    if getattr(args, "dryrun", False):
        previews = engine.preview(plan, preflight=True)
        results = asyncio.run(engine.dryrun(plan))
        for preview, result in zip(previews, results, strict=True):
            out = (
                f"{preview.text()}\n"
                f"# what the {result.backend} backend would submit "
                "(the task file is written at launch)\n"
                + "".join(f"# {line}\n" for line in result.summary.splitlines())
                + "".join(
                    f"## {name}\n{text.rstrip()}\n" for name, text in result.artifacts.items()
                )
            )
            sys.stdout.write(_for_terminal(out, sys.stdout))
        return EXIT_OK
    return asyncio.run(
        _launch_and_wait(engine, plan, detach=args.detach, quiet=args.quiet, raw=args.raw)
    )


class _LaunchPrinter:
    """Presents one launch's events (:mod:`core.engine.launch_events`) as stderr lines."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.meters: dict[str, Any] = {}

    def __call__(self, event: Any) -> None:
        from core.engine import launch_events as ev

        if isinstance(event, ev.PackagingWarning):
            _progress(f"warning: {event.text}")  # shown even with -q: it changes what runs
        if self.quiet:
            return
        if isinstance(event, ev.Packaged):
            how = "reused" if event.reused else "packaged"
            _progress(
                f"{event.job}: code {how} ({event.size / 1e6:.1f} MB, sha256 {event.sha256[:12]})"
            )
        elif isinstance(event, ev.Recorded):
            parent = event.record.parent
            _progress(
                f"experiment {event.record.id} recorded"
                + (f" (relaunch of {parent})" if parent else "")
            )
        elif isinstance(event, ev.Uploading):
            meter = self.meters.get(event.job)
            if meter is None:
                meter = self.meters[event.job] = _upload_meter()
            meter(event.done, event.total)
        elif isinstance(event, ev.Submitted):
            where = f" as {event.handle.job_id}" if event.handle else ""
            reason = f" ({event.reason})" if event.reason else ""
            _progress(f"{event.job}: {event.state.value}{where}{reason}")


async def _launch_and_wait(
    engine: Engine, plan: Plan, *, detach: bool, quiet: bool, raw: bool = False
) -> int:
    import asyncio

    try:
        record = await engine.launch(plan, on_event=_LaunchPrinter(quiet))
        if detach:
            if not quiet:
                _progress(f"detached; follow with: nemorun-tui logs {record.id} -f")
            print(record.id)  # scriptable: the id is the only thing on stdout
            return EXIT_OK if all(j.handle for j in record.jobs) else EXIT_FAILED
        record = await _wait_streaming(engine, record.id, quiet=quiet, raw=raw)
        from nemorun_tui.cli_results import record_results

        await record_results(engine, record, quiet=quiet)  # artifacts.json, why it failed
    except asyncio.CancelledError:
        raise
    finally:
        from core.engine import registry

        await registry.close_all()
    return _report_outcome(record, quiet)


async def _wait_streaming(
    engine: Engine, exp_id: str, *, quiet: bool, raw: bool = False
) -> ExperimentRecord:
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
        follower = asyncio.create_task(_copy_logs(engine, exp_id, record.jobs[0].name, raw=raw))
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


async def _copy_logs(engine: Engine, exp_id: str, job: str, *, raw: bool = False) -> None:
    out = _JobOutput(raw)
    try:
        async for chunk in engine.logs(exp_id, job, follow=True):
            out.write(chunk)
    finally:
        out.close()


class _JobOutput:
    """Job output to stdout: on a terminal, text (SGR colours and ``\\r`` kept, every other
    escape sequence and control removed, see core.textsafe); piped or ``--raw``, the bytes."""

    def __init__(self, raw: bool) -> None:
        self.out = sys.stdout.buffer
        self.filter = None
        if not raw and sys.stdout.isatty():
            from core.textsafe import TerminalFilter

            self.filter = TerminalFilter(keep_cr=True)

    def write(self, chunk: bytes) -> None:
        self.out.write(self.filter.feed(chunk) if self.filter is not None else chunk)
        self.out.flush()

    def close(self) -> None:
        if self.filter is not None:
            self.out.write(self.filter.flush())
            self.out.flush()


def _report_outcome(record: ExperimentRecord, quiet: bool) -> int:
    from core.engine.states import JobState

    ok = all(j.state is JobState.SUCCEEDED for j in record.jobs)
    if not quiet:
        took = (record.ended_at or time.time()) - record.created_at
        _progress(f"experiment {record.id}: {record.state.value} in {took:.2f}s")
    return EXIT_OK if ok else EXIT_FAILED


# -- ls / status -----------------------------------------------------------------------
#: Bounds of `ls --limit` (SQLite's LIMIT would take any 64-bit int; none is useful past this).
MAX_LIMIT = 1_000_000_000


def _limit(text: str) -> int:
    """``ls --limit N``: a whole number from 1 (0 would print nothing, as if the store were
    empty; a negative one means "no limit" to SQLite) to :data:`MAX_LIMIT`."""
    value = text.strip()
    if not re.fullmatch(r"\d{1,10}", value) or not 1 <= int(value) <= MAX_LIMIT:
        shown = repr(value) if len(value) <= 20 else repr(value[:17]) + "..."
        raise UsageError(f"--limit takes a whole number from 1 to {MAX_LIMIT}, got {shown}")
    return int(value)


def _cmd_ls(args: argparse.Namespace) -> int:
    filtered = args.state or args.title or args.tag or args.since or args.archived or args.all
    if args.limit is not None or filtered:  # a slice: render it directly
        from nemorun_tui.cli_filters import ListingFilter

        wanted = ListingFilter.from_args(args)
        limit = _limit(args.limit) if args.limit is not None else None
        store = _store(args)
        if wanted.in_python:
            rows = wanted.apply(store.list(archived=wanted.archived))
            rows = rows[:limit] if limit is not None else rows
        else:  # only --limit/--archived/--all: the index answers (LIMIT in SQL)
            rows = store.list(limit=limit, archived=wanted.archived)
        text = _render_json(rows) if args.json else _render_table(rows)
        if not text and not args.json:
            total = len(store.list())
            if total:
                print(f"no experiments match ({total} in the store)", file=sys.stderr)
                return EXIT_OK
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
        if cached is not None:
            text = cached
        else:
            text = _store(args).rendered_listing(kind, lambda rows: render(_unarchived(rows)))
        if not text and _store(args).list(limit=1):
            print("no experiments listed: all are archived (see `ls --archived`)", file=sys.stderr)
            return EXIT_OK
    if not text:
        print("no experiments yet; try: nemorun-tui run --script 'echo hello'", file=sys.stderr)
        return EXIT_OK
    sys.stdout.write(text)
    return EXIT_OK


#: Bump when _render_json or _render_table change what they print (the index keeps renderings).
RENDER_VERSION = 4


def _unarchived(rows: list[Any]) -> list[Any]:
    """The default listing: archived runs are hidden (``ls --archived``/``--all``)."""
    return [r for r in rows if not r.archived]


def _render_json(rows: list[Any]) -> str:
    return json.dumps([r.to_dict() for r in rows], indent=2, sort_keys=True) + "\n"


def _render_table(rows: list[Any]) -> str:
    if not rows:
        return ""
    from core.textsafe import escape_cell as cell  # one row per experiment, controls shown

    lines = [f"{'ID':<44} {'STATE':<10} {'JOBS':>4} {'EXECUTOR':<12} {'CREATED':<19} TITLE"]
    for r in rows:
        state = "DAMAGED" if r.damaged else r.state
        lines.append(
            f"{cell(r.id):<44} {state:<10} {r.n_jobs:>4} {cell(','.join(r.executors)) or '-':<12} "
            f"{_when(r.created_at):<19} {cell(r.title)}"
            + (f"  [{cell(','.join(r.tags))}]" if r.tags else "")
            + (f"  ! {cell(r.damaged)}" if r.damaged else "")
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
        from nemorun_tui.job_status import json_attempts

        json_attempts(record, data)
        found: dict[str, Any] = {}
        if record.state.value != "SUCCEEDED":  # why each failed or stuck job is so
            from nemorun_tui.cli_results import causes

            found = causes(_engine(args), record)
        for job in data["jobs"]:
            job["cause"] = found.get(job["name"])
        _print_json(data)
    else:
        sys.stdout.write(_status_text(record, store))
    return _status_code(record)


def _status_code(record: ExperimentRecord) -> int:
    from core.engine.states import JobState

    if record.state in (JobState.FAILED, JobState.CANCELLED):
        return EXIT_FAILED
    return EXIT_OK


def _status_text(record: ExperimentRecord, store: Store, *, ages: bool = True) -> str:
    from core.textsafe import escape_cell as cell  # a title or reason never splits a line
    from nemorun_tui.job_status import attempt_lines, job_extras, retries_of

    lines = [f"{cell(record.id)}  {cell(record.title)}  {record.state.value}"]
    if record.parent:
        lines.append(f"  parent: {cell(record.parent)}")
    if record.tags:
        lines.append(f"  tags: {cell(', '.join(record.tags))}")
    if record.note:
        lines.append(f"  note: {cell(record.note)}")
    if record.archived:
        lines.append("  archived")
    for j in record.jobs:
        dur = j.duration
        extra = [f"exit {j.exit_code}"] if j.exit_code is not None else []
        if j.reason:
            extra.append(j.reason)
        if j.observed_at and ages:
            extra.append(f"seen {_age(j.observed_at)} ago via {j.source}")
        retries = retries_of(store, record.id, j.name)
        extra.extend(job_extras(j, retries))
        shown = f"{dur:.1f}s" if dur is not None and ages else "-"
        lines.append(
            f"  {cell(j.name):<20} {j.state.value:<10} {cell(j.backend):<8} "
            f"{shown:>8}  {cell('; '.join(extra))}"
        )
        lines.extend(attempt_lines(j, retries))
    return "\n".join(lines) + "\n"


def _cmd_status_watch(args: argparse.Namespace, store: Store) -> int:
    """``status --watch``: refresh every ``--interval`` seconds until every job has ended.

    Each refresh that changed something prints the status again, stamped (the ages and
    durations are left out of the comparison, or every refresh would print); it never
    clears the screen, so the history stays in the scrollback and a pipe gets every change.
    """
    import asyncio

    try:
        interval = float(args.interval)
    except ValueError:
        interval = -1.0
    if not 0.2 <= interval <= 3600:
        raise UsageError(f"--interval takes seconds from 0.2 to 3600, got {args.interval!r}")
    if args.json or args.no_refresh:
        raise UsageError("--watch refreshes and prints text: give it without --json/--no-refresh")
    exp_id = store.resolve(args.exp)

    async def watch() -> ExperimentRecord:
        from core.engine import registry

        engine = _engine(args)
        shown = None
        try:
            while True:
                record = engine.store.load(exp_id)
                if not record.state.is_terminal:
                    await engine.refresh([exp_id])
                    record = engine.store.load(exp_id)
                key = _status_text(record, store, ages=False)
                if key != shown:
                    shown = key
                    text = _status_text(record, store)
                    sys.stdout.write(f"-- {time.strftime('%H:%M:%S')}\n{text}")
                    sys.stdout.flush()
                if record.state.is_terminal:
                    return record
                await asyncio.sleep(interval)
        finally:
            await registry.close_all()

    return _status_code(asyncio.run(watch()))


async def _refresh_and_close(engine: Engine, exp_id: str) -> None:
    from core.engine import registry

    try:
        await engine.refresh([exp_id])
    finally:
        await registry.close_all()


# -- logs / cancel / recipes ------------------------------------------------------------
def _cmd_logs(args: argparse.Namespace, engine: Engine) -> int:
    import asyncio

    exp_id = engine.store.resolve(args.exp)
    stream: LogStream = "stderr" if args.stderr else "stdout"
    if args.job and args.job_option and args.job != args.job_option:
        raise UsageError(f"two jobs named: {args.job} and --job {args.job_option}; name one")
    job = args.job or args.job_option
    record = engine.store.load(exp_id)
    if job is None and len(record.jobs) > 1:
        return _logs_of_every_job(engine, record, stream, follow=args.follow, raw=args.raw)
    if job is not None:
        record.job(job)  # an unknown job is one line naming the jobs there are

    async def copy() -> None:
        from core.engine import registry

        out = _JobOutput(args.raw)
        try:
            chunks = engine.logs(exp_id, job, follow=args.follow, stream=stream, rank=args.rank)
            async for chunk in chunks:
                out.write(chunk)
        finally:
            out.close()
            await registry.close_all()

    asyncio.run(copy())
    return EXIT_OK


def _logs_of_every_job(
    engine: Engine, record: ExperimentRecord, stream: LogStream, *, follow: bool, raw: bool
) -> int:
    """Every job's log, each line prefixed ``[job] ``: one after the other, or, with
    ``--follow``, interleaved line by line as they come (never mid-line)."""
    import asyncio

    from core.textsafe import escape_cell

    width = max(len(escape_cell(j.name)) for j in record.jobs)
    out = _JobOutput(raw)
    never = [j.name for j in record.jobs if j.handle is None]

    async def one(name: str) -> None:
        prefix = f"[{escape_cell(name):<{width}}] ".encode()
        pending = b""
        async for chunk in engine.logs(record.id, name, follow=follow, stream=stream):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if lines:
                out.write(b"".join(prefix + line + b"\n" for line in lines))
        if pending:
            out.write(prefix + pending + b"\n")

    async def copy() -> None:
        from core.engine import registry

        try:
            names = [j.name for j in record.jobs if j.handle is not None]
            if follow:
                await asyncio.gather(*(one(n) for n in names))
            else:
                for name in names:
                    await one(name)
        finally:
            out.close()
            await registry.close_all()

    asyncio.run(copy())
    for name in never:
        _progress(f"{name}: never submitted ({record.job(name).state.value}); no log")
    return EXIT_OK


def _cmd_cancel(args: argparse.Namespace, engine: Engine) -> int:
    import asyncio

    exp_id = engine.store.resolve(args.exp)

    async def go() -> list[str]:
        from core.engine import registry

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
    from nemorun_tui import cli_recipes

    ws = discover(_workspace_ref(args, engine))
    if args.recipe is not None:
        return cli_recipes.show_recipe(ws, args.recipe, as_json=args.json)
    return cli_recipes.list_recipes(ws, as_json=args.json)


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
    """One line on stderr; it quotes titles, job names and reasons, so controls are shown
    (``\\x1b``, ``\\n``), never sent."""
    from core.textsafe import escape_cell

    print(f"[{time.strftime('%H:%M:%S')}] {escape_cell(message)}", file=sys.stderr, flush=True)


def _for_terminal(text: str, stream: Any) -> str:
    """Text for ``stream``: without escape sequences and controls when it is a terminal."""
    if not stream.isatty():
        return text
    from core.textsafe import sanitize_terminal

    return sanitize_terminal(text, keep_sgr=False)


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


def __getattr__(name: str) -> Any:
    """``run.cli.entrypoint`` / ``run.cli.factory`` (NeMo Run's names), loaded on first use."""
    if name in ("entrypoint", "factory"):
        from nemorun_tui import nemo_cli

        return getattr(nemo_cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    main()
