"""Metrics, Compare, failure causes and artifacts in the app, driven through Pilot.

On the fixed demo store (two training runs with metrics.jsonl and a checkpoint, a failed
run with a traceback in stderr) and on a real local job that writes metrics while it runs.
"""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from app_helpers import wait_for, wait_for_screen

from core.config import Script
from core.engine import Engine, Plan
from core.engine.executors import LocalExecutor
from core.store import Store
from nemorun_tui.screens.compare import CompareScreen, PickRunScreen
from nemorun_tui.screens.metrics import MetricsScreen
from nemorun_tui.widgets.metrics_view import MetricsView
from nemorun_tui.widgets.results_panel import ArtifactsList, ResultsPanel

SIZE = (150, 42)
FIRST = "train-20250601-090000-a1b2"
SECOND = "train-20250601-093000-c3d4"
FAILED = "fail-20250601-100000-e5f6"


async def loaded(pilot: Any) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
    await wait_for(pilot, lambda: app.runs_pane.jobs.record is not None, what="jobs panel")


async def test_metrics_view_plots_zooms_switches_axis_and_scale(demo_app: Any) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        demo_app.runs_table.move_cursor_to(SECOND)
        await pilot.press("M")
        await wait_for_screen(pilot, MetricsScreen)
        screen = demo_app.screen
        await wait_for(pilot, lambda: screen.refreshes >= 1, what="metrics read")
        view = screen.query_one(MetricsView)
        assert [c.metric for c in view.curves] == ["loss"]
        assert len(view.curves[0].series) == 21 and view.curves[0].series.last()[1] == 0.0023
        await pilot.pause()
        plotted = view.last_plot
        assert plotted is not None and plotted.x_range == (0.0, 200.0)
        await pilot.press("n")  # the next metric
        assert [c.metric for c in view.curves] == ["lr"]
        await pilot.press("space", "p")  # pin lr, back to loss: both plotted
        assert sorted(c.metric for c in view.curves) == ["loss", "lr"]
        await pilot.press("t")
        await pilot.pause()
        assert view.x_mode == "time" and view.last_plot.x_range == (0.0, 120.0)
        await pilot.press("s")
        await pilot.pause()
        assert view.log_y and view.last_plot.y_range[0] < 0  # log10 of lr=0.001 is -3
        await pilot.press("plus")
        await pilot.pause()
        assert view.window == (0.25, 0.75) and view.last_plot.x_range == (30.0, 90.0)
        await pilot.press("right")
        assert view.window == (0.375, 0.875)
        await pilot.press("c")  # this metric as a column in Runs
        assert demo_app.runs_table.metric_name == "loss"
        await pilot.press("0", "escape")
        assert not isinstance(demo_app.screen, MetricsScreen)


async def test_compare_picks_a_run_and_shows_only_differences(demo_app: Any) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        demo_app.runs_table.move_cursor_to(SECOND)
        await pilot.press("C")
        await wait_for_screen(pilot, PickRunScreen)
        picker = demo_app.screen
        index = [s.id for s in picker.summaries].index(FIRST)
        picker.query_one("#pick-run").highlighted = index
        await pilot.press("enter")
        await wait_for_screen(pilot, CompareScreen)
        screen = demo_app.screen
        await wait_for(pilot, lambda: screen.comparison is not None, what="comparison")
        out = screen.comparison
        assert out.runs == [SECOND, FIRST]
        assert {row.path: row.values for row in out.config} == {"optimizer.lr": ["0.001", "0.0003"]}
        assert out.overrides == [
            ["trainer=big_trainer", "optimizer.lr=0.001"],
            ["trainer=big_trainer"],
        ]
        finals = {row.path: row.values for row in out.metrics}
        assert finals["loss"] == ["0.0023", "0.4398"] and finals["lr"] == ["0.001", "0.0003"]
        view = screen.query_one(MetricsView)
        assert [c.run for c in view.curves] == ["[1]", "[2]"]  # the curves overlaid
        await pilot.press("M")  # the full Metrics view of the compared runs
        await wait_for_screen(pilot, MetricsScreen)
        assert demo_app.screen.exp_ids == [SECOND, FIRST]


async def test_compare_uses_marked_runs_when_there_are_two(demo_app: Any) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        demo_app.runs_table.marked = {FIRST, SECOND}  # set by Runs' marks (another change)
        await pilot.press("C")
        await wait_for_screen(pilot, CompareScreen)
        assert demo_app.screen.exp_ids == sorted([FIRST, SECOND])


