"""The Logs pane picks one rank of a launcher's log (``[rank<N>]:`` lines): R next, A all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app_helpers import wait_for
from test_logs_pane import SIZE, _log_path, _open, _status


async def test_r_shows_one_rank_then_the_next_and_a_all(demo_app: Any, demo_home: Path) -> None:
    with _log_path(demo_home).open("a") as log:
        for step in range(3):
            log.write(f"[rank0]:step {step} loss 0.{step}\n[rank1]:step {step} loss 1.{step}\n")
    app = demo_app
    async with app.run_test(size=SIZE) as pilot:
        view = await _open(pilot)
        total = view.window.total_rows
        await pilot.press("R")
        await wait_for(pilot, lambda: view.window.filter_matches == 3, what="rank 0")
        shown = view.visible_text().splitlines()
        assert len(shown) == 3 and all(line.startswith("[rank0]:") for line in shown)
        assert "rank 0" in _status(app)
        await pilot.press("R")
        await wait_for(
            pilot,
            lambda: all(x.startswith("[rank1]:") for x in view.visible_text().splitlines()),
            what="rank 1",
        )
        assert len(view.visible_text().splitlines()) == 3
        await pilot.press("A")
        await wait_for(pilot, lambda: not view.window.filtering, what="all ranks")
        assert view.window.total_rows == total
        assert "rank" not in _status(app).split("·")[0]
