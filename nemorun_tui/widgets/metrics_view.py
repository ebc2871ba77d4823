"""The Metrics view: one or more metric series of one or more runs, as a terminal chart.

The widget holds plain data (run label → name → :class:`core.results.series.Series`) given
to it by its screen, and draws with :func:`nemorun_tui.widgets.plot.render_plot` at its own
size on every render, so a resize or a live refresh costs one pass over the points. X is the
step, or the time since each series' first point (runs started hours apart still overlay);
a series with no recorded times falls back to steps and the legend says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from nemorun_tui.widgets.format import cell
from nemorun_tui.widgets.plot import PlotSeries, data_range, render_plot

PALETTE = ("#4EBF71", "#58A6FF", "#F0883E", "#D2A8FF", "#FF7B72", "#E3B341", "#39C5CF")


@dataclass(frozen=True)
class Curve:
    """One line of the chart: which run, which metric, and its series."""

    run: str
    metric: str
    series: Any  # core.results.series.Series


class MetricsView(Widget, can_focus=True):
    """A zoomable, log-scalable line chart of :class:`Curve` s."""

    DEFAULT_CSS = """
    MetricsView { height: 1fr; min-height: 8; padding: 0 1; background: $surface; }
    MetricsView:focus { background-tint: $foreground 3%; }
    """

    x_mode: reactive[str] = reactive("step")
    log_y: reactive[bool] = reactive(False)
    #: Visible window as fractions of the full x range: (start, end).
    window: reactive[tuple[float, float]] = reactive((0.0, 1.0))

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.curves: list[Curve] = []
        self.message = ""
        self.last_plot: Any = None

    def set_curves(self, curves: list[Curve], message: str = "") -> None:
        self.curves = curves
        self.message = message
        self.refresh()

    # -- view controls (bound to keys by the screen) --------------------------------------
    def zoom(self, factor: float) -> None:
        """Zoom around the window's centre (factor < 1 zooms in)."""
        start, end = self.window
        centre = (start + end) / 2
        half = max(0.005, min(0.5, (end - start) * factor / 2))
        start, end = centre - half, centre + half
        if start < 0:
            start, end = 0.0, end - start
        if end > 1:
            start, end = max(0.0, start - (end - 1)), 1.0
        self.window = (start, end)

    def pan(self, fraction: float) -> None:
        """Move the window by ``fraction`` of its width (negative: left)."""
        start, end = self.window
        shift = (end - start) * fraction
        shift = max(-start, min(1 - end, shift))
        self.window = (start + shift, end + shift)

    def reset(self) -> None:
        self.window = (0.0, 1.0)

    # -- drawing ------------------------------------------------------------------------
    def plot_series(self) -> tuple[list[PlotSeries], list[str]]:
        out = []
        notes = []
        for curve in self.curves:
            s = curve.series
            xs: Any = s.steps
            if self.x_mode == "time":
                if s.has_times():
                    first = next(t for t in s.times if not math.isnan(t))
                    xs = [t - first for t in s.times]
                else:
                    notes.append(f"{curve.metric} ({curve.run}): no times recorded, by step")
            out.append(PlotSeries(f"{curve.run} {curve.metric}", xs, s.values))
        return out, notes

    def render(self) -> RenderableType:
        width, height = self.content_size.width, self.content_size.height
        if not self.curves:
            return Text(self.message or "no metrics found for this run", style="dim italic")
        series, notes = self.plot_series()
        legend = Text(no_wrap=True, overflow="ellipsis")
        for index, curve in enumerate(self.curves):
            last = curve.series.last()
            value = f" {last[1]:.4g}@{last[0]:g}" if last else ""
            legend.append("━━ ", style=PALETTE[index % len(PALETTE)])
            legend.append(f"{cell(curve.run)} {cell(curve.metric)}{value}   ")
        mode = "time since start (s)" if self.x_mode == "time" else "step"
        scale = "log" if self.log_y else "linear"
        status = Text(
            f"x: {mode} · y: {scale} · window {self.window[0]:.0%} to {self.window[1]:.0%}"
            + (f" · {'; '.join(notes)}" if notes else "")
            + (f" · {self.message}" if self.message else ""),
            style="dim",
            no_wrap=True,
            overflow="ellipsis",
        )
        x_range = None
        start, end = self.window
        ranges = data_range(series, log_y=self.log_y)
        if ranges is not None and (start, end) != (0.0, 1.0):
            x_lo, x_hi = ranges[0]
            x_range = (x_lo + (x_hi - x_lo) * start, x_lo + (x_hi - x_lo) * end)
        full = render_plot(series, width, max(3, height - 2), log_y=self.log_y, x_range=x_range)
        self.last_plot = full
        lines = []
        for row in full.rows:
            text = Text(no_wrap=True, overflow="crop")
            for chunk, who in row:
                text.append(chunk, style=PALETTE[who % len(PALETTE)] if who >= 0 else "dim")
            lines.append(text)
        if full.skipped:
            status.append(f" · {full.skipped} points not drawable")
        return Group(legend, *lines, status)

    def watch_x_mode(self) -> None:
        self.refresh()

    def watch_log_y(self) -> None:
        self.refresh()

    def watch_window(self) -> None:
        self.refresh()
