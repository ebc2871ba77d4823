"""``nemorun-tui import-nemo-run [DIR]``: NeMo Run's experiments into our store (read only).

What comes over and what does not is in core.importers.nemo_run and README "Coming from
NeMo Run". The source is never written; importing twice imports nothing new.
"""

from __future__ import annotations

import argparse
import sys


def add_import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dir",
        nargs="?",
        metavar="DIR",
        help="NeMo Run home (default: $NEMORUN_HOME, else ~/.nemo_run)",
    )
    p.add_argument(
        "--known-hosts",
        metavar="FILE",
        help="known_hosts for SSHTunnel experiments (logs are read over SSH; default "
        "~/.ssh/known_hosts); recorded in their profiles for later polls and relaunches",
    )
    p.add_argument("--json", action="store_true", help="machine-readable summary")


def cmd_import(args: argparse.Namespace) -> int:
    import asyncio

    # Errors are core's (exit 2): under `python -m nemorun_tui.cli` this module's import of
    # nemorun_tui.cli is a second copy, whose UsageError the running CLI would not know.
    from core.importers.nemo_run import experiment_dirs, import_store, source_home
    from core.store import StoreError
    from nemorun_tui.cli import EXIT_OK, _print_json, _progress, _store

    home = source_home(args.dir)
    if not (home / "experiments").is_dir():
        raise StoreError(f"no NeMo Run store at {home} (no experiments/ folder)")
    store = _store(args)
    total = len(experiment_dirs(home))
    result = asyncio.run(import_store(store, home, known_hosts=args.known_hosts))
    if args.json:
        _print_json(
            {
                "source": str(home),
                "found": total,
                "imported": result.imported,
                "already": result.already,
                "damaged": [{"path": p, "reason": r} for p, r in result.damaged],
            }
        )
    else:
        _progress(
            f"{home}: {total} NeMo Run experiments; imported {len(result.imported)}, "
            f"{len(result.already)} already here"
        )
        for path, reason in result.damaged:
            _progress(f"damaged: {path}: {reason}")
        for exp_id in result.imported:
            print(exp_id, file=sys.stdout)
    return EXIT_OK
