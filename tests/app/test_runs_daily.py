"""The Runs pane as a daily driver: the jobs panel follows the filter and can be focused for
per-job actions, columns that fit 80x24, relative times, sideways scroll, and marks."""

from __future__ import annotations

from typing import Any

from app_helpers import wait_for, wait_for_screen

from nemorun_tui.screens.confirm import ConfirmScreen
from nemorun_tui.widgets.runs_table import choose_columns, relative_time, short_id

SWEEP = "sweep-lr-20250601-110000-0a0b"
FAIL = "fail-20250601-100000-e5f6"
HELLO = "hello-20250601-114500-1c1d"


async def _loaded(pilot: Any) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
    await wait_for(pilot, lambda: app.runs_pane.jobs.record is not None, what="jobs panel")


def _jobs_of(app: Any) -> str | None:
    record = app.runs_pane.jobs.record
    return record.id if record is not None else None


def _row_text(app: Any, y: int) -> str:
    return app.runs_table.render_line(y).text


async def test_jobs_panel_follows_the_filter(demo_app: Any) -> None:
    async with demo_app.run_test(size=(120, 30)) as pilot:
        await _loaded(pilot)
        assert _jobs_of(demo_app) == HELLO
        await pilot.press("slash", *"fail")
        await wait_for(pilot, lambda: _jobs_of(demo_app) == FAIL, what="jobs of the filtered run")
        assert demo_app.current_exp_id() == FAIL  # what actions apply to is what is shown
        await pilot.press(*"zzz")  # nothing matches: no run, no jobs
        await wait_for(pilot, lambda: _jobs_of(demo_app) is None, what="jobs panel cleared")
        assert demo_app.runs_table.cursor_id is None


async def test_jobs_panel_focused_opens_the_log_of_the_job_under_its_cursor(
    demo_app: Any,
) -> None:
    async with demo_app.run_test(size=(120, 30)) as pilot:
        await _loaded(pilot)
        demo_app.runs_table.move_cursor_to(FAIL)
        await wait_for(pilot, lambda: _jobs_of(demo_app) == FAIL)
        await pilot.press("tab")
        assert demo_app.focused is demo_app.runs_pane.jobs
        await pilot.press("l")
        await wait_for(
            pilot,
            lambda: demo_app.panes_ready.is_set() and demo_app.logs_pane.current_key is not None,
            what="log tab",
        )
        key = demo_app.logs_pane.current_key
        assert (key.exp_id, key.job) == (FAIL, "fail")


async def test_jobs_panel_cancel_asks_about_that_one_job_only(demo_app: Any) -> None:
    async with demo_app.run_test(size=(120, 30)) as pilot:
        await _loaded(pilot)
        demo_app.runs_table.move_cursor_to(SWEEP)
        await wait_for(pilot, lambda: _jobs_of(demo_app) == SWEEP)
        await pilot.press("tab", "down")
        assert demo_app.runs_pane.jobs.current_job == "lr-3e-4"
        await pilot.press("c")
        await wait_for_screen(pilot, ConfirmScreen)
        question = demo_app.screen.question
        assert "lr-3e-4" in question and "lr-1e-4" not in question
        await pilot.press("n")
        await wait_for(pilot, lambda: not isinstance(demo_app.screen, ConfirmScreen))
        assert demo_app.focused is demo_app.runs_pane.jobs
        await pilot.press("escape")
        assert demo_app.focused is demo_app.runs_table


async def test_80x24_shows_state_title_short_id_executor_and_duration(demo_app: Any) -> None:
    async with demo_app.run_test(size=(80, 24)) as pilot:
        await _loaded(pilot)
        header = _row_text(demo_app, 0)
        for name in ("STATE", "TITLE", "ID", "EXECUTOR", "DURATION"):
            assert name in header
        first = _row_text(demo_app, 1)
        assert "CANCELLED" in first and "hello" in first and "20s" in first
        assert short_id(HELLO) in first and HELLO not in first
        assert "local" in first and len(first.rstrip()) <= 80
        # A wide terminal shows the whole id and the parent.
        keys = [c.key for c, _ in choose_columns(158)]
        assert "id" in keys and "short_id" not in keys and "parent" in keys


async def test_started_is_relative_to_now() -> None:
    now = 1_748_779_200.0
    assert relative_time(now - 900, now) == "15m ago"
    assert relative_time(now - 3 * 3600, now) == "3h ago"
    assert relative_time(now - 40 * 86400, now).startswith("2025-04")


async def test_right_scrolls_sideways_to_the_hidden_columns(demo_app: Any) -> None:
    async with demo_app.run_test(size=(80, 24)) as pilot:
        await _loaded(pilot)
        assert HELLO not in _row_text(demo_app, 1)
        for _ in range(6):
            await pilot.press("right")
        assert demo_app.runs_table.pan > 0
        assert HELLO in _row_text(demo_app, 1)  # the full id, scrolled into view
        for _ in range(20):
            await pilot.press("left")
        assert demo_app.runs_table.pan == 0
        assert short_id(HELLO) in _row_text(demo_app, 1)


async def test_space_marks_runs_shows_them_and_the_app_knows_them(demo_app: Any) -> None:
    async with demo_app.run_test(size=(120, 30)) as pilot:
        await _loaded(pilot)
        await pilot.press("space", "space")  # hello, then sweep (the cursor moves down)
        assert demo_app.marked == [HELLO, SWEEP]
        assert _row_text(demo_app, 1).startswith("●") and _row_text(demo_app, 2).startswith("●")
        assert not _row_text(demo_app, 3).startswith("●")
        status = str(demo_app.runs_pane.query_one("#runs-status").content)
        assert "2 marked" in status
        await pilot.press("up", "space")  # unmark sweep
        assert demo_app.marked == [HELLO]
        await pilot.press("escape")  # no filter: escape clears the marks
        assert demo_app.marked == []
        assert not _row_text(demo_app, 1).startswith("●")
