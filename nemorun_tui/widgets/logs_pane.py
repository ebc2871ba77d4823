"""The Logs pane: one tab per (job, stream), a status line, and a search/filter box.

The pane knows nothing about backends: the app resolves which file shows a job's output
(the local backend's own file, or a spool the app fills from the backend's log stream) and
hands the pane a path. Each tab is a :class:`~nemorun_tui.logview.view.LogView`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import ContentSwitcher, Input, Static, Tab, Tabs

from nemorun_tui.logview.reader import compile_pattern
from nemorun_tui.logview.view import LogView
from nemorun_tui.messages import OpenLogs
from nemorun_tui.widgets.format import TERMINAL_STATES, cell, human_bytes

if TYPE_CHECKING:
    from core.engine.protocol import LogStream


#: Open tabs at most: opening one more closes the oldest (not the active) tab, so tabs
#: never pile up as runs are looked at one after another.
MAX_TABS = 8


@dataclass
class TabSearch:
    """One tab's search and filter: each tab keeps its own (flags are the pane's)."""

    search: str = ""
    filter: str = ""


@dataclass(frozen=True)
class JobEnd:
    """How a job is doing, for the status line: its state, and its exit code once ended."""

    state: str
    exit_code: int | None = None


def line_pattern(text: str, *, regex: bool, case: bool) -> re.Pattern[str]:
    """The str twin of :func:`compile_pattern` (highlighting one visible line)."""
    source = text if regex else re.escape(text)
    return re.compile(source, re.MULTILINE | (0 if case else re.IGNORECASE))


@dataclass(frozen=True)
class LogKey:
    """What a tab shows."""

    exp_id: str
    job: str
    stream: LogStream

    @property
    def label(self) -> str:
        """Tab label: job name, experiment id tail, and the stream when it is stderr."""
        short = self.exp_id if len(self.exp_id) <= 28 else "…" + self.exp_id[-27:]
        suffix = " [stderr]" if self.stream == "stderr" else ""
        return f"{cell(self.job)} · {cell(short)}{suffix}"


class SearchBox(Input):
    """The search (``/``) or filter (``f``) box; escape leaves without applying."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave", "Leave", show=False),
    ]

    mode = "search"

    def action_leave(self) -> None:
        """Hide the box and return to the log."""
        pane = self.parent
        if isinstance(pane, LogsPane):
            pane.hide_search()


