"""The Runs table: a virtualized, keyed table of experiment summaries.

Why not ``DataTable``: with 10,000 experiments it measures every cell on ``add_rows`` and
takes seconds; here only the rows on screen are ever rendered (the Line API), so the table
costs the same with 10 or 100,000 experiments. Rows are keyed by experiment id:
:meth:`RunsTable.apply` diffs a fresh listing against what is shown, refreshes only the lines
that changed and keeps the cursor on the same experiment even when rows move. When nothing
changed, nothing is refreshed and nothing is written to the terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from nemorun_tui.widgets.format import LIVE_STATES, age, cell, duration, look, state_label


@dataclass(frozen=True)
class Column:
    """One column: its key (also the sort key name), header, width (0 = flexible) and
    priority (0 = always shown; higher numbers give way first on a narrow terminal)."""

    key: str
    header: str
    width: int
    priority: int = 0


#: Screen order. On a narrow terminal (80x24) the priority-0 columns stay: mark, state,
#: title, the id's unique tail, executor and duration; the others join as width allows.
COLUMNS: tuple[Column, ...] = (
    Column("mark", "", 1),
    Column("state", "STATE", 12),
    Column("title", "TITLE", 0),
    Column("short_id", "ID", 13),
    Column("id", "ID", 34, priority=4),
    Column("backend", "EXECUTOR", 12),
    Column("jobs", "JOBS", 4, priority=3),
    Column("started", "STARTED", 10, priority=1),
    Column("duration", "DURATION", 8),
    Column("parent", "PARENT", 26, priority=5),
)
#: The title never gets narrower than this while a lower-priority column could give way.
MIN_TITLE = 14
#: The title's width when the table is scrolled sideways (every column at full width).
FULL_TITLE = 40
MARK = "●"


def short_id(exp_id: str) -> str:
    """The id's unique tail (``…090000-a1b2``): time and random suffix tell runs apart."""
    return exp_id if len(exp_id) <= 13 else "…" + exp_id[-12:]


def relative_time(ts: float, now: float) -> str:
    """``5m ago``, ``3h ago``, ``2d ago``; a date beyond a month (coarse: rare redraws)."""
    if now - ts > 30 * 86400:
        return time.strftime("%Y-%m-%d", time.localtime(ts))
    return f"{age(ts, now)} ago"


def choose_columns(width: int) -> list[tuple[Column, int]]:
    """The columns that fit ``width`` cells and their widths (the title takes the rest).

    Priority-0 columns always show; then, by priority, each other column joins if the
    title keeps at least :data:`MIN_TITLE` cells. The full id replaces its short tail.
    """
    shown = {c.key for c in COLUMNS if c.priority == 0}

    def title_width(keys: set[str]) -> int:
        cols = [c for c in COLUMNS if c.key in keys]
        return width - sum(c.width for c in cols) - len(cols)  # one space after each

    for column in sorted((c for c in COLUMNS if c.priority), key=lambda c: c.priority):
        trial = shown | {column.key}
        if column.key == "id":
            trial.discard("short_id")
        if title_width(trial) >= MIN_TITLE:
            shown = trial
    flex = max(8, title_width(shown) + 1)
    return [(c, c.width or flex) for c in COLUMNS if c.key in shown]


def full_columns() -> list[tuple[Column, int]]:
    """Every column at full width: what scrolling sideways shows."""
    return [(c, c.width or FULL_TITLE) for c in COLUMNS if c.key != "short_id"]


#: The optional metric column (nemorun_tui/widgets/runs_metric.py fills it): last value and
#: a sparkline of a chosen metric, shown before STARTED when a metric is chosen.
METRIC_COLUMN = Column("metric", "METRIC", 24)

SORT_KEYS: tuple[str, ...] = ("started", "title", "state", "duration", "backend", "id")


def live_duration(summary: Any, now: float) -> float | None:
    """Seconds since creation until the end (or now while live)."""
    end = summary.ended_at if summary.ended_at is not None else None
    if end is None and summary.state not in LIVE_STATES:
        return None
    seconds: float = max(0.0, (end if end is not None else now) - summary.created_at)
    return seconds


