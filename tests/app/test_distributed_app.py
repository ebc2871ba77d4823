"""Retries and stalls in the app: Runs marks a STALLED run, Detail lists the attempts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app_helpers import wait_for
from test_flows import SIZE, _plain

from core.config import Script
from core.engine import Engine, Plan, registry
from core.engine.executors import LocalExecutor
from core.settings import Settings
from core.store import Store


async def _prepare(home: Path, marker: Path) -> tuple[str, str]:
    engine = Engine(Store(home), Settings())
    flaky = Plan(title="flaky")
    text = f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; exit 9"
    flaky.add(Script(inline=text), LocalExecutor(retries=1), name="flaky")
    flaky_id = (await engine.launch(flaky)).id
    await asyncio.wait_for(engine.wait(flaky_id, max_interval=0.1), 60)
    quiet = Plan(title="quiet")
    quiet.add(
        Script(inline="echo hi; sleep 30"),
        LocalExecutor(stall_after="1s", cancel_grace_seconds=1),
        name="quiet",
    )
    quiet_id = (await engine.launch(quiet)).id
    deadline = time.monotonic() + 60
    while not engine.store.load(quiet_id).jobs[0].stalled:
        assert time.monotonic() < deadline, "never flagged"
        await engine.refresh([quiet_id])
        await asyncio.sleep(0.1)
    await registry.close_all()
    return flaky_id, quiet_id


async def test_runs_marks_stalled_and_detail_lists_attempts(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    home = tmp_path / "store"
    flaky_id, quiet_id = await _prepare(home, tmp_path / "marker")
    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    try:
        async with app.run_test(size=SIZE) as pilot:
            table = app.runs_table
            await wait_for(pilot, lambda: table.loaded and table.row_count == 2, what="listing")
            assert table._cells(table.summary(quiet_id), time.time())["state"] == "⚠ STALLED"
            assert table._cells(table.summary(flaky_id), time.time())["state"].endswith("SUCCEEDED")
            table.move_cursor_to(quiet_id)
            await pilot.press("enter")
            detail = app.detail_pane
            await wait_for(pilot, lambda: detail.data is not None and detail.exp_id == quiet_id)
            assert "STALLED: no output since" in _plain(detail.query_one("#detail-executor"))
            app.runs_table.focus()
            table.move_cursor_to(flaky_id)
            await pilot.press("enter")
            await wait_for(pilot, lambda: detail.data is not None and detail.exp_id == flaky_id)
            shown = _plain(detail.query_one("#detail-executor"))
            assert "attempt 2 of 2" in shown
            assert "attempt 1" in shown and "FAILED exit 9" in shown
    finally:
        engine = Engine(Store(home), Settings())
        await engine.cancel(quiet_id)
        await registry.close_all()
