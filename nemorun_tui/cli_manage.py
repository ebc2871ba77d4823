"""Run management commands: ``tag``, ``note``, ``archive`` and ``rm``.

Each is a thin front for one :class:`core.store.Store` method (``set_tags``, ``set_note``,
``set_archived``, ``remove``), which checks the values and writes atomically. Every
reference is resolved before anything is changed, so a typo in the third of three ids
changes none of them. ``rm`` asks first (on the terminal) unless ``--yes``; it never deletes
a live run.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.store import Store

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ManageError(Exception):
    """Bad input to a management command; printed as one line, exit 2."""


def run(args: argparse.Namespace, store: Store) -> int:
    command = args.command
    if command == "tag":
        return _tag(args, store)
    if command == "note":
        exp_id = store.resolve(args.exp)
        store.set_note(exp_id, args.note)
        _say(f"{exp_id}: note {'set' if args.note.strip() else 'removed'}")
        return EXIT_OK
    if command == "archive":
        ids = _resolve_all(store, args.exps)
        for exp_id in ids:
            store.set_archived(exp_id, not args.undo)
        what = "unarchived" if args.undo else "archived"
        _say(f"{what}: {', '.join(ids)}")
        return EXIT_OK
    if command == "rm":
        return _rm(args, store)
    raise ManageError(f"unknown command {command}")


def _tag(args: argparse.Namespace, store: Store) -> int:
    exp_id = store.resolve(args.exp)
    given = [t.strip() for item in args.tags for t in item.split(",") if t.strip()]
    current = store.load(exp_id).tags
    if args.remove:
        missing = [t for t in given if t not in current]
        tags = [t for t in current if t not in given]
        if missing:
            _say(f"{exp_id}: not tagged {', '.join(missing)}")
    else:
        tags = [*current, *given]
    record = store.set_tags(exp_id, tags)
    _say(f"{exp_id}: tags {', '.join(record.tags) or '(none)'}")
    return EXIT_OK


def _rm(args: argparse.Namespace, store: Store) -> int:
    from core.store import LiveRunError

    ids = _resolve_all(store, args.exps)
    records = [store.load(exp_id) for exp_id in ids]  # a damaged one: one line, nothing gone
    live = [r for r in records if not r.state.is_terminal]
    if live:
        shown = ", ".join(f"{r.id} ({r.state.value})" for r in live)
        raise LiveRunError(f"not deleting live runs: {shown}; cancel them first")
    if not args.yes:
        if not sys.stdin.isatty():
            raise ManageError(
                f"rm would delete {len(ids)} experiment(s); confirm with --yes "
                "(stdin is not a terminal, so nothing can be asked)"
            )
        from core.textsafe import escape_cell

        listed = "\n".join(f"  {escape_cell(r.id)}  {escape_cell(r.title)}" for r in records)
        sys.stderr.write(
            f"delete {len(ids)} experiment(s), with their logs and task files?\n{listed}\n[y/N] "
        )
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            _say("nothing deleted")
            return EXIT_FAILED
    for exp_id in ids:
        store.remove(exp_id)  # checks liveness again, under the lock
        _say(f"deleted {exp_id}")
    return EXIT_OK


def _resolve_all(store: Store, refs: list[str]) -> list[str]:
    """Every reference resolved first (and each id once), so nothing changes on a typo."""
    ids: list[str] = []
    for ref in refs:
        exp_id = store.resolve(ref)
        if exp_id not in ids:
            ids.append(exp_id)
    return ids


def _say(message: str) -> None:
    from core.textsafe import escape_cell

    print(escape_cell(message), file=sys.stderr)
