"""The Runs table's optional metric column: a chosen metric's last value and a sparkline.

Chosen from the palette ("Runs: metric column"). Every ``interval`` seconds the rows on
screen (at most :data:`MAX_ROWS`) are refreshed on the engine thread through one
:class:`core.results.jobs.MetricsCache`, so each refresh reads only what the runs' metric
files grew by; a run that has ended and was read once is not read again.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from nemorun_tui.widgets.format import TERMINAL_STATES
from nemorun_tui.widgets.plot import sparkline

MAX_ROWS = 60
SPARK = 12


class MetricNameScreen(ModalScreen[str | None]):
    """Ask which metric the column shows (empty: hide the column)."""

    DEFAULT_CSS = """
    MetricNameScreen { align: center middle; }
    MetricNameScreen > Vertical {
        width: 60; height: auto; border: thick $accent; background: $surface; padding: 1 2;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: str | None) -> None:
        super().__init__()
        self.current = current or ""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Metric to show in Runs (e.g. loss; empty hides the column):")
            yield Input(value=self.current, id="metric-name")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


def metric_cell(series: Any) -> str:
    """``0.4398 ▇▅▃▂▁`` for a series; empty when it has no point."""
    last = series.last() if series is not None else None
    if last is None:
        return ""
    return f"{last[1]:<9.4g} {sparkline(series.values, SPARK)}"


class RunsMetricColumn:
    """Keeps ``table.metric_cells`` filled for the rows on screen."""

    def __init__(self, app: Any, name: str, *, interval: float = 5.0) -> None:
        from core.results.jobs import MetricsCache

        self.app = app
        self.name = name
        self.interval = interval
        self.cache = MetricsCache()
        self.done: set[str] = set()  # ended runs already read
        self.refreshes = 0
        self._task: Any = None

    def start(self) -> None:
        table = self.app.runs_table
        table.metric_name = self.name
        table.metric_cells = {}
        table.refresh()
        self._task = self.app.run_worker(self._loop(), group="runs-metric", exclusive=True)

    def stop(self) -> None:
        table = self.app.runs_table
        table.metric_name = None
        table.metric_cells = {}
        table.refresh()
        if self._task is not None:
            self._task.cancel()

    def visible_ids(self) -> list[str]:
        table = self.app.runs_table
        start = int(table.scroll_y)
        return list(table.order[start : start + min(MAX_ROWS, max(1, table.size.height))])

    async def _loop(self) -> None:
        while True:
            await self.refresh_once()
            await asyncio.sleep(self.interval)

    async def refresh_once(self) -> None:
        table = self.app.runs_table
        engine = self.app.engine
        wanted = [i for i in self.visible_ids() if i not in self.done]

        async def read() -> dict[str, tuple[str, bool]]:
            out = {}
            for exp_id in wanted:
                try:
                    record = engine.store.load(exp_id)
                    snaps = await self.cache.refresh(engine, exp_id)
                except Exception:
                    continue
                series = next(
                    (s.series[self.name] for s in snaps.values() if self.name in s.series), None
                )
                out[exp_id] = (metric_cell(series), record.state.value in TERMINAL_STATES)
            return out

        found = await self.app.bridge.call(read())
        for exp_id, (text, ended) in found.items():
            table.metric_cells[exp_id] = text
            if ended:
                self.done.add(exp_id)
        self.refreshes += 1
        table.refresh()
