"""The Metrics screen: the curves of one or more runs, live while they run.

Opened with ``M`` (the current run) and from Compare (the compared runs). It asks the engine
thread for a refresh every ``interval`` seconds while any shown run is live, and once for
runs that have ended; each refresh reads only what the metric files grew by
(:class:`core.results.jobs.MetricsCache`).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Static

from nemorun_tui.widgets.format import cell
from nemorun_tui.widgets.metrics_view import Curve, MetricsView


def run_label(exp_id: str, title: str, job: str, jobs: int, runs: int) -> str:
    """How a curve's run is named in the legend: short, but unique among the shown runs."""
    base = title if runs == 1 else f"{title}·{exp_id.rsplit('-', 1)[-1]}"
    return f"{base}/{job}" if jobs > 1 else base


class MetricsScreen(Screen[None]):
    """Charts of the runs' metrics; ``n``/``p`` pick the metric, ``space`` pins it."""

    DEFAULT_CSS = """
    MetricsScreen { background: $surface; }
    MetricsScreen > #metrics-title { height: 1; padding: 0 1; text-style: bold; color: $accent; }
    MetricsScreen > #metrics-names { height: auto; max-height: 3; padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close", id="metrics-close"),
        Binding("n", "metric(1)", "Next metric", id="metrics-next"),
        Binding("p", "metric(-1)", "Prev metric", id="metrics-prev"),
        Binding("space", "pin", "Pin metric", id="metrics-pin"),
        Binding("t", "x_mode", "Step/time", id="metrics-x"),
        Binding("s", "scale", "Log/linear", id="metrics-scale"),
        Binding("plus,equals_sign", "zoom(0.5)", "Zoom in", id="metrics-zoom-in"),
        Binding("minus", "zoom(2.0)", "Zoom out", id="metrics-zoom-out"),
        Binding("left", "pan(-0.25)", "Pan left", show=False),
        Binding("right", "pan(0.25)", "Pan right", show=False),
        Binding("0", "reset", "Reset zoom", show=False),
        Binding("c", "runs_column", "Show in Runs", id="metrics-runs-column"),
    ]

    def __init__(self, exp_ids: list[str], *, metric: str | None = None, interval: float = 2.0):
        super().__init__()
        self.exp_ids = list(exp_ids)
        self.interval = interval
        self.metric = metric
        self.pinned: list[str] = []
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.records: dict[str, Any] = {}
        self.refreshes = 0
        self._cache: Any = None

    def compose(self) -> ComposeResult:
        yield Static("Metrics", id="metrics-title")
        yield Static("", id="metrics-names")
        yield MetricsView(id="metrics-view")
        yield Footer()

    @property
    def view(self) -> MetricsView:
        return self.query_one(MetricsView)

    def on_mount(self) -> None:
        from core.results.jobs import MetricsCache

        self._cache = MetricsCache()
        self.view.focus()
        self.run_worker(self._poll(), group="metrics-poll", exclusive=True, exit_on_error=False)

    async def _poll(self) -> None:
        app: Any = self.app
        while True:
            live = False
            for exp_id in self.exp_ids:
                try:
                    record = await app.bridge.run(app.engine.store.load, exp_id)
                    snaps = await app.bridge.call(self._cache.refresh(app.engine, exp_id))
                except Exception as exc:
                    self.view.set_curves([], f"{exp_id}: {exc}")
                    return
                self.records[exp_id] = record
                self.snapshots[exp_id] = snaps
                live = live or not record.state.is_terminal
            self.refreshes += 1
            self._redraw()
            if not live:
                return
            await asyncio.sleep(self.interval)

    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for snaps in self.snapshots.values():
            for snap in snaps.values():
                for name in snap.series:
                    seen.setdefault(name, None)
        return list(seen)

    def _redraw(self) -> None:
        names = self.names()
        problems = [
            f"{job}: {p}"
            for snaps in self.snapshots.values()
            for job, s in snaps.items()
            for p in s.problems
        ]
        if self.metric not in names:
            self.metric = names[0] if names else None
        shown = [n for n in self.pinned if n in names]
        if self.metric is not None and self.metric not in shown:
            shown.append(self.metric)
        curves = []
        for exp_id in self.exp_ids:
            record = self.records.get(exp_id)
            snaps = self.snapshots.get(exp_id, {})
            for job, snap in snaps.items():
                label = run_label(
                    exp_id,
                    record.title if record else exp_id,
                    job,
                    len(snaps),
                    len(self.exp_ids),
                )
                for name in shown:
                    series = snap.series.get(name)
                    if series is not None:
                        curves.append(Curve(label, name, series))
        live = any(not r.state.is_terminal for r in self.records.values())
        title = ", ".join(cell(r.id) for r in self.records.values())
        self.query_one("#metrics-title", Static).update(
            Text(f"Metrics · {title}" + (" · live" if live else ""))
        )
        chosen = "  ".join(
            (f"[{n}]" if n == self.metric else (f"*{n}" if n in self.pinned else n)) for n in names
        )
        self.query_one("#metrics-names", Static).update(
            Text(cell(chosen) or "no metrics yet", style="dim")
        )
        self.view.set_curves(curves, "; ".join(problems[:2]))

    # -- actions --------------------------------------------------------------------------
    def action_close(self) -> None:
        self.dismiss(None)

    def action_metric(self, step: int) -> None:
        names = self.names()
        if not names:
            return
        index = names.index(self.metric) if self.metric in names else 0
        self.metric = names[(index + step) % len(names)]
        self._redraw()

    def action_pin(self) -> None:
        if self.metric is None:
            return
        if self.metric in self.pinned:
            self.pinned.remove(self.metric)
        else:
            self.pinned.append(self.metric)
        self._redraw()

    def action_x_mode(self) -> None:
        self.view.x_mode = "time" if self.view.x_mode == "step" else "step"

    def action_scale(self) -> None:
        self.view.log_y = not self.view.log_y

    def action_zoom(self, factor: float) -> None:
        self.view.zoom(factor)

    def action_pan(self, fraction: float) -> None:
        self.view.pan(fraction)

    def action_reset(self) -> None:
        self.view.reset()

    def action_runs_column(self) -> None:
        """Show this metric's last value and sparkline as a column in Runs."""
        app: Any = self.app
        if self.metric is not None:
            app.action_runs_metric(self.metric)
            app.notify(f"Runs now shows a {self.metric} column", timeout=3)