async def test_failed_run_cause_in_runs_and_detail_and_logs_open_on_stderr(
    demo_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        demo_app.runs_table.move_cursor_to(FAILED)
        jobs = demo_app.runs_pane.jobs
        await wait_for(pilot, lambda: "fail" in jobs.causes, what="cause in Runs")
        summary = (
            "RuntimeError: loss became NaN at step 3 (simulated failure) at demo_workspace.py:70"
        )
        assert jobs._reason(jobs.record.jobs[0]) == summary
        await pilot.press("enter")
        panel = demo_app.detail_pane.query_one(ResultsPanel)
        await wait_for(pilot, lambda: panel.loaded_at is not None, what="results")
        cause = panel.causes["fail"]
        assert cause.kind == "python-exception" and cause.stream == "stderr"
        assert [line.text for line in cause.lines][-1].startswith("RuntimeError: loss became NaN")
        await pilot.press("1", "l")
        await wait_for(pilot, lambda: demo_app.logs_pane.current_key is not None, what="logs")
        assert demo_app.logs_pane.current_key.stream == "stderr"


async def test_artifacts_in_detail_copy_path_and_fetch(
    demo_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # fetched files land under ./nemorun-fetched
    async with demo_app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        demo_app.runs_table.move_cursor_to(SECOND)
        await pilot.press("enter")
        panel = demo_app.detail_pane.query_one(ResultsPanel)
        await wait_for(pilot, lambda: panel.loaded_at is not None, what="artifacts")
        listing = panel.listings["train"]
        assert [(a.path, a.checkpoint) for a in listing.artifacts] == [
            ("checkpoints", True),
            ("checkpoints/step=200.ckpt", True),
            ("metrics.jsonl", False),
        ]
        items = panel.query_one(ArtifactsList)
        items.focus()
        items.highlighted = 1
        await pilot.press("y")
        job_dir = Path(listing.job_dir)
        assert demo_app.clipboard == str(job_dir / "checkpoints" / "step=200.ckpt")
        await pilot.press("f")
        await wait_for(pilot, lambda: items.last_fetched is not None, what="fetch")
        dest = tmp_path / "nemorun-fetched" / SECOND / "train" / "checkpoints" / "step=200.ckpt"
        assert dest.read_bytes() == (job_dir / "checkpoints" / "step=200.ckpt").read_bytes()
        assert items.last_fetched.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()
        stored = json.loads((job_dir / "artifacts.json").read_text())
        assert [a["path"] for a in stored["artifacts"]] == [a.path for a in listing.artifacts]


WRITER = textwrap.dedent(
    """
    import json, os, sys, time
    path = os.path.join(os.environ["NEMORUN_JOB_DIR"], "metrics.jsonl")
    go = os.path.join(os.environ["NEMORUN_JOB_DIR"], "go")
    with open(path, "a") as fh:
        for step in range(3):
            fh.write(json.dumps({"step": step, "loss": 3.0 - step}) + "\\n")
        fh.flush()
        deadline = time.time() + 60
        while not os.path.exists(go) and time.time() < deadline:
            time.sleep(0.05)
        for step in range(3, 6):
            fh.write(json.dumps({"step": step, "loss": 3.0 - step}) + "\\n")
    """
)


async def test_metrics_view_is_live_while_the_run_goes_on(tmp_path: Path, make_app: Any) -> None:
    home = tmp_path / "store"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    engine = Engine(Store(home))
    plan = Plan(title="live-metrics")
    plan.add(Script(inline=f"{sys.executable} {script}"), LocalExecutor(), name="train")
    record = await engine.launch(plan)  # the writer gives up after 60 s: always bounded
    job_dir = Path(engine.store.job_dir(record.id, "train"))
    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
        app.runs_table.move_cursor_to(record.id)
        await pilot.press("M")
        await wait_for_screen(pilot, MetricsScreen)
        screen = app.screen
        screen.interval = 0.1
        view = screen.query_one(MetricsView)
        await wait_for(
            pilot, lambda: bool(view.curves) and len(view.curves[0].series) == 3, 20, "3"
        )
        (job_dir / "go").touch()
        await wait_for(pilot, lambda: len(view.curves[0].series) == 6, 20, "the new points, live")
        assert view.curves[0].series.steps.tolist() == [0, 1, 2, 3, 4, 5]
        await wait_for(
            pilot,
            lambda: not screen.workers or all(w.is_finished for w in screen.workers),
            20,
            "polling to stop once the run ended",
        )


async def test_runs_metric_column_shows_last_value_and_sparkline(demo_app: Any) -> None:
    from nemorun_tui.widgets.runs_metric import MetricNameScreen

    async with demo_app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        demo_app.action_runs_metric()
        await wait_for_screen(pilot, MetricNameScreen)
        await pilot.press(*"loss", "enter")
        table = demo_app.runs_table
        column = demo_app._runs_metric
        await wait_for(pilot, lambda: column.refreshes >= 1, what="metric column")
        assert table.metric_cells[SECOND].startswith("0.0023 ")
        assert table.metric_cells[FIRST].startswith("0.4398 ")
        assert table.metric_cells[SECOND].endswith("▁") and "█" in table.metric_cells[SECOND]
        assert FAILED not in table.metric_cells or table.metric_cells[FAILED] == ""
        header = "".join(seg.text for seg in table.render_line(0))
        assert "LOSS" in header
        line = next(
            "".join(seg.text for seg in table.render_line(y))
            for y in range(1, 8)
            if SECOND in "".join(seg.text for seg in table.render_line(y))
        )
        assert "0.0023" in line
        assert {SECOND, FIRST} <= column.done  # ended runs are not read again
        demo_app.action_runs_metric("")  # an empty name hides the column
        assert table.metric_name is None and "LOSS" not in "".join(
            seg.text for seg in table.render_line(0)
        )
