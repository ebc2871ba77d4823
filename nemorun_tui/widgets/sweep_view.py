"""The sweep view: one row per point of a sweep, its varying values as columns.

Opened with ``m`` on a run. Columns are the swept keys, then state, duration and the chosen
metric's last value (``-`` until runs record metrics). ``s`` sorts by the next column,
``S`` reverses, ``F`` relaunches the failed and cancelled points (the same plan as
``nemorun-tui relaunch EXP --failed``: stored tasks only, no user code in the app).
Rows are read in a worker through the engine bridge and refreshed every poll.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

FIXED_COLUMNS = ("state", "duration", "metric")


class SweepScreen(ModalScreen[None]):
    """The points of one experiment, sortable; ``F`` relaunches the failed ones."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_view", "Close"),
        Binding("s", "sort_next", "Sort"),
        Binding("S", "sort_reverse", "Reverse"),
        Binding("F", "relaunch_failed", "Relaunch failed"),
    ]

    DEFAULT_CSS = """
    SweepScreen { align: center middle; }
    SweepScreen > #sweep-box { width: 90%; height: 80%; border: round $accent; }
    SweepScreen #sweep-title { height: 1; padding: 0 1; }
    """

    def __init__(self, exp_id: str) -> None:
        super().__init__()
        self.exp_id = exp_id
        self.table_data: Any = None
        #: The metric column: the Runs' chosen metric (Metrics view, ``c``), else the first
        #: metric the points record; read incrementally (core.results), on the engine thread.
        self.metric_name: str | None = None
        self._metrics: Any = None
        self.sort_column: str | None = None
        self.reverse = False

    def compose(self) -> ComposeResult:
        from textual.containers import Vertical

        with Vertical(id="sweep-box"):
            yield Static(f"sweep {self.exp_id}", id="sweep-title", markup=False)
            yield DataTable(id="sweep-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.reload()
        seconds = max(0.5, float(getattr(self.app, "poll_seconds", 1.0)))
        self.set_interval(seconds, self.reload)

    def reload(self) -> None:
        self.run_worker(self._load(), group="sweep-load", exclusive=True, exit_on_error=False)

    async def _load(self) -> None:
        from core.engine.sweep_plan import sweep_table
        from core.textsafe import escape_cell

        app: Any = self.app
        try:
            metric_of = await self._metric_of(app)
            self.table_data = await app.bridge.run(sweep_table, app.engine, self.exp_id, metric_of)
        except Exception as exc:
            self.query_one("#sweep-title", Static).update(
                escape_cell(f"sweep {self.exp_id}: {exc}")
            )
            return
        self.render_rows()

    async def _metric_of(self, app: Any) -> Any:
        """Each point's last value of the metric column's metric (None: nothing recorded)."""
        from core.results.jobs import MetricsCache

        if self._metrics is None:
            self._metrics = MetricsCache()
        cache = self._metrics
        try:
            snaps = await app.bridge.call(cache.refresh(app.engine, self.exp_id))
        except Exception:
            return None  # the column shows "-": metrics are an extra, never an error here
        names = sorted({n for snap in snaps.values() for n in snap.series})
        chosen = getattr(getattr(app, "runs_table", None), "metric_name", None)
        self.metric_name = chosen if chosen in names else (names[0] if names else None)

        def metric_of(exp_id: str, job: str) -> float | None:
            snap = snaps.get(job)
            series = snap.series.get(self.metric_name) if snap and self.metric_name else None
            last = series.last() if series is not None else None
            return None if last is None else float(last[1])

        return metric_of

    @property
    def columns(self) -> list[str]:
        return [*(self.table_data.columns if self.table_data else []), *FIXED_COLUMNS]

    def render_rows(self) -> None:
        from rich.text import Text

        from core.textsafe import escape_cell

        data = self.table_data
        if data is None:
            return
        table = self.query_one("#sweep-table", DataTable)
        table.clear(columns=True)
        for column in self.columns:
            mark = (" ▼" if self.reverse else " ▲") if column == self.sort_column else ""
            # Text, not str: DataTable reads a str label or cell as markup, and swept keys
            # and values are the user's (``[b]``, ``[/]``, ``[@click=...]`` are text).
            table.add_column(Text(escape_cell(column) + mark), key=column)
        rows = (
            data.sorted_by(self.sort_column, reverse=self.reverse)
            if self.sort_column
            else data.rows
        )
        for row in rows:
            cells: list[Any] = [Text(escape_cell(row.values.get(c, ""))) for c in data.columns]
            cells.append(row.state.value)
            cells.append(f"{row.duration:.1f}s" if row.duration is not None else "-")
            cells.append(f"{row.metric:g}" if row.metric is not None else "-")
            table.add_row(*cells, key=row.job)
        failed = sum(r.state.value in ("FAILED", "CANCELLED") for r in data.rows)
        self.query_one("#sweep-title", Static).update(
            f"sweep {self.exp_id}: {len(data.rows)} points, {failed} failed or cancelled"
            + (f"; sorted by {self.sort_column}" if self.sort_column else "")
        )

    def row_order(self) -> list[str]:
        """Job names in the order shown (tests read it)."""
        table = self.query_one("#sweep-table", DataTable)
        return [str(key.value) for key in table.rows]

    def action_sort_next(self) -> None:
        columns = self.columns
        if not columns:
            return
        index = columns.index(self.sort_column) + 1 if self.sort_column in columns else 0
        self.sort_column = columns[index % len(columns)]
        self.render_rows()

    def action_sort_reverse(self) -> None:
        self.reverse = not self.reverse
        self.render_rows()

    def action_dismiss_view(self) -> None:
        self.dismiss(None)

    def action_relaunch_failed(self) -> None:
        self.run_worker(self._relaunch_failed(), group="sweep-relaunch", exit_on_error=False)

    async def _relaunch_failed(self) -> None:
        from core.engine.sweep_plan import failed_points_plan

        app: Any = self.app
        try:
            plan = await app.bridge.run(failed_points_plan, app.engine, self.exp_id)
        except Exception as exc:
            app.notify(str(exc), severity="warning", timeout=4)
            return
        new_id = await app.launch_plan(plan)
        if new_id:
            app.notify(f"relaunched {len(plan.jobs)} points as {new_id}", timeout=3)