class LogsPane(Vertical):
    """Live logs of several jobs, in tabs."""

    DEFAULT_CSS = """
    LogsPane { height: 1fr; }
    LogsPane > Tabs { height: 2; }
    LogsPane > #log-empty { height: 1fr; padding: 1 2; color: $text-muted; }
    LogsPane > #log-switcher { height: 1fr; }
    LogsPane > #log-status { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    LogsPane > SearchBox { display: none; height: 3; border: tall $accent; }
    LogsPane.-searching > SearchBox { display: block; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        # "/" finds within the pane on screen everywhere: here the log, in Runs the runs,
        # in Compose a field.
        Binding("slash", "start_search", "Search log", id="log-search"),
        Binding("f", "start_filter", "Filter lines", id="log-filter"),
        Binding("s", "switch_stream", "stdout/stderr", id="log-stream"),
        Binding("x", "toggle_regex", "Regex on/off", id="log-regex"),
        Binding("i", "toggle_case", "Case on/off", id="log-case"),
        Binding("plus,equals_sign", "context(1)", "More context", show=False),
        Binding("minus", "context(-1)", "Less context", show=False),
        Binding("right_square_bracket", "tab(1)", "Next tab", show=False),
        Binding("left_square_bracket", "tab(-1)", "Previous tab", show=False),
        Binding("d", "close_tab", "Close tab", id="log-close"),
        Binding("R", "rank(1)", "Next rank", id="log-rank", show=False),
        Binding("A", "rank(0)", "All ranks", show=False),
    ]

    class Closed(Message):
        """A tab was closed: whatever feeds its file (a remote log copy) can stop."""

        def __init__(self, key: LogKey) -> None:
            super().__init__()
            self.key = key

    def __init__(self, *, id: str | None = None, max_rate: float = 10.0) -> None:
        super().__init__(id=id)
        self.max_rate = max_rate
        self._keys: dict[str, LogKey] = {}
        self._searches: dict[str, TabSearch] = {}
        self._jobs: dict[tuple[str, str], JobEnd] = {}
        self._counter = 0
        self.regex = False
        self.case = False
        self.context = 2
        self._status = ""
        #: Show one rank's lines of a launcher's log (``[rank<N>]:`` prefixed), or all.
        self.rank: int | None = None

    def compose(self) -> ComposeResult:
        yield Tabs(id="log-tabs")
        yield Static("No log open. Select a run in Runs (1) and press l.", id="log-empty")
        yield ContentSwitcher(id="log-switcher")
        yield Static("", id="log-status")
        yield SearchBox(placeholder="search (enter: find next)", id="log-search")

    # -- per-tab search -------------------------------------------------------------------
    def _tab_search(self) -> TabSearch:
        current = self.query_one("#log-switcher", ContentSwitcher).current or ""
        return self._searches.setdefault(current, TabSearch())

    @property
    def search_text(self) -> str:
        """The active tab's search ('' when none)."""
        return self._tab_search().search

    @search_text.setter
    def search_text(self, value: str) -> None:
        self._tab_search().search = value

    @property
    def filter_text(self) -> str:
        """The active tab's line filter ('' when none)."""
        return self._tab_search().filter

    @filter_text.setter
    def filter_text(self, value: str) -> None:
        self._tab_search().filter = value

    # -- job state --------------------------------------------------------------------------
    def set_job_state(self, exp_id: str, job: str, state: str, exit_code: int | None) -> None:
        """Tell the pane how a job is doing (the app does, on open and on state changes):
        the status line then says ENDED or FAILED instead of following a finished log."""
        new = JobEnd(state, exit_code)
        if self._jobs.get((exp_id, job)) != new:
            self._jobs[(exp_id, job)] = new
            self._update_status()

    # -- tabs ---------------------------------------------------------------------------
    @property
    def view(self) -> LogView | None:
        """The LogView of the active tab."""
        switcher = self.query_one("#log-switcher", ContentSwitcher)
        if switcher.current is None:
            return None
        try:
            return self.query_one(f"#{switcher.current}", LogView)
        except Exception:
            return None

    @property
    def current_key(self) -> LogKey | None:
        """What the active tab shows."""
        switcher = self.query_one("#log-switcher", ContentSwitcher)
        return self._keys.get(switcher.current or "")

    def current_exp_id(self) -> str | None:
        """The experiment of the active tab (the app's keys act on it)."""
        key = self.current_key
        return key.exp_id if key else None

    def open_log(self, key: LogKey, path: str, *, replace: bool = False) -> LogView:
        """Show ``path`` in a tab for ``key`` (reusing an open one); returns its view."""
        for view_id, existing in self._keys.items():
            if existing == key:
                self._activate(view_id)
                return self.query_one(f"#{view_id}", LogView)
        if replace and self.current_key is not None:
            self.action_close_tab()
        while len(self._keys) >= MAX_TABS:
            self._close(next(iter(self._keys)))  # the oldest; the new tab becomes active
        self._counter += 1
        view_id = f"log-{self._counter}"
        view = LogView(path, label=key.label, id=view_id, max_rate=self.max_rate)
        self._keys[view_id] = key
        self.query_one("#log-switcher", ContentSwitcher).mount(view)
        self.query_one(Tabs).add_tab(Tab(Content(key.label), id=f"tab-{view_id}"))
        self.query_one("#log-empty").display = False
        self._activate(view_id)
        self._apply_search_to(view)
        return view

    def _activate(self, view_id: str) -> None:
        self.query_one("#log-switcher", ContentSwitcher).current = view_id
        tabs = self.query_one(Tabs)
        if tabs.active != f"tab-{view_id}":
            tabs.active = f"tab-{view_id}"
        self.call_after_refresh(self.focus_default)
        self._update_status()

    @on(Tabs.TabActivated, "#log-tabs")
    def _tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tab is None or event.tab.id is None:
            return
        view_id = event.tab.id.removeprefix("tab-")
        if view_id in self._keys:
            self.query_one("#log-switcher", ContentSwitcher).current = view_id
            self._update_status()

    def focus_default(self) -> None:
        """Focus the active log (pane switch)."""
        view = self.view
        if view is not None:
            view.focus()

    def action_tab(self, delta: int) -> None:
        """Next/previous tab."""
        ids = list(self._keys)
        if not ids:
            return
        current = self.query_one("#log-switcher", ContentSwitcher).current
        index = ids.index(current) if current in ids else 0
        self._activate(ids[(index + delta) % len(ids)])

    def action_close_tab(self) -> None:
        """Close the active tab (its reader thread stops)."""
        switcher = self.query_one("#log-switcher", ContentSwitcher)
        current = switcher.current
        if current is None or current not in self._keys:
            return
        ids = list(self._keys)
        index = ids.index(current)
        self._close(current)
        switcher.current = None
        if self._keys:
            remaining = list(self._keys)
            self._activate(remaining[min(index, len(remaining) - 1)])
        else:
            self.query_one("#log-empty").display = True
            self._update_status()

    def _close(self, view_id: str) -> None:
        """Remove one tab and its view; whatever fed it is told (:class:`Closed`)."""
        closed = self._keys.pop(view_id)
        self._searches.pop(view_id, None)
        self.post_message(self.Closed(closed))
        self.query_one(Tabs).remove_tab(f"tab-{view_id}")
        self.query_one(f"#{view_id}", LogView).remove()

    @property
    def tab_count(self) -> int:
        """Open tabs."""
        return len(self._keys)

    def action_switch_stream(self) -> None:
        """Show the other stream (stdout ↔ stderr) of the active job in this tab."""
        key = self.current_key
        if key is None:
            return
        other: LogStream = "stderr" if key.stream == "stdout" else "stdout"
        self.post_message(OpenLogs(key.exp_id, key.job, other, sender=self))

    # -- search and filter ------------------------------------------------------------------
    def action_start_search(self) -> None:
        """``/``: search the log."""
        self.start_search()

    def start_search(self) -> None:
        """``/``: type a pattern; enter highlights it and jumps to the next match."""
        self._open_box("search", self.search_text)

    def action_start_filter(self) -> None:
        """``f``: show only lines matching a pattern (with context lines)."""
        self._open_box("filter", self.filter_text)

    def _open_box(self, mode: str, value: str) -> None:
        if self.view is None:
            return
        box = self.query_one(SearchBox)
        box.mode = mode
        flags = f"{'regex' if self.regex else 'text'}, {'case' if self.case else 'no case'}"
        if mode == "search":
            box.placeholder = f"search ({flags}); enter: find next, empty: clear"
        else:
            box.placeholder = (
                f"filter ({flags}, {self.context} context lines); enter: apply, empty: clear"
            )
        box.value = value
        self.add_class("-searching")
        box.focus()

    def hide_search(self) -> None:
        """Hide the box and focus the log."""
        self.remove_class("-searching")
        self.focus_default()

    @on(Input.Submitted, "#log-search")
    def _submitted(self, event: Input.Submitted) -> None:
        box = self.query_one(SearchBox)
        text = event.value
        try:
            if text:
                compile_pattern(text, regex=self.regex, case=self.case)
        except re.error as exc:
            box.placeholder = f"bad pattern: {exc}"
            self.notify(f"bad pattern: {exc}", severity="error", timeout=4)
            return
        if box.mode == "search":
            self.search_text = text
        else:
            self.filter_text = text
        self.hide_search()
        view = self.view
        if view is not None:
            self._apply_search_to(view)
            if box.mode == "search" and text:
                # Following the end: the most recent match is the interesting one.
                view.action_find(view.follow)
        self._update_status()

    def _apply_search_to(self, view: LogView) -> None:
        """Give ``view`` its tab's search and filter, compiled with the current flags."""
        tab = self._searches.setdefault(str(view.id), TabSearch())
        shown = tab.search or tab.filter
        if shown:
            view.set_highlight(line_pattern(shown, regex=self.regex, case=self.case))
        else:
            view.set_highlight(None)
        if tab.search:
            view.reader.set_count(compile_pattern(tab.search, regex=self.regex, case=self.case))
        else:
            view.reader.set_count(None)
        if tab.filter:
            pattern = compile_pattern(tab.filter, regex=self.regex, case=self.case)
            view.reader.set_filter(pattern, self.context)
            view.follow = True
            view.top = 0
        elif self.rank is not None:
            view.reader.set_filter(re.compile(rb"^\[rank%d\]:" % self.rank, re.MULTILINE), 0)
            view.follow = True
            view.top = 0
        else:
            view.reader.set_filter(None)

    def action_rank(self, step: int) -> None:
        """``R``: show the next rank's lines only (torchrun/ft logs); ``A``: every rank."""
        if step == 0:
            self.rank = None
        else:
            self.rank = 0 if self.rank is None else self.rank + step
        self._reapply("all ranks" if self.rank is None else f"rank {self.rank} only")

    def action_toggle_regex(self) -> None:
        """Treat the search/filter text as a regular expression, or as plain text."""
        self.regex = not self.regex
        self._reapply(f"regex {'on' if self.regex else 'off'}")

    def action_toggle_case(self) -> None:
        """Match case, or ignore it."""
        self.case = not self.case
        self._reapply(f"case {'sensitive' if self.case else 'insensitive'}")

    def action_context(self, delta: int) -> None:
        """More or fewer context lines around filtered matches."""
        self.context = max(0, min(20, self.context + delta))
        self._reapply(f"{self.context} context lines")

    def _reapply(self, what: str) -> None:
        """The flags changed: every tab's search and filter are compiled again with them."""
        try:
            for view_id in self._keys:
                self._apply_search_to(self.query_one(f"#{view_id}", LogView))
        except re.error as exc:
            self.notify(f"bad pattern: {exc}", severity="error", timeout=4)
            return
        self.notify(what, timeout=1.5)
        self._update_status()

    # -- status ----------------------------------------------------------------------------
    @on(LogView.StatusChanged)
    def _view_status(self, event: LogView.StatusChanged) -> None:
        if event.view is self.view:
            self._update_status()

    def _update_status(self) -> None:
        view = self.view
        key = self.current_key
        if view is None or key is None:
            text = ""
        else:
            window = view.window
            # Most telling first, so a narrow terminal still shows it: how the job is
            # doing, then search and filter counts, then sizes.
            parts: list[str] = [key.stream]
            if self.rank is not None:
                parts.append(f"rank {self.rank}")
            end = self._jobs.get((key.exp_id, key.job))
            ended = end is not None and end.state in TERMINAL_STATES
            if ended and end is not None:
                parts.append(ended_label(end))
                if end.state == "FAILED" and key.stream == "stdout":
                    parts.append("errors are usually in stderr: s shows it")
            if not view.follow:
                new = view.new_lines
                parts.append(f"PAUSED +{new:,} new (end resumes)" if new else "PAUSED (end)")
            elif not ended:
                parts.append("FOLLOWING")
            if self.search_text:
                count = window.search_matches
                found = "" if count is None else f" {count:,} matching lines"
                if count is not None and window.search_busy:
                    found += " …"
                parts.append(f"search “{cell(self.search_text)}”{found} (n/N)")
            if window.filtering:
                busy = " …" if window.filter_busy else ""
                parts.append(
                    f"filter “{cell(self.filter_text)}” {window.filter_matches:,} matches{busy}"
                )
            lines = (
                f"{window.line_count:,} lines"
                if window.complete
                else (f"≥{window.line_count:,} lines (indexing)")
            )
            parts.append(lines)
            parts.append(human_bytes(window.size))
            flags = []
            if self.regex:
                flags.append("regex")
            if self.case:
                flags.append("case")
            if view.wrap:
                flags.append("wrap")
            if flags:
                parts.append(",".join(flags))
            text = " · ".join(parts)
        if text != self._status:
            self._status = text
            self.query_one("#log-status", Static).update(Content(text))


def ended_label(end: JobEnd) -> str:
    """``ENDED``, ``FAILED (exit 1)`` or ``CANCELLED``: what a finished job's log line says."""
    if end.state == "SUCCEEDED":
        return "ENDED" if end.exit_code in (None, 0) else f"ENDED (exit {end.exit_code})"
    if end.exit_code is not None:
        return f"{end.state} (exit {end.exit_code})"
    return end.state
