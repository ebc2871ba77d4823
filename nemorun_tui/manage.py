"""Run management from the app: tag, note, archive, delete, bulk cancel, copy and open.

Panes post a :class:`~nemorun_tui.messages.ManageRequested` naming an action and the
experiments (the marked ones, or the one under the cursor); the app hands it to
:func:`handle`, which asks what it must ask (tags, a note, a confirmation) in a modal and
calls the store on the engine thread. Nothing destructive happens without a confirmation,
and a live run is never deleted (the store refuses with ``LiveRunError`` too, in case it
started since the question was asked).

Open a shell or ``$EDITOR`` runs the user's own program in the experiment's folder on this
machine, with the app suspended; nothing of the job runs in the app's process.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemorun_tui.messages import StoreChanged
from nemorun_tui.widgets.format import TERMINAL_STATES

if TYPE_CHECKING:
    from nemorun_tui.app import NemorunApp
    from nemorun_tui.messages import ManageRequested

#: The actions :func:`handle` knows (the message's ``action``).
ACTIONS = (
    "cancel",
    "tag",
    "note",
    "archive",
    "delete",
    "copy-id",
    "copy-path",
    "shell",
    "editor",
)


def handle(app: NemorunApp, message: ManageRequested) -> None:
    """Start the action as a worker (modals are awaited there, never in a handler)."""
    ids = [i for i in message.exp_ids if i]
    if not ids:
        app.notify("no experiment selected", severity="warning", timeout=3)
        return
    runner = _ACTIONS.get(message.action)
    if runner is None:
        app.notify(f"unknown action {message.action}", severity="error")
        return
    app.run_worker(runner(app, ids), group=f"manage-{message.action}", exit_on_error=False)


def _plural(ids: list[str]) -> str:
    return ids[0] if len(ids) == 1 else f"{len(ids)} experiments"


async def _confirm(app: NemorunApp, question: str, yes: str, no: str = "Keep") -> bool:
    from nemorun_tui.screens.confirm import ConfirmScreen

    screen: Any = ConfirmScreen(question, yes=yes, no=no)
    return bool(await app.push_screen_wait(screen))


async def _ask(app: NemorunApp, title: str, fields: list[tuple[str, str, str]]) -> list[str] | None:
    from nemorun_tui.screens.text_input import TextInputScreen

    screen: Any = TextInputScreen(title, fields)
    answer: list[str] | None = await app.push_screen_wait(screen)
    return answer


async def _load_all(app: NemorunApp, ids: list[str]) -> list[Any]:
    """The records of ``ids`` (ones that cannot be read are reported and left out)."""
    records = []
    for exp_id in ids:
        try:
            records.append(await app.bridge.run(app.engine.store.load, exp_id))
        except Exception as exc:
            app.report_error(f"{exp_id}: {exc}", every=0)
    return records


def _changed(app: NemorunApp, ids: list[str]) -> None:
    """The store changed: refresh the listing, and Detail if it shows one of them."""
    app.post_message(StoreChanged())
    if app.panes_ready.is_set() and app.detail_pane.exp_id in ids:
        app._load_detail(app.detail_pane.exp_id)


# -- cancel ---------------------------------------------------------------------------------
async def cancel(app: NemorunApp, ids: list[str]) -> None:
    """Cancel every live job of several experiments, after one confirmation."""
    if len(ids) == 1:
        from nemorun_tui.messages import CancelRequested

        app.post_message(CancelRequested(ids[0]))  # the one-run flow names its jobs
        return
    records = await _load_all(app, ids)
    live = [r for r in records if any(not j.state.is_terminal for j in r.jobs)]
    if not live:
        app.notify(f"nothing to cancel: every job of the {len(ids)} marked has ended", timeout=3)
        return
    jobs = sum(1 for r in live for j in r.jobs if not j.state.is_terminal)
    question = (
        f"Cancel {jobs} live job(s) of {len(live)} experiments?\n"
        + "\n".join(f"• {r.id}" for r in live[:8])
        + ("\n…" if len(live) > 8 else "")
        + "\nRunning processes are stopped."
    )
    if not await _confirm(app, question, yes="Cancel runs"):
        app.notify("not cancelled", timeout=2)
        return
    asked: list[str] = []
    for record in live:
        try:
            names = await app.bridge.call(app.engine.cancel(record.id))
            asked.extend(f"{record.id}/{n}" for n in names)
        except Exception as exc:
            app.report_error(f"cancel of {record.id} failed: {exc}", every=0)
    _changed(app, ids)
    app.notify(f"cancel requested for {len(asked)} job(s)", timeout=3)


# -- tags and notes ---------------------------------------------------------------------------
async def tag(app: NemorunApp, ids: list[str]) -> None:
    """One run: edit its tags. Several: add tags to each (``-tag`` removes one)."""
    from nemorun_tui.screens.text_input import split_tags

    records = await _load_all(app, ids)
    if not records:
        return
    if len(records) == 1:
        current = " ".join(records[0].tags)
        answer = await _ask(
            app,
            f"Tags of {records[0].id}",
            [("tags, separated by spaces or commas (empty: none)", current, "baseline lr-sweep")],
        )
    else:
        answer = await _ask(
            app,
            f"Tags for {len(records)} marked experiments",
            [("tags to add; -tag removes one", "", "baseline -draft")],
        )
    if answer is None:
        return
    words = split_tags(answer[0])
    for record in records:
        if len(records) == 1:
            tags = words
        else:
            remove = {w[1:] for w in words if w.startswith("-")}
            add = [w for w in words if not w.startswith("-")]
            tags = [t for t in [*record.tags, *add] if t not in remove]
        try:
            await app.bridge.run(app.engine.store.set_tags, record.id, tags)
        except Exception as exc:
            app.notify(f"{record.id}: {exc}", severity="error", timeout=6)
            return
    _changed(app, ids)
    app.notify(f"tags of {_plural(ids)}: {' '.join(words) or '(none)'}", timeout=3)


async def note(app: NemorunApp, ids: list[str]) -> None:
    """Edit the note of one run (of several: the same note on each)."""
    records = await _load_all(app, ids)
    if not records:
        return
    current = records[0].note if len(records) == 1 else ""
    answer = await _ask(
        app, f"Note for {_plural(ids)}", [("note (empty removes it)", current, "why this run")]
    )
    if answer is None:
        return
    for record in records:
        try:
            await app.bridge.run(app.engine.store.set_note, record.id, answer[0])
        except Exception as exc:
            app.notify(f"{record.id}: {exc}", severity="error", timeout=6)
            return
    _changed(app, ids)
    app.notify(f"note of {_plural(ids)} {'saved' if answer[0] else 'removed'}", timeout=3)


# -- archive and delete ------------------------------------------------------------------------
async def archive(app: NemorunApp, ids: list[str]) -> None:
    """Archive (hide from the default list) or, when all are archived, bring them back."""
    records = await _load_all(app, ids)
    if not records:
        return
    restore = all(r.archived for r in records)
    if restore:
        question = f"Bring {_plural(ids)} back into the list?"
        yes = "Unarchive"
    else:
        question = (
            f"Archive {_plural(ids)}?\nArchived runs are hidden from the list "
            "(filter archived:yes shows them); nothing is deleted and live jobs keep running."
        )
        yes = "Archive"
    if not await _confirm(app, question, yes=yes):
        app.notify("nothing changed", timeout=2)
        return
    for record in records:
        try:
            await app.bridge.run(app.engine.store.set_archived, record.id, not restore)
        except Exception as exc:
            app.notify(f"{record.id}: {exc}", severity="error", timeout=6)
            return
    if not restore:
        app.runs_table.clear_marks()
    _changed(app, ids)
    app.notify(f"{_plural(ids)} {'unarchived' if restore else 'archived'}", timeout=3)


async def delete(app: NemorunApp, ids: list[str]) -> None:
    """Delete finished runs (folders, logs, index rows), after a confirmation; never a live
    one: those are named and left alone."""
    from core.store import LiveRunError

    records = await _load_all(app, ids)
    live = [r.id for r in records if r.state.value not in TERMINAL_STATES]
    done = [r for r in records if r.state.value in TERMINAL_STATES]
    if live:
        app.notify(
            f"not deleting {len(live)} live run(s): {', '.join(live[:3])}"
            + ("…" if len(live) > 3 else "")
            + " (cancel first)",
            severity="warning",
            timeout=6,
        )
    if not done:
        return
    question = (
        f"Delete {_plural([r.id for r in done])} for good?\n"
        + "\n".join(f"• {r.id}  {r.title}" for r in done[:8])
        + ("\n…" if len(done) > 8 else "")
        + "\nTheir folders, logs and outputs in the store are removed."
    )
    if not await _confirm(app, question, yes="Delete"):
        app.notify("nothing deleted", timeout=2)
        return
    removed = []
    for record in done:
        try:
            await app.bridge.run(app.engine.store.remove, record.id)
            removed.append(record.id)
        except LiveRunError:
            app.notify(f"{record.id} is live again: not deleted", severity="warning")
        except Exception as exc:
            app.notify(f"{record.id}: {exc}", severity="error", timeout=6)
    app.runs_table.marked.difference_update(removed)
    _changed(app, ids)
    app.notify(f"deleted {_plural(removed)}" if removed else "nothing deleted", timeout=3)


# -- copy and open -----------------------------------------------------------------------------
async def copy_id(app: NemorunApp, ids: list[str]) -> None:
    """Copy the id(s) to the clipboard with OSC 52 (works over SSH)."""
    text = "\n".join(ids) if len(ids) > 1 else ids[0]
    app.copy_to_clipboard(text)
    app.notify(f"copied {text if len(ids) == 1 else f'{len(ids)} ids'}", timeout=3)


async def experiment_path(app: NemorunApp, exp_id: str) -> Path:
    """The folder to copy or open: the job's own folder for a one-job run (its logs and
    outputs), else the experiment's folder."""
    store = app.engine.store

    def where() -> Path:
        record = store.load(exp_id)
        if len(record.jobs) == 1:
            return Path(store.job_dir(exp_id, record.jobs[0].name))
        return Path(store.exp_dir(exp_id))

    return await app.bridge.run(where)


