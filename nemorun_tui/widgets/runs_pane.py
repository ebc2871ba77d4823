"""The Runs pane: filter bar, the experiments table, and the highlighted experiment's jobs.

The pane only renders what the app hands it (summaries from the store listing, the record of
the highlighted experiment); loading happens in the app's workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Input, Static

from nemorun_tui.widgets.jobs_panel import JobsPanel
from nemorun_tui.widgets.runs_table import RunsTable


class FilterInput(Input):
    """The ``/`` filter; escape clears it and returns to the table."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear", "Clear filter", show=False),
        Binding("down", "leave", "To table", show=False),
    ]

    class Done(Message):
        """The user left the filter (enter, escape or down)."""

    def action_clear(self) -> None:
        """Clear the filter and leave."""
        self.value = ""
        self.post_message(self.Done())

    def action_leave(self) -> None:
        """Keep the filter and go back to the table."""
        self.post_message(self.Done())


class RunsPane(Vertical):
    """Everything under the "Runs" tab."""

    DEFAULT_CSS = """
    RunsPane { height: 1fr; }
    RunsPane > #runs-filter { display: none; height: 3; border: tall $accent; }
    RunsPane.-filtering > #runs-filter { display: block; }
    RunsPane > #runs-status { height: 1; padding: 0 1; color: $text-muted; background: $panel; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("slash", "open_filter", "Filter runs", id="runs-filter"),
        Binding("t", "manage('tag')", "Tag", id="tag"),
        Binding("n", "manage('note')", "Note", show=False, id="note"),
        Binding("a", "manage('archive')", "Archive", show=False, id="archive"),
        Binding("D", "manage('delete')", "Delete", show=False, id="delete"),
        Binding("y", "manage('copy-id')", "Copy id", show=False, id="copy-id"),
        Binding("Y", "manage('copy-path')", "Copy path", show=False, id="copy-path"),
        Binding("o", "manage('shell')", "Shell in run folder", show=False, id="shell"),
        Binding("E", "manage('editor')", "$EDITOR on run folder", show=False, id="editor"),
    ]

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        last_poll: Callable[[tuple[str, str]], float | None] | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.last_poll = last_poll
        self._status = ""

    def compose(self) -> ComposeResult:
        yield FilterInput(
            placeholder="filter: words, state:running, backend:slurm, tag:x, archived:yes",
            id="runs-filter",
        )
        yield RunsTable(clock=self.clock, id="runs-table")
        yield Static("", id="runs-status")
        yield JobsPanel(clock=self.clock, last_poll=self.last_poll, id="runs-jobs")

    @property
    def table(self) -> RunsTable:
        """The experiments table."""
        return self.query_one(RunsTable)

    @property
    def jobs(self) -> JobsPanel:
        """The highlighted experiment's jobs."""
        return self.query_one(JobsPanel)

    def apply(self, summaries: Iterable[Any]) -> bool:
        """Show a fresh listing (keyed diff); returns whether anything changed."""
        changed = self.table.apply(summaries)
        if changed:
            self.update_status()
        return changed

    def update_status(self, extra: str = "") -> None:
        """One line: counts, filter, sort, and any poll trouble."""
        table = self.table
        parts = [f"{table.row_count} of {table.total_count} experiments"]
        archived = table.archived_count
        if archived and "archived:" not in table.filter_text:
            parts.append(f"{archived} archived hidden (archived:yes shows them)")
        marked = len(table.marked_ids())
        if marked:
            parts.append(f"{marked} marked (space: mark, esc: unmark all)")
        if table.filter_text:
            parts.append(f"filter “{table.filter_text}”")
        arrow = "▼" if table.sort_reverse else "▲"
        parts.append(f"sort {table.sort_key} {arrow}")
        if extra:
            parts.append(extra)
        text = "  ·  ".join(parts)
        if text != self._status:
            self._status = text
            self.query_one("#runs-status", Static).update(Content(text))

    # -- filter -------------------------------------------------------------------------
    def action_open_filter(self) -> None:
        """``/``: filter the runs."""
        self.open_filter()

    def open_filter(self) -> None:
        """Show and focus the filter input."""
        self.add_class("-filtering")
        self.query_one(FilterInput).focus()

    @on(Input.Changed, "#runs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value)
        self.update_status()

    @on(Input.Submitted, "#runs-filter")
    def _filter_submitted(self) -> None:
        self._leave_filter()

    @on(FilterInput.Done)
    def _filter_done(self) -> None:
        self._leave_filter()

    def _leave_filter(self) -> None:
        if not self.query_one(FilterInput).value:
            self.remove_class("-filtering")
        self.table.focus()

    def action_clear_filter(self) -> None:
        """Escape on the table clears an active filter, or else the marks."""
        box = self.query_one(FilterInput)
        if box.value:
            box.value = ""
        elif not self.has_class("-filtering"):
            self.table.clear_marks()
        self.remove_class("-filtering")
        self.table.focus()

    def targets(self) -> list[str]:
        """What an action applies to: the marked runs, else the one under the cursor."""
        marked = self.table.marked_ids()
        if marked:
            return marked
        return [self.table.cursor_id] if self.table.cursor_id else []

    def action_manage(self, action: str) -> None:
        """Tag, note, archive, delete, copy or open the marked runs (or the highlighted)."""
        from nemorun_tui.messages import ManageRequested

        self.post_message(ManageRequested(action, self.targets()))

    @on(RunsTable.MarksChanged)
    def _marks_changed(self) -> None:
        self.update_status()

    @on(RunsTable.Sorted)
    def _sorted(self) -> None:
        self.update_status()
