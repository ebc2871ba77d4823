"""Logs as a daily driver: regex anchors per line, flags that re-apply, a match count that
wraps around, a search per tab, a status line that says how the job ended, bounded tabs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from app_helpers import wait_for

from core.store import Store

SIZE = (120, 30)
TRAIN = "train-20250601-090000-a1b2"
FAIL = "fail-20250601-100000-e5f6"


def _numbered_log(home: Path, lines: int = 1000) -> None:
    """Replace the train run's stdout with ``line 0`` … ``line 999``."""
    path = Store(home).job_dir(TRAIN, "train") / "logs" / "stdout.log"
    path.write_text("".join(f"line {i}\n" for i in range(lines)))


def _status(app: Any) -> str:
    return str(app.logs_pane.query_one("#log-status").content)


async def _open(pilot: Any, exp_id: str = TRAIN) -> Any:
    app = pilot.app
    await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
    app.runs_table.move_cursor_to(exp_id)
    await pilot.pause(0.05)
    await pilot.press("l")
    await wait_for(
        pilot,
        lambda: (
            app.panes_ready.is_set()
            and app.logs_pane.current_key is not None
            and app.logs_pane.current_key.exp_id == exp_id
        ),
        what="log tab",
    )
    view = app.logs_pane.view
    await wait_for(pilot, lambda: view.window.line_count > 0 and view.window.complete)
    return view


async def test_regex_anchors_match_at_each_line_in_the_filter(
    demo_app: Any, demo_home: Path
) -> None:
    _numbered_log(demo_home)
    async with demo_app.run_test(size=SIZE) as pilot:
        view = await _open(pilot)
        await pilot.press("x", "f", *"^line 7", "enter")
        # line 7, 70-79, 700-799: anchored at the start of every line, not of a block.
        await wait_for(pilot, lambda: view.window.filter_matches == 111, what="^ matches")
        await pilot.press("f")
        demo_app.logs_pane.query_one("#log-search").value = ""
        await pilot.press(*"7$", "enter")
        await wait_for(pilot, lambda: view.window.filter_matches == 100, what="$ matches")
        assert not view.window.filter_busy


async def test_turning_regex_on_reapplies_the_active_filter(demo_app: Any, demo_home: Path) -> None:
    _numbered_log(demo_home)
    async with demo_app.run_test(size=SIZE) as pilot:
        view = await _open(pilot)
        await pilot.press("f", *"line 7.", "enter")
        await wait_for(pilot, lambda: view.window.filtering and not view.window.filter_busy)
        assert view.window.filter_matches == 0  # as text: no line holds "line 7."
        await pilot.press("x")
        # As a regex "." is any character: 70-79 and 700-799.
        await wait_for(pilot, lambda: view.window.filter_matches == 110, what="re-applied")
        await pilot.press("x")
        await wait_for(pilot, lambda: view.window.filter_matches == 0, what="text again")


async def test_search_counts_matching_lines_and_wraps_around(
    demo_app: Any, demo_home: Path
) -> None:
    _numbered_log(demo_home)
    async with demo_app.run_test(size=SIZE) as pilot:
        view = await _open(pilot)
        await pilot.press("slash", *"line 99", "enter")  # 99 and 990-999
        await wait_for(pilot, lambda: "11 matching lines" in _status(demo_app), what="count")
        # Following the end, the search lands on the last match first.
        await wait_for(pilot, lambda: view.current_match == 999, what="last match")
        await pilot.press("n")  # past the last match: around to the first
        await wait_for(pilot, lambda: view.current_match == 99, what="wrapped to the top")
        await pilot.press("N")  # and back before the first: around to the last
        await wait_for(pilot, lambda: view.current_match == 999, what="wrapped to the bottom")


async def test_each_tab_keeps_its_own_search(demo_app: Any) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        pane = None
        await _open(pilot, TRAIN)
        pane = demo_app.logs_pane
        await pilot.press("slash", *"loss", "enter")
        await wait_for(pilot, lambda: "search “loss”" in _status(demo_app), what="search")
        await pilot.press("1")
        await _open(pilot, FAIL)
        assert pane.tab_count == 2
        assert pane.search_text == "" and "search" not in _status(demo_app)
        assert pane.view.highlight is None
        await pilot.press("left_square_bracket")  # back to the train tab
        await wait_for(pilot, lambda: pane.current_key.exp_id == TRAIN, what="train tab")
        assert pane.search_text == "loss" and "search “loss”" in _status(demo_app)


async def test_status_line_says_failed_with_exit_code_and_points_to_stderr(
    demo_app: Any,
) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await _open(pilot, FAIL)
        # A failed run's logs open where its error is (stderr, issue 14), saying so.
        await wait_for(
            pilot, lambda: demo_app.logs_pane.current_key.stream == "stderr", what="stderr"
        )
        await wait_for(pilot, lambda: "FAILED (exit 1)" in _status(demo_app), what="status")
        assert "FOLLOWING" not in _status(demo_app)
        assert "s shows it" not in _status(demo_app)  # already showing stderr
        await pilot.press("s")  # to stdout: the status line points back to stderr
        await wait_for(
            pilot, lambda: demo_app.logs_pane.current_key.stream == "stdout", what="stdout"
        )
        await wait_for(pilot, lambda: "s shows it" in _status(demo_app), what="stderr hint")
        status = _status(demo_app)
        assert "FAILED (exit 1)" in status and "FOLLOWING" not in status


async def test_status_line_says_ended_for_a_succeeded_job(demo_app: Any) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await _open(pilot, TRAIN)
        await wait_for(pilot, lambda: "ENDED" in _status(demo_app), what="status")
        assert "FOLLOWING" not in _status(demo_app)


async def test_opening_more_logs_than_the_cap_closes_the_oldest_tab(
    demo_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nemorun_tui.widgets import logs_pane

    monkeypatch.setattr(logs_pane, "MAX_TABS", 2)
    async with demo_app.run_test(size=SIZE) as pilot:
        await _open(pilot, TRAIN)
        pane = demo_app.logs_pane
        await pilot.press("1")
        await _open(pilot, FAIL)
        await pilot.press("1")
        await _open(pilot, "hello-20250601-114500-1c1d")
        assert pane.tab_count == 2
        shown = {key.exp_id for key in pane._keys.values()}
        assert shown == {FAIL, "hello-20250601-114500-1c1d"}
        assert pane.current_key.exp_id == "hello-20250601-114500-1c1d"
