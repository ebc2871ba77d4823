"""The jobs of one experiment: state, where, handle, exit, pending reason, last status age.

Shown under the Runs table for the highlighted experiment and in Detail. It re-renders only
when its text would change (the age column is coarse), so an idle screen stays idle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from core.store import executor_label
from nemorun_tui.widgets.format import (
    STATES,
    age,
    cell,
    duration,
    plain_row,
    state_label,
    when,
)


def state_text(state: str, app_styles: dict[str, str]) -> Text:
    """A coloured state label; ``app_styles`` maps states to resolved Rich styles."""
    return Text(state_label(state), style=app_styles.get(state, ""))


def resolved_state_styles(get_color: Callable[[str], str]) -> dict[str, str]:
    """Rich styles for states from the current theme's variables."""
    out = {}
    for state, shown in STATES.items():
        words = []
        for word in shown.style.split():
            value = get_color(word[1:]) if word.startswith("$") else word
            if value.startswith("#") or not word.startswith("$"):
                words.append(value)
        out[state] = " ".join(words)
    return out


#: States whose cause is looked for (core.results.triage).
_TRIAGED = ("FAILED", "CANCELLED", "UNKNOWN")


class JobsPanel(Static):
    """A compact table of an experiment's jobs."""

    DEFAULT_CSS = """
    JobsPanel {
        height: auto;
        max-height: 12;
        padding: 0 1;
        border-top: solid $primary 30%;
        background: $surface;
    }
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        last_poll: Callable[[tuple[str, str]], float | None] | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__("", id=id, classes=classes)
        self.clock = clock
        # When this app's monitor last heard from a job's (backend, target): a live job's
        # status is only rewritten in the store when it changes, so the store alone would
        # make a healthy, polled job look stale.
        self.last_poll = last_poll
        self.record: Any | None = None
        self._signature: tuple[Any, ...] | None = None
        #: Why each failed job failed (core.results.triage), found after the record is shown.
        self.causes: dict[str, Any] = {}

    def show(self, record: Any | None) -> None:
        """Show ``record``'s jobs (None clears); does nothing if the text would not change."""
        if record is None or self.record is None or record.id != self.record.id:
            self.causes = {}
        self.record = record
        self.tick()
        if record is not None and any(j.state.value in _TRIAGED for j in record.jobs):
            self.run_worker(self._find_causes(record), group="causes", exclusive=True)

    async def _find_causes(self, record: Any) -> None:
        """The failure causes of the record's failed jobs, from the engine thread (the
        stored cause when there is one; else the tails of the job's logs are read once)."""
        from core.results.triage import triage

        app: Any = self.app
        bridge = getattr(app, "bridge", None)
        if bridge is None:
            return

        async def find() -> dict[str, Any]:
            out = {}
            for job in record.jobs:
                if job.state.value in _TRIAGED:
                    try:
                        cause = await triage(app.engine, record.id, job.name)
                    except Exception:
                        continue  # the reason column keeps the scheduler's reason
                    if cause is not None:
                        out[job.name] = cause
            return out

        try:
            causes = await bridge.call(find())
        except Exception:
            return
        if self.record is not None and self.record.id == record.id:
            self.causes = causes
            self.tick()

    def tick(self) -> None:
        """Re-render if anything visible changed (called about once a second)."""
        record = self.record
        now = self.clock()
        if record is None:
            signature: tuple[Any, ...] = ("none",)
        else:
            signature = (*tuple(self._row(job, now) for job in record.jobs), record.id)
        signature = (*signature, tuple(sorted(self.causes)))
        if signature == self._signature:
            return
        self._signature = signature
        self.update(self._table(record, now) if record is not None else "")

    def _row(self, job: Any, now: float) -> tuple[str, ...]:
        where = executor_label(job.backend, job.profile)
        handle = cell(job.handle.job_id) if job.handle else "-"
        if len(handle) > 28:
            handle = "…" + handle[-27:]
        seen = "-"
        if job.observed_at is not None:
            # Live jobs: how fresh the status is. Ended jobs: when, absolutely (a ticking
            # age on a finished job would redraw the screen for no news).
            if job.state.is_terminal:
                seen = when(job.observed_at)
            else:
                latest = job.observed_at
                if self.last_poll is not None and job.handle is not None:
                    polled = self.last_poll((job.handle.backend, job.handle.target))
                    latest = max(latest, polled or 0.0)
                seen = f"{age(latest, now)} ago"
            if job.source:
                seen += f" via {job.source}"
        if job.state.is_terminal:
            took = duration(job.duration)
        elif job.submitted_at is not None:
            took = duration(now - job.submitted_at) if now - job.submitted_at >= 60 else "<1m"
        else:
            took = "-"
        exit_code = "-" if job.exit_code is None else str(job.exit_code)
        return (
            job.name,
            job.state.value,
            where,
            handle,
            exit_code,
            took,
            self._reason(job),
            seen,
        )

    def _reason(self, job: Any) -> str:
        cause = self.causes.get(job.name)
        if cause is None:
            return str(job.reason or "")
        return str(cause.summary)

    def _table(self, record: Any, now: float) -> Table:
        styles = resolved_state_styles(self._color)
        table = Table(
            box=None,
            expand=True,
            show_edge=False,
            pad_edge=False,
            header_style="bold dim",
        )
        for header, ratio in (
            ("JOB", 2),
            ("STATE", 2),
            ("EXECUTOR", 2),
            ("HANDLE", 3),
            ("EXIT", 1),
            ("TOOK", 1),
            ("REASON", 4),
            ("LAST STATUS", 3),
        ):
            table.add_column(header, ratio=ratio, no_wrap=True, overflow="ellipsis")
        for job in record.jobs:
            name, state, where, handle, exit_code, took, reason, seen = self._row(job, now)
            plain_row(
                table,
                name,
                state_text(state, styles),
                where,
                handle,
                exit_code,
                took,
                reason,
                seen,
            )
        return table

    def _color(self, name: str) -> str:
        try:
            variables = self.app.theme_variables
        except Exception:
            return ""
        return variables.get(name, "")
