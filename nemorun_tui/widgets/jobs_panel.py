"""The jobs of one experiment: state, where, handle, exit, pending reason, last status age.

Shown under the Runs table for the highlighted experiment and in Detail. It re-renders only
when its text would change (the age column is coarse), so an idle screen stays idle.

It can be focused (tab from the table): a cursor then picks one job, and ``l`` and ``c``
act on that job alone — the logs or the cancel of one job of a multi-job experiment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.binding import Binding, BindingType
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


def relative_when(ts: float, now: float) -> str:
    """``3m ago``; the date and time beyond a day (an age in days says little)."""
    if now - ts >= 86400:
        return when(ts)
    return f"{age(ts, now)} ago"


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

#: Below this width the handle and last-status columns give way (80x24 terminals).
NARROW = 110


class JobsPanel(Static, can_focus=True):
    """A compact table of an experiment's jobs; focused, a cursor picks one job."""

    DEFAULT_CSS = """
    JobsPanel {
        height: auto;
        max-height: 45%;
        padding: 0 1;
        border-top: solid $primary 30%;
        background: $surface;
    }
    JobsPanel:focus { border-top: solid $accent; background-tint: $foreground 3%; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("l", "job_logs", "Logs of this job", id="job-logs"),
        Binding("c", "job_cancel", "Cancel this job", id="job-cancel"),
        Binding("escape", "leave", "Back to the list", show=False),
    ]

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        last_poll: Callable[[tuple[str, str]], float | None] | None = None,
        id: str | None = None,
        classes: str | None = None,
        max_rows: int | None = None,
    ) -> None:
        super().__init__("", id=id, classes=classes)
        self.clock = clock
        self.max_rows = max_rows
        # When this app's monitor last heard from a job's (backend, target): a live job's
        # status is only rewritten in the store when it changes, so the store alone would
        # make a healthy, polled job look stale.
        self.last_poll = last_poll
        self.record: Any | None = None
        self._signature: tuple[Any, ...] | None = None
        #: The job the cursor is on (index into the record's jobs), shown while focused.
        self.cursor = 0
        #: Why each failed job failed (core.results.triage), found after the record is shown.
        self.causes: dict[str, Any] = {}

    def show(self, record: Any | None) -> None:
        """Show ``record``'s jobs (None clears); does nothing if the text would not change."""
        if record is None or self.record is None or record.id != self.record.id:
            self.cursor = 0
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

    @property
    def current_job(self) -> str | None:
        """The job under the cursor."""
        if self.record is None or not self.record.jobs:
            return None
        return str(self.record.jobs[min(self.cursor, len(self.record.jobs) - 1)].name)

    def action_cursor(self, delta: int) -> None:
        """Move the job cursor."""
        if self.record is None or not self.record.jobs:
            return
        self.cursor = max(0, min(len(self.record.jobs) - 1, self.cursor + delta))
        self.tick()

    def action_job_logs(self) -> None:
        """Open the log of the job under the cursor."""
        from nemorun_tui.messages import OpenLogs

        job = self.current_job
        if self.record is not None and job is not None:
            self.post_message(OpenLogs(self.record.id, job, sender=self))

    def action_job_cancel(self) -> None:
        """Cancel the job under the cursor (the app asks for confirmation)."""
        from nemorun_tui.messages import CancelRequested

        job = self.current_job
        if self.record is not None and job is not None:
            self.post_message(CancelRequested(self.record.id, job))

    def action_leave(self) -> None:
        """Escape: back to the previous widget (the Runs table)."""
        self.screen.focus_previous()

    def on_focus(self) -> None:
        """Show the cursor."""
        self._signature = None
        self.tick()

    def on_blur(self) -> None:
        """Hide the cursor."""
        self._signature = None
        self.tick()

    def on_resize(self) -> None:
        """Columns depend on the width, the rows shown on the height."""
        self._signature = None
        self.tick()

    def tick(self) -> None:
        """Re-render if anything visible changed (called about once a second)."""
        record = self.record
        now = self.clock()
        if record is None:
            signature: tuple[Any, ...] = ("none",)
        else:
            signature = (
                *tuple(self._row(job, now) for job in record.jobs),
                record.id,
                self.has_focus and self.cursor,
                self.size.width < NARROW,
                self._room(),
            )
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
            # Live jobs: how fresh the status is. Ended jobs: when, relative and coarse
            # (minutes, then hours: a redraw a minute at most, for no news).
            if job.state.is_terminal:
                seen = relative_when(job.observed_at, now)
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
        elif job.started_at is not None:  # running: its run time so far
            ran = now - job.started_at
            took = duration(ran) if ran >= 60 else "<1m"
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

    def _room(self) -> int:
        """Job rows to show at most: ``max_rows``, or what 45 % of the parent holds (less
        the border and the header); 0 (all) before the first layout."""
        if self.max_rows is not None:
            return self.max_rows
        parent = self.parent
        height = parent.size.height if parent is not None else 0  # type: ignore[attr-defined]
        return max(2, int(height * 0.45) - 2) if height else 0

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
        narrow = 0 < self.size.width < NARROW
        # (header, ratio or fixed width, optional): fixed widths for the short columns
        # (a ratio squeezed "✔ SUCCEEDED" and "1m35s" on 80 columns).
        columns: list[tuple[str, int, int | None, bool]] = [
            ("JOB", 2, None, False),
            ("STATE", 0, 12, False),
            ("EXECUTOR", 2, None, False),
            ("HANDLE", 3, None, True),
            ("EXIT", 0, 4, False),
            ("TOOK", 0, 6, False),
            ("REASON", 4, None, False),
            ("LAST STATUS", 3, None, True),
        ]
        keep = [i for i, column in enumerate(columns) if not (narrow and column[3])]
        for i in keep:
            header, ratio, width, _ = columns[i]
            table.add_column(
                header,
                ratio=ratio or None,
                width=width,
                no_wrap=True,
                overflow="ellipsis",
            )
        jobs = list(enumerate(record.jobs))
        room = self._room()
        cursor = min(self.cursor, len(jobs) - 1) if jobs else 0
        if room and len(jobs) > room:
            # Keep the cursor's row in view; the last line says how many more there are.
            start = max(0, min(cursor - room // 2, len(jobs) - room + 1))
            jobs = jobs[start : start + room - 1]
        for index, job in jobs:
            cells = self._row(job, now)
            shown: list[Any] = [state_text(c, styles) if i == 1 else c for i, c in enumerate(cells)]
            plain_row(table, *(shown[i] for i in keep))
            if self.has_focus and index == cursor:
                table.rows[-1].style = "reverse"
        hidden = len(record.jobs) - len(jobs)
        if hidden:
            plain_row(table, Text(f"… {hidden} more (j/k scroll)", style="dim"))
        return table

    def _color(self, name: str) -> str:
        try:
            variables = self.app.theme_variables
        except Exception:
            return ""
        return variables.get(name, "")
