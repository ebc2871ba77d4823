"""Snapshots of the Metrics view and of Compare on the fixed demo store.

Update after an intended visual change with
``pytest tests/app/test_results_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

from typing import Any

from app_helpers import wait_for, wait_for_screen

from nemorun_tui.screens.compare import CompareScreen
from nemorun_tui.screens.metrics import MetricsScreen

SIZE = (150, 42)
FIRST = "train-20250601-090000-a1b2"
SECOND = "train-20250601-093000-c3d4"


async def _loaded(pilot: Any) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
    await wait_for(pilot, lambda: app.runs_pane.jobs.record is not None, what="jobs panel")


def test_metrics_view(snap_compare: Any, demo_app: Any) -> None:
    """The loss curve of a training run, with lr pinned, on a log scale."""

    async def run_before(pilot: Any) -> None:
        await _loaded(pilot)
        pilot.app.runs_table.move_cursor_to(SECOND)
        await pilot.press("M")
        await wait_for_screen(pilot, MetricsScreen)
        await wait_for(pilot, lambda: pilot.app.screen.refreshes >= 1, what="metrics")
        await pilot.press("n", "space", "p", "s")
        await pilot.pause(0.05)

    assert snap_compare(demo_app, terminal_size=SIZE, run_before=run_before)


def test_compare(snap_compare: Any, demo_app: Any) -> None:
    """Two runs of `train`: the one differing field, overrides, final metrics, curves."""

    async def run_before(pilot: Any) -> None:
        await _loaded(pilot)
        pilot.app.runs_table.marked = {FIRST, SECOND}
        await pilot.press("C")
        await wait_for_screen(pilot, CompareScreen)
        await wait_for(pilot, lambda: pilot.app.screen.comparison is not None, what="compare")
        await pilot.pause(0.05)

    assert snap_compare(demo_app, terminal_size=SIZE, run_before=run_before)