async def copy_path(app: NemorunApp, ids: list[str]) -> None:
    """Copy the folder's path, and show it (a terminal without OSC 52 still gets it)."""
    paths = [str(await experiment_path(app, i)) for i in ids]
    app.copy_to_clipboard("\n".join(paths))
    app.notify("copied " + ", ".join(paths), title="Path", timeout=8)


def shell_command() -> list[str]:
    """The user's shell (``$SHELL``, else ``/bin/sh``)."""
    return [os.environ.get("SHELL") or "/bin/sh"]


def editor_command(path: Path) -> list[str]:
    """``$VISUAL`` or ``$EDITOR`` (with its own arguments) on ``path``; ``vi`` otherwise."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    return [*shlex.split(editor), str(path)]


async def _open(app: NemorunApp, ids: list[str], editor: bool) -> None:
    from textual.app import SuspendNotSupported

    path = await experiment_path(app, ids[0])
    if not path.is_dir():
        app.notify(f"{path} does not exist (yet)", severity="warning", timeout=5)
        return
    argv = editor_command(path) if editor else shell_command()
    try:
        with app.suspend():
            if not editor:
                print(f"nemorun-tui: shell in {path}; exit to return to the app", flush=True)
            # The user's own program on their terminal, in the run's folder; the argv is
            # a list (never a shell string built from the path).
            code = subprocess.run(argv, cwd=path, check=False).returncode
    except SuspendNotSupported:
        app.notify(f"cannot open a terminal here; the folder is {path}", timeout=8)
        return
    except OSError as exc:
        app.notify(f"cannot run {argv[0]}: {exc}", severity="error", timeout=6)
        return
    if code:
        app.notify(f"{argv[0]} exited with {code}", severity="warning", timeout=4)


async def shell(app: NemorunApp, ids: list[str]) -> None:
    """Open the user's shell in the run's folder (the app is suspended until it exits)."""
    await _open(app, ids, editor=False)


async def editor(app: NemorunApp, ids: list[str]) -> None:
    """Open ``$EDITOR`` on the run's folder (the app is suspended until it exits)."""
    await _open(app, ids, editor=True)


_ACTIONS = {
    "cancel": cancel,
    "tag": tag,
    "note": note,
    "archive": archive,
    "delete": delete,
    "copy-id": copy_id,
    "copy-path": copy_path,
    "shell": shell,
    "editor": editor,
}


# -- relaunch ---------------------------------------------------------------------------------
def remote_jobs(plan: Any) -> list[str]:
    """``job on slurm at ssh://…`` for each job of ``plan`` that leaves this machine."""
    out = []
    for job in plan.jobs:
        executor = job.executor
        if executor.backend != "local":
            target = executor.target()
            out.append(f"{job.name} on {executor.profile_name or executor.backend} ({target})")
    return out


async def confirm_relaunch(app: NemorunApp, exp_id: str, plan: Any) -> bool:
    """``r`` is one key away from ``e``: a relaunch that submits to a cluster (queue time,
    allocation) is confirmed first; a local one goes straight ahead."""
    remote = remote_jobs(plan)
    if not remote:
        return True
    question = (
        f"Relaunch {exp_id} as it was?\nIt is submitted to the cluster:\n"
        + "\n".join(f"• {r}" for r in remote[:8])
        + ("\n…" if len(remote) > 8 else "")
    )
    return await _confirm(app, question, yes="Relaunch", no="Back")
