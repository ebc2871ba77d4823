"""A terminal line chart in braille dots, for metric series (no Textual, no numpy).

Why braille: each cell holds a 2x4 grid of dots, so a 100x20-cell chart is a 200x80 plot,
fine enough for a loss curve, in any UTF-8 terminal. Why our own: the chart must stay fast
for a 100,000-point series on every live refresh, so points are first binned per dot
column (min and max of the bin, so a spike is never averaged away), then the bins are
joined by vertical runs: the cost is one pass over the points plus the plot's size.

:func:`render_plot` returns rows of ``(text, series index or -1)`` runs; the widget turns
them into styled text. X is whatever the caller gives (steps, or seconds since start).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

_BRAILLE = 0x2800
# Dot bit for (x in 0..1, y in 0..3 from the top) within a cell.
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


@dataclass
class PlotSeries:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]


@dataclass
class Plot:
    """The rendered chart: ``rows`` of (text, series) runs, and what the axes span."""

    rows: list[list[tuple[str, int]]]
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    skipped: int = 0  # points left out (non-finite, or <= 0 on a log scale)
    notes: list[str] = field(default_factory=list)


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e5 or magnitude < 1e-3:
        return f"{value:.2e}"
    return f"{value:.4g}"


def data_range(
    series: list[PlotSeries], *, log_y: bool = False
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """(x range, y range) over every plottable point, or None when there is none."""
    x_lo = y_lo = math.inf
    x_hi = y_hi = -math.inf
    for s in series:
        for x, y in zip(s.xs, s.ys, strict=False):
            if not (math.isfinite(x) and math.isfinite(y)) or (log_y and y <= 0):
                continue
            if log_y:
                y = math.log10(y)
            x_lo, x_hi = min(x_lo, x), max(x_hi, x)
            y_lo, y_hi = min(y_lo, y), max(y_hi, y)
    if x_lo == math.inf:
        return None
    return (x_lo, x_hi), (y_lo, y_hi)


def render_plot(
    series: list[PlotSeries],
    width: int,
    height: int,
    *,
    log_y: bool = False,
    x_range: tuple[float, float] | None = None,
) -> Plot:
    """Draw ``series`` into a ``width`` x ``height`` cell area (axes included)."""
    ranges = data_range(series, log_y=log_y)
    label_w = 10
    plot_w = max(4, width - label_w - 1)
    plot_h = max(2, height - 1)
    if ranges is None:
        empty = [[(" " * width, -1)] for _ in range(height)]
        if height:
            empty[height // 2] = [("no data to plot".center(width), -1)]
        return Plot(empty, (0.0, 0.0), (0.0, 0.0))
    (x_lo, x_hi), (y_lo, y_hi) = ranges
    if x_range is not None:
        x_lo, x_hi = x_range
    if x_hi <= x_lo:
        x_hi = x_lo + 1.0
    if y_hi <= y_lo:
        pad = abs(y_lo) * 0.05 or 1.0
        y_lo, y_hi = y_lo - pad, y_hi + pad
    dots_w, dots_h = plot_w * 2, plot_h * 4
    # cells[row][col] = (bits, series index)
    bits = [[0] * plot_w for _ in range(plot_h)]
    owner = [[-1] * plot_w for _ in range(plot_h)]
    skipped = 0
    x_scale = (dots_w - 1) / (x_hi - x_lo)
    y_scale = (dots_h - 1) / (y_hi - y_lo)
    for index, s in enumerate(series):
        lows = [math.inf] * dots_w
        highs = [-math.inf] * dots_w
        firsts: list[float | None] = [None] * dots_w
        lasts: list[float | None] = [None] * dots_w
        for x, y in zip(s.xs, s.ys, strict=False):
            if not (math.isfinite(x) and math.isfinite(y)) or (log_y and y <= 0):
                skipped += 1
                continue
            if x < x_lo or x > x_hi:
                continue
            if log_y:
                y = math.log10(y)
            col = int((x - x_lo) * x_scale + 0.5)
            dot_y = (y - y_lo) * y_scale
            if dot_y < lows[col]:
                lows[col] = dot_y
            if dot_y > highs[col]:
                highs[col] = dot_y
            if firsts[col] is None:
                firsts[col] = dot_y
            lasts[col] = dot_y
        previous: float | None = None
        previous_col = -1
        for col in range(dots_w):
            lo, hi = lows[col], highs[col]
            if lo == math.inf:
                continue
            first = firsts[col]
            if previous is not None and first is not None:
                # Join to the last drawn column: a straight line through the empty ones.
                gap = col - previous_col
                for step in range(1, gap):
                    a = previous + (first - previous) * (step - 0.5) / gap
                    b = previous + (first - previous) * (step + 0.5) / gap
                    _column(bits, owner, previous_col + step, min(a, b), max(a, b), dots_h, index)
                near = previous + (first - previous) * (gap - 0.5) / gap
                lo, hi = min(lo, near, first), max(hi, near, first)
            _column(bits, owner, col, lo, hi, dots_h, index)
            previous = lasts[col]
            previous_col = col
    rows: list[list[tuple[str, int]]] = []
    for r in range(plot_h):
        y_value = y_hi - (y_hi - y_lo) * r / max(1, plot_h - 1)
        if r in (0, plot_h - 1) or (plot_h > 6 and r == plot_h // 2):
            shown = 10**y_value if log_y else y_value
            label = _fmt(shown).rjust(label_w - 1)[: label_w - 1] + " "
        else:
            label = " " * label_w
        runs: list[tuple[str, int]] = [(label + "┤", -1)]
        current = -2
        text: list[str] = []
        for c in range(plot_w):
            b = bits[r][c]
            who = owner[r][c] if b else -1
            ch = chr(_BRAILLE + b) if b else " "
            if who != current and text:
                runs.append(("".join(text), current))
                text = []
            current = who
            text.append(ch)
        if text:
            runs.append(("".join(text), current))
        rows.append(runs)
    left, right = _fmt(x_lo), _fmt(x_hi)
    axis = " " * label_w + "└" + left + right.rjust(max(1, plot_w - len(left)))
    rows.append([(axis[:width], -1)])
    return Plot(rows, (x_lo, x_hi), (y_lo, y_hi), skipped)


def _column(
    bits: list[list[int]],
    owner: list[list[int]],
    col: int,
    lo: float,
    hi: float,
    dots_h: int,
    index: int,
) -> None:
    """Set the dots of dot-column ``col`` from ``lo`` to ``hi`` (dot units from the bottom)."""
    cell_x, sub_x = divmod(col, 2)
    top = dots_h - 1
    start = max(0, min(top, int(lo + 0.5)))
    end = max(0, min(top, int(hi + 0.5)))
    for dot in range(start, end + 1):
        from_top = top - dot
        cell_y, sub_y = divmod(from_top, 4)
        bits[cell_y][cell_x] |= _DOTS[sub_y][sub_x]
        owner[cell_y][cell_x] = index


def sparkline(values: Sequence[float], width: int) -> str:
    """A one-line ▁▂▃▅▇ summary of the last ``width`` bins of ``values``."""
    blocks = "▁▂▃▄▅▆▇█"
    finite = [v for v in values if math.isfinite(v)]
    if not finite or width <= 0:
        return ""
    if len(finite) > width:
        size = len(finite) / width
        finite = [finite[min(len(finite) - 1, int(i * size))] for i in range(width)]
    lo, hi = min(finite), max(finite)
    span = hi - lo or 1.0
    return "".join(blocks[int((v - lo) / span * (len(blocks) - 1))] for v in finite)
