"""The sweep view (``m``): one row per point, sortable, ``F`` relaunches failed points."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from app_helpers import wait_for, wait_for_screen

from core.config import Script
from core.engine import Engine
from core.engine.executors import LocalExecutor
from core.engine.sweep_plan import task_sweep_plan
from core.settings import Settings
from core.store import Store
from core.sweep import parse_param

SIZE = (150, 42)


async def _sweep(home: Path) -> str:
    """A 4-point sweep over a Script's inline command: exit codes 0, 3, 0, 5."""
    engine = Engine(Store(home), Settings())
    params = [parse_param("inline='exit 0','exit 3','sleep 0.2; exit 0','exit 5'")]
    plan = task_sweep_plan(Script(inline="true"), params, LocalExecutor(), title="sw")
    record = await engine.launch(plan)
    done = await engine.wait(record.id)
    assert [j.state.value for j in done.jobs] == ["SUCCEEDED", "FAILED", "SUCCEEDED", "FAILED"]
    return record.id


async def test_sweep_view_rows_sort_and_relaunch_failed(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    from nemorun_tui.widgets.sweep_view import SweepScreen

    home = tmp_path / "store"
    exp_id = await _sweep(home)
    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.row_count == 1, 10, "listing")
        await pilot.press("m")
        await wait_for_screen(pilot, SweepScreen)
        screen = app.screen
        await wait_for(pilot, lambda: screen.table_data is not None, 10, "rows")
        assert screen.columns == ["inline", "state", "duration", "metric"]
        names = [j.name for j in Store(home).load(exp_id).jobs]
        assert screen.row_order() == names
        await pilot.press("s")  # by inline (text)
        assert screen.row_order() == sorted(names)
        await pilot.press("s")  # by state: FAILED before SUCCEEDED
        states = [screen.table_data.rows[names.index(n)].state.value for n in screen.row_order()]
        assert states == ["FAILED", "FAILED", "SUCCEEDED", "SUCCEEDED"]
        await pilot.press("S")
        assert screen.row_order()[0] in (names[0], names[2])
        await pilot.press("F")
        await wait_for(pilot, lambda: len(Store(home).list()) == 2, 10, "relaunch recorded")
    child = next(s for s in Store(home).list() if s.id != exp_id)
    record = Store(home).load(child.id)
    assert record.parent == exp_id
    assert [j.name for j in record.jobs] == [names[1], names[3]]


async def test_sweep_view_values_are_text_not_markup(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    """Swept keys and values are the user's: ``[b]`` and ``[/]`` show as typed (as markup
    the first would vanish and the second raise while drawing the table)."""
    from textual.widgets import DataTable
    from textual.widgets._data_table import default_cell_formatter

    from nemorun_tui.widgets.sweep_view import SweepScreen

    home = tmp_path / "store"
    engine = Engine(Store(home), Settings())
    params = [parse_param("inline='echo [b]x[/b]','echo [/]'")]
    plan = task_sweep_plan(Script(inline="true"), params, LocalExecutor(), title="mk")
    record = await engine.launch(plan)
    await engine.wait(record.id)
    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.row_count == 1, 10, "listing")
        await pilot.press("m")
        await wait_for_screen(pilot, SweepScreen)
        screen = app.screen
        await wait_for(pilot, lambda: screen.table_data is not None, 10, "rows")
        await pilot.pause()
        table = screen.query_one("#sweep-table", DataTable)
        shown = sorted(default_cell_formatter(table.get_cell_at((r, 0))).plain for r in range(2))
        assert shown == ["echo [/]", "echo [b]x[/b]"]
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, SweepScreen)


async def test_sweep_view_metric_column_shows_each_points_last_value(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    """The metric column reads what each point's job wrote into NEMORUN_JOB_DIR."""
    from core.engine import Plan
    from nemorun_tui.widgets.sweep_view import SweepScreen

    home = tmp_path / "store"
    engine = Engine(Store(home), Settings())
    plan = Plan(title="pts")
    for name, loss in (("a", 0.5), ("b", 0.25)):
        text = (
            f'printf \'{{"step": 1, "loss": 9}}\\n{{"step": 2, "loss": {loss}}}\\n\''
            ' > "$NEMORUN_JOB_DIR/metrics.jsonl"'
        )
        plan.add(Script(inline=text), LocalExecutor(), name=name)
    record = await engine.launch(plan)
    done = await engine.wait(record.id)
    assert [j.state.value for j in done.jobs] == ["SUCCEEDED", "SUCCEEDED"]
    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.row_count == 1, 10, "listing")
        app.push_screen(SweepScreen(record.id))
        await wait_for_screen(pilot, SweepScreen)
        screen = app.screen
        await wait_for(pilot, lambda: screen.table_data is not None, 10, "rows")
        assert screen.metric_name == "loss"
        assert {r.job: r.metric for r in screen.table_data.rows} == {"a": 0.5, "b": 0.25}