def coarse_live(seconds: float | None) -> str:
    """A live duration that changes rarely (5 s steps, then minutes): fewer redraws."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{int(seconds) // 5 * 5}s"
    if seconds < 3600:
        return f"{int(seconds) // 60}m"
    return duration(seconds)


def matches_filter(summary: Any, query: str) -> bool:
    """``/`` filter: every word must match; ``state:``, ``backend:``, ``tag:`` narrow fields.

    Plain words match the title, id, state, executors (``backend/profile``) or tags
    (case-insensitive substring); ``backend:`` matches a backend or a profile. Archived runs
    show only with ``archived:yes`` (only them) or ``archived:all``.
    """
    words = query.lower().split()
    archived = bool(getattr(summary, "archived", False))
    wanted = next((w.partition(":")[2] for w in words if w.startswith("archived:")), "no")
    if wanted in ("yes", "true", "1"):
        if not archived:
            return False
    elif wanted not in ("all", "any") and archived:
        return False
    for word in words:
        if word.startswith("archived:"):
            continue
        field, sep, value = word.partition(":")
        if sep and field in ("state", "backend", "tag", "title", "id", "parent"):
            if field == "state":
                hay = [("DAMAGED" if summary.damaged else summary.state).lower()]
            elif field == "backend":
                hay = [e.lower() for e in summary.executors]  # "slurm/ci": backend and profile
            elif field == "tag":
                hay = [t.lower() for t in summary.tags]
            elif field == "parent":
                hay = [(summary.parent or "").lower()]
            else:
                hay = [str(getattr(summary, field)).lower()]
            if not any(value in h for h in hay):
                return False
            continue
        hay = [
            summary.title.lower(),
            summary.id.lower(),
            summary.state.lower(),
            *(e.lower() for e in summary.executors),
            *(t.lower() for t in summary.tags),
        ]
        if not any(word in h for h in hay):
            return False
    return True


class RunsTable(ScrollView, can_focus=True):
    """Experiments, newest first by default; one line each, rendered lazily."""

    DEFAULT_CSS = """
    RunsTable {
        height: 1fr;
        background: $surface;
        scrollbar-gutter: stable;
    }
    RunsTable > .runs-table--header { text-style: bold; color: $text-muted; }
    RunsTable > .runs-table--cursor { background: $block-cursor-blurred-background; }
    RunsTable:focus > .runs-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: $block-cursor-text-style;
    }
    RunsTable > .runs-table--parent { color: $text-muted; }
    RunsTable > .runs-table--state-running { color: $primary; text-style: bold; }
    RunsTable > .runs-table--state-pending { color: $warning; }
    RunsTable > .runs-table--state-succeeded { color: $success; }
    RunsTable > .runs-table--state-failed { color: $error; text-style: bold; }
    RunsTable > .runs-table--state-cancelled { color: $text-muted; }
    RunsTable > .runs-table--state-unknown { color: $warning; text-style: italic; }
    RunsTable > .runs-table--state-damaged { color: $error; text-style: reverse; }
    RunsTable > .runs-table--empty { color: $text-muted; text-style: italic; }
    RunsTable > .runs-table--mark { color: $accent; text-style: bold; }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "runs-table--header",
        "runs-table--cursor",
        "runs-table--parent",
        "runs-table--state-running",
        "runs-table--state-pending",
        "runs-table--state-succeeded",
        "runs-table--state-failed",
        "runs-table--state-cancelled",
        "runs-table--state-unknown",
        "runs-table--state-damaged",
        "runs-table--empty",
        "runs-table--mark",
    }

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Detail", id="detail"),
        Binding("space", "toggle_mark", "Mark", id="mark"),
        Binding("left", "pan(-8)", "Scroll left", show=False),
        Binding("right", "pan(8)", "Scroll right", show=False),
        Binding("s", "cycle_sort", "Sort", id="sort"),
        Binding("S", "reverse_sort", "Reverse sort", show=False, id="reverse-sort"),
    ]

    cursor_id: reactive[str | None] = reactive(None, repaint=False, init=False)

    class Highlighted(Message):
        """The cursor moved to another experiment (or the table became empty)."""

        def __init__(self, table: RunsTable, exp_id: str | None) -> None:
            super().__init__()
            # The table is the sender even when a parent's handler made the change (the
            # filter box): Textual stops a message at its sender's parent otherwise, and
            # the app would never hear that the cursor moved.
            self.set_sender(table)
            self.table = table
            self.exp_id = exp_id

        @property
        def control(self) -> RunsTable:
            """The table that sent it (for ``@on(..., "#runs")`` selectors)."""
            return self.table

    class Selected(Message):
        """Enter (or a double click) on an experiment."""

        def __init__(self, table: RunsTable, exp_id: str) -> None:
            super().__init__()
            self.set_sender(table)
            self.table = table
            self.exp_id = exp_id

        @property
        def control(self) -> RunsTable:
            """The table that sent it (for ``@on(..., "#runs")`` selectors)."""
            return self.table

    class MarksChanged(Message):
        """An experiment was marked or unmarked."""

        def __init__(self, table: RunsTable) -> None:
            super().__init__()
            self.set_sender(table)
            self.table = table

        @property
        def control(self) -> RunsTable:
            """The table that sent it."""
            return self.table

    class Sorted(Message):
        """The sort column or direction changed."""

        def __init__(self, table: RunsTable) -> None:
            super().__init__()
            self.set_sender(table)
            self.table = table

        @property
        def control(self) -> RunsTable:
            """The table that sent it (for ``@on(..., "#runs")`` selectors)."""
            return self.table

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.clock = clock
        self._rows: dict[str, Any] = {}
        self._order: list[str] = []
        self._position: dict[str, int] = {}
        self._filter = ""
        self.sort_key = "started"
        self.sort_reverse = True
        self.loaded = False
        self._live_text: dict[str, str] = {}
        #: Experiments marked with space, for bulk actions (and the Compare screen).
        self.marked: set[str] = set()
        #: Cells scrolled sideways (0: the columns that fit; more: every column, panned).
        self.pan = 0
        #: Archived runs known (hidden unless the filter asks for them).
        self.archived_count = 0

    # -- data -----------------------------------------------------------------------------
    @property
    def row_count(self) -> int:
        """Rows shown (after the filter)."""
        return len(self._order)

    @property
    def total_count(self) -> int:
        """Rows known (before the filter)."""
        return len(self._rows)

    @property
    def order(self) -> list[str]:
        """Experiment ids in display order (read-only view for tests and the pane)."""
        return list(self._order)

    def summaries(self) -> Iterable[Any]:
        """Every summary known (before the filter)."""
        return self._rows.values()

    def summary(self, exp_id: str) -> Any | None:
        """The summary shown for ``exp_id``, if any."""
        return self._rows.get(exp_id)

    def apply(self, summaries: Iterable[Any]) -> bool:
        """Show a fresh listing as a keyed diff; returns True when anything changed."""
        new = {s.id: s for s in summaries}
        first = not self.loaded
        self.loaded = True
        old = self._rows
        changed = [i for i, s in new.items() if old.get(i) != s]
        removed = len(old) + len(changed) - len(new) if old else 0
        if not changed and not removed and not first:
            return False
        self._rows = new
        before = self._order
        self._recompute_order()
        if self._order != before or first:
            self._after_reorder()
            self.refresh()
        else:
            for exp_id in changed:
                self._refresh_row(exp_id)
        return True

    def set_filter(self, query: str) -> None:
        """Show only rows matching ``query`` (see :func:`matches_filter`)."""
        query = query.strip()
        if query == self._filter:
            return
        self._filter = query
        self._recompute_order()
        self._after_reorder()
        self.refresh()

    @property
    def filter_text(self) -> str:
        """The active filter, '' when none."""
        return self._filter

    def sort_by(self, key: str, reverse: bool | None = None) -> None:
        """Sort by a column key (see :data:`SORT_KEYS`); started sorts newest first."""
        if key not in SORT_KEYS:
            return
        if reverse is None:
            reverse = key in ("started", "duration") if key != self.sort_key else self.sort_reverse
        self.sort_key, self.sort_reverse = key, reverse
        self._recompute_order()
        self._after_reorder()
        self.refresh()
        self.post_message(self.Sorted(self))

    def _sort_value(self, s: Any) -> Any:
        key = self.sort_key
        if key == "started":
            return (s.created_at, s.id)
        if key == "title":
            return (s.title.lower(), -s.created_at)
        if key == "state":
            return (s.state, -s.created_at)
        if key == "duration":
            return (live_duration(s, self.clock()) or 0.0, s.id)
        if key == "backend":
            return (",".join(s.executors), -s.created_at)
        return (s.id,)

    def _recompute_order(self) -> None:
        if self._filter:
            rows: list[Any] = [s for s in self._rows.values() if matches_filter(s, self._filter)]
        else:  # the common case, kept cheap for 100,000 rows: only archived runs hide
            rows = [s for s in self._rows.values() if not getattr(s, "archived", False)]
        self.archived_count = (
            len(self._rows) - len(rows)
            if not self._filter
            else sum(1 for s in self._rows.values() if getattr(s, "archived", False))
        )
        self._order = [s.id for s in sorted(rows, key=self._sort_value, reverse=self.sort_reverse)]
        self._position = {exp_id: i for i, exp_id in enumerate(self._order)}

    def _after_reorder(self) -> None:
        self.virtual_size = Size(self.size.width, len(self._order) + 1)
        if self.cursor_id not in self._position:
            new = self._order[0] if self._order else None
            if new != self.cursor_id:
                self.cursor_id = new
                self.post_message(self.Highlighted(self, new))
        self._scroll_cursor_visible()

    # -- cursor ---------------------------------------------------------------------------
    @property
    def cursor_row(self) -> int:
        """Index of the cursor in display order (0 when empty)."""
        return self._position.get(self.cursor_id or "", 0)

    def move_cursor_to(self, exp_id: str) -> bool:
        """Put the cursor on ``exp_id`` if shown; returns whether it is."""
        if exp_id not in self._position:
            return False
        self._set_cursor(self._position[exp_id])
        return True

    def _set_cursor(self, row: int) -> None:
        if not self._order:
            return
        row = max(0, min(len(self._order) - 1, row))
        new = self._order[row]
        if new == self.cursor_id:
            return
        old = self.cursor_id
        self.cursor_id = new
        if old is not None:
            self._refresh_row(old)
        self._refresh_row(new)
        self._scroll_cursor_visible()
        self.post_message(self.Highlighted(self, new))

    def _scroll_cursor_visible(self) -> None:
        if not self._order or self.size.height <= 1:
            return
        row = self.cursor_row
        body = self.size.height - 1
        top = int(self.scroll_y)
        if row < top:
            self.scroll_to(y=row, animate=False)
        elif row >= top + body:
            self.scroll_to(y=row - body + 1, animate=False)

    def _refresh_row(self, exp_id: str) -> None:
        row = self._position.get(exp_id)
        if row is None:
            return
        y = row - int(self.scroll_y) + 1
        if 1 <= y < self.size.height:
            self.refresh_line(y)

    def action_cursor(self, delta: int) -> None:
        """Move the cursor by ``delta`` rows."""
        self._set_cursor(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        """Move the cursor by a screenful."""
        self._set_cursor(self.cursor_row + direction * max(1, self.size.height - 2))

    def action_jump(self, row: int) -> None:
        """First (0) or last (-1) row."""
        self._set_cursor(len(self._order) - 1 if row < 0 else row)

    def action_select(self) -> None:
        """Open the highlighted experiment."""
        if self.cursor_id is not None:
            self.post_message(self.Selected(self, self.cursor_id))

    def action_cycle_sort(self) -> None:
        """Sort by the next column."""
        index = (SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)
        self.sort_by(SORT_KEYS[index])

    def action_reverse_sort(self) -> None:
        """Flip the sort direction."""
        self.sort_by(self.sort_key, not self.sort_reverse)

    def tick(self) -> None:
        """Refresh live rows whose coarse duration text changed (called about once a second)."""
        if not self._order:
            return
        now = self.clock()
        top = int(self.scroll_y)
        for row in range(top, min(len(self._order), top + self.size.height)):
            s = self._rows[self._order[row]]
            # Only what the row shows that moves with time: a live duration, and the
            # relative start (coarse: minutes, then hours), so a quiet table stays quiet.
            text = relative_time(s.created_at, now)
            if s.state in LIVE_STATES and s.ended_at is None:
                text += " " + coarse_live(live_duration(s, now))
            if self._live_text.get(s.id) != text:
                first = s.id not in self._live_text
                self._live_text[s.id] = text
                if not first:
                    self._refresh_row(s.id)

    @property
    def has_live_rows(self) -> bool:
        """True when a shown experiment is still running (its duration ticks)."""
        return any(s.state in LIVE_STATES for s in self._rows.values())

    # -- mouse ----------------------------------------------------------------------------
    def on_click(self, event: events.Click) -> None:
        """Click a row to move the cursor, double-click to open it; click a header to sort."""
        if event.y == 0:
            key = self._column_at(event.x + self.pan)
            if key in SORT_KEYS:
                self.sort_by(key)
            elif key == "jobs":
                self.sort_by("id")
            return
        row = int(self.scroll_y) + event.y - 1
        if 0 <= row < len(self._order):
            self._set_cursor(row)
            if event.chain >= 2:
                self.action_select()

    def _column_at(self, x: int) -> str | None:
        pos = 0
        for column, width in self._layout(self.size.width):
            if pos <= x < pos + width + 1:
                return column.key
            pos += width + 1
        return None

    # -- rendering ------------------------------------------------------------------------
    def _layout(self, width: int) -> list[tuple[Column, int]]:
        usable = max(20, width - 2)  # minus the scrollbar gutter
        layout = full_columns() if self.pan else choose_columns(usable)
        if getattr(self, "metric_name", None):  # the chosen metric's column, before STARTED
            at = next((i for i, (c, _) in enumerate(layout) if c.key == "started"), len(layout))
            layout.insert(at, (METRIC_COLUMN, METRIC_COLUMN.width))
            if not self.pan:  # the title gives the room (it stays readable)
                layout = [
                    (c, max(8, w - METRIC_COLUMN.width - 1) if c.key == "title" else w)
                    for c, w in layout
                ]
        return layout

    def _full_width(self) -> int:
        return sum(w + 1 for _, w in full_columns())

    def action_pan(self, delta: int) -> None:
        """Scroll sideways to see every column at full width (left back to the fit)."""
        usable = max(20, self.size.width - 2)
        limit = max(0, self._full_width() - usable)
        pan = max(0, min(limit, self.pan + delta))
        if pan != self.pan:
            self.pan = pan
            self.refresh()

    # -- marks ----------------------------------------------------------------------------
    def action_toggle_mark(self) -> None:
        """Mark (or unmark) the highlighted experiment and move down, as in a file manager."""
        exp_id = self.cursor_id
        if exp_id is None:
            return
        if exp_id in self.marked:
            self.marked.discard(exp_id)
        else:
            self.marked.add(exp_id)
        self._refresh_row(exp_id)
        self.post_message(self.MarksChanged(self))
        self._set_cursor(self.cursor_row + 1)

    def clear_marks(self) -> bool:
        """Unmark everything; returns whether anything was marked."""
        if not self.marked:
            return False
        self.marked.clear()
        self.refresh()
        self.post_message(self.MarksChanged(self))
        return True

    def marked_ids(self) -> list[str]:
        """Marked experiments that still exist, in display order (hidden ones last)."""
        shown = [i for i in self._order if i in self.marked]
        hidden = sorted(i for i in self.marked if i in self._rows and i not in self._position)
        return shown + hidden

    def _cells(self, s: Any, now: float) -> dict[str, str]:
        state = "DAMAGED" if s.damaged else s.state
        if s.state in LIVE_STATES and s.ended_at is None:
            took = coarse_live(live_duration(s, now))
        else:
            took = duration(live_duration(s, now))
        title = s.title if not s.damaged else f"{s.title}  ({s.damaged})"
        # Every store string through cell(): a segment's text goes to the terminal as is.
        label = state_label(state)
        if getattr(s, "stalled", 0) and state == "RUNNING":
            label = "⚠ STALLED"  # a flag on a RUNNING job (hang detection), not a state
        return {
            "mark": MARK if s.id in self.marked else " ",
            "state": label,
            "title": cell(title + (f"  [{', '.join(s.tags)}]" if s.tags else "")),
            "id": cell(s.id),
            "short_id": cell(short_id(s.id)),
            "backend": cell(",".join(s.executors) or "-"),
            "jobs": str(s.n_jobs),
            "started": relative_time(s.created_at, now),
            "duration": took,
            "parent": cell(s.parent or ""),
            "metric": getattr(self, "metric_cells", {}).get(s.id, ""),
        }

    def _state_style(self, state: str) -> Style:
        key = look(state).css
        return self.get_component_rich_style(f"runs-table--state-{key}", partial=True)

    def render_line(self, y: int) -> Strip:
        """Line 0 is the sticky header; line ``y`` shows row ``scroll_y + y - 1``."""
        width = self.size.width
        base = self.rich_style
        layout = self._layout(width)
        if y == 0:
            header = self.get_component_rich_style("runs-table--header", partial=True)
            segments = []
            for column, w in layout:
                label = column.header
                if column.key == "metric":
                    label = cell(str(getattr(self, "metric_name", "") or "METRIC")).upper()
                if column.key == self.sort_key:
                    label += " ▼" if self.sort_reverse else " ▲"
                segments.append(Segment(set_cell_size(label, w) + " ", base + header))
            return self._panned(Strip(segments), width, base)
        row = int(self.scroll_y) + y - 1
        if row >= len(self._order):
            if row == 0:
                text = "loading…" if not self.loaded else self._empty_text()
                empty = self.get_component_rich_style("runs-table--empty", partial=True)
                return Strip([Segment(set_cell_size(f"  {text}", width), base + empty)])
            return Strip.blank(width, base)
        s = self._rows[self._order[row]]
        cells = self._cells(s, self.clock())
        style = base
        if s.id == self.cursor_id:
            style = base + self.get_component_rich_style("runs-table--cursor", partial=True)
        segments = []
        for column, w in layout:
            text = set_cell_size(cells[column.key], w) + " "
            cell_style = style
            if column.key == "state":
                cell_style = style + self._state_style("DAMAGED" if s.damaged else s.state)
            elif column.key == "parent":
                cell_style = style + self.get_component_rich_style(
                    "runs-table--parent", partial=True
                )
            elif column.key == "mark":
                cell_style = style + self.get_component_rich_style("runs-table--mark", partial=True)
            segments.append(Segment(text, cell_style))
        return self._panned(Strip(segments), width, style)

    def _panned(self, strip: Strip, width: int, style: Style) -> Strip:
        if self.pan:
            strip = strip.crop(self.pan, strip.cell_length)
        if strip.cell_length < width:
            strip = strip.extend_cell_length(width, style)
        return strip.crop(0, width)

    def _empty_text(self) -> str:
        if self._rows and self._filter:
            return f"no experiment matches “{self._filter}” (esc clears the filter)"
        return "no experiments yet — press 2 (Compose) to launch one"

    def on_resize(self, event: events.Resize) -> None:
        """Keep the virtual size's width in step so no horizontal scrollbar appears."""
        self.virtual_size = Size(event.size.width, len(self._order) + 1)
        self._scroll_cursor_visible()
