"""Snapshots of every pane on the fixed demo store (fixed ids, times, clock and size), at
80x24 (the smallest terminal we design for) and 160x45.

Update after an intended visual change with ``pytest tests/app --snapshot-update`` and look
at the SVGs in ``tests/app/__snapshots__`` before committing them.
"""

from __future__ import annotations

from typing import Any

import pytest
from app_helpers import wait_for

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 45), id="160x45")]


async def _loaded(pilot: Any) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
    await wait_for(pilot, lambda: app.runs_pane.jobs.record is not None, what="jobs panel")
    await pilot.pause(0.05)


@pytest.mark.parametrize("size", SIZES)
def test_runs_pane(snap_compare: Any, demo_app: Any, size: tuple[int, int]) -> None:
    """Runs: states coloured, parent column, the highlighted run's jobs below."""
    assert snap_compare(demo_app, terminal_size=size, run_before=_loaded)


@pytest.mark.parametrize("size", SIZES)
def test_runs_pane_filtered(snap_compare: Any, demo_app: Any, size: tuple[int, int]) -> None:
    """Runs with ``/train`` typed in the filter."""

    async def run_before(pilot: Any) -> None:
        await _loaded(pilot)
        await pilot.press("slash", *"train")
        await pilot.pause(0.05)

    assert snap_compare(demo_app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_detail_pane_with_parent_diff(
    snap_compare: Any, demo_app: Any, size: tuple[int, int]
) -> None:
    """Detail of a relaunch: header, jobs, diff against the parent, config, timeline."""

    async def run_before(pilot: Any) -> None:
        await _loaded(pilot)
        pilot.app.runs_table.move_cursor_to("train-20250601-093000-c3d4")
        await pilot.press("enter")
        await wait_for(pilot, lambda: pilot.app.detail_pane.data is not None, what="detail")
        results = pilot.app.detail_pane.query_one("#detail-results")
        await wait_for(pilot, lambda: results.loaded_at is not None, what="artifacts")
        await pilot.pause(0.05)

    assert snap_compare(demo_app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_logs_pane(snap_compare: Any, demo_app: Any, size: tuple[int, int]) -> None:
    """Logs of a finished training run, following the end, with a search highlighted."""

    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await _loaded(pilot)
        app.runs_table.move_cursor_to("train-20250601-090000-a1b2")
        await pilot.press("l")
        await wait_for(pilot, lambda: app.logs_pane.view is not None, what="log tab")
        view = app.logs_pane.view
        await wait_for(pilot, lambda: view.window.line_count == 12, what="log lines")
        await pilot.press("slash", *"loss 0", "enter")
        await pilot.pause(0.2)

    assert snap_compare(demo_app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_compose_pane(snap_compare: Any, demo_app: Any, size: tuple[int, int]) -> None:
    """Compose with the train recipe: config tree, an edited field, the dry run."""

    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await _loaded(pilot)
        await pilot.press("2")
        pane = app.compose_pane
        await wait_for(pilot, lambda: pane.workspace is not None, what="workspace")
        pane.start(pane.source.__class__(recipe="train", overrides=["trainer.max_steps=50"]))
        await wait_for(pilot, lambda: pane.built is not None, what="plan")
        await wait_for(pilot, lambda: bool(pane._dryrun_text), what="dry run")
        await pilot.pause(0.1)

    assert snap_compare(demo_app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_help_screen(snap_compare: Any, demo_app: Any, size: tuple[int, int]) -> None:
    """``?`` lists the Runs pane's keys and the global ones."""

    async def run_before(pilot: Any) -> None:
        await _loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.1)

    assert snap_compare(demo_app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_runs_pane_marks_and_focused_jobs(
    snap_compare: Any, demo_app: Any, size: tuple[int, int]
) -> None:
    """Two runs marked (the mark column, the count), the jobs panel focused on a job."""

    async def run_before(pilot: Any) -> None:
        await _loaded(pilot)
        await pilot.press("space", "space", "up")
        await wait_for(pilot, lambda: pilot.app.runs_pane.jobs.record.id.startswith("sweep"))
        await pilot.press("tab", "down")
        await pilot.pause(0.1)

    assert snap_compare(demo_app, terminal_size=size, run_before=run_before)
