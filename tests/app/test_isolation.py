"""The app never imports or runs user code in its own process (issue: safe by construction).

A workspace that writes a marker file with its pid whenever it is imported proves where it
ran: in the workspace helper and in the jobs, never in the test's (the app's) process. A
workspace that exits, hangs or crashes on import is an error in Compose, and the rest of the
app keeps working. If the engine thread dies, the app says so and carries on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from app_helpers import wait_for

from core.engine import Engine, Plan
from core.settings import Settings, UISettings
from core.store import Store

SIZE = (150, 42)

WORKSPACE = """
import os, pathlib
import nemorun_tui as run

pathlib.Path({marker!r}).open("a").write(f"{{os.getpid()}}\\n")
{extra}

def greet(n: int = 1, note: str = "x") -> None:
    print("greet", n, note)


@run.recipe
def hello() -> run.Partial:
    return run.Partial(greet, n=2)
"""


def _workspace(tmp_path: Path, extra: str = "") -> tuple[Path, Path]:
    marker = tmp_path / "imported-by.txt"
    path = tmp_path / "user_ws.py"
    path.write_text(WORKSPACE.format(marker=str(marker), extra=extra))
    return path, marker


def _importers(marker: Path) -> set[int]:
    if not marker.exists():
        return set()
    return {int(line) for line in marker.read_text().split()}


def _assert_not_imported_here(ws: Path, marker: Path) -> None:
    assert os.getpid() not in _importers(marker), "the app's process imported the workspace"
    loaded = [
        name
        for name, module in list(sys.modules.items())
        if getattr(module, "__file__", None) and Path(module.__file__).resolve() == ws.resolve()
    ]
    assert loaded == [], f"workspace module in the app's sys.modules: {loaded}"


def _state(app: Any, exp_id: str) -> str | None:
    summary = app.runs_table.summary(exp_id)
    return summary.state if summary is not None else None


async def _launch_script(home: Path, title: str) -> str:
    from core.config import Script

    engine = Engine(Store(home), Settings())
    plan = Plan(title=title)
    plan.add(Script(inline="echo ok"), engine.profile("local"), name="script")
    return (await engine.launch(plan)).id


def _errors(app: Any) -> list[str]:
    """Record what the app reports as errors (toasts)."""
    seen: list[str] = []
    original = app.report_error

    def report(text: str, **kwargs: Any) -> None:
        seen.append(text)
        original(text, **kwargs)

    app.report_error = report
    return seen


async def test_compose_launch_detail_and_relaunches_never_import_the_workspace_in_the_app(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    ws, marker = _workspace(tmp_path)
    home = tmp_path / "store"
    settings = Settings(ui=UISettings(bell=False))
    app = make_app(
        home, workspace=str(ws), settings=settings, poll_seconds=0.2, listing_seconds=0.3
    )
    from nemorun_tui.widgets.compose_pane import ComposeSource

    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
        await pilot.press("2")
        pane = app.compose_pane
        await wait_for(pilot, lambda: pane.workspace is not None, 20, "workspace")
        assert list(pane.workspace.recipes) == ["hello"]
        pane.start(ComposeSource(recipe="hello", overrides=["n=3"]))
        await wait_for(pilot, lambda: pane.built is not None, 20, "plan")
        job = pane.built.plan.jobs[0].name
        assert pane.built.flat[job]["n"] == "3"
        assert pane.built.flat[job]["note"] == "'x'"  # a signature default, from the helper
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: app.runs_table.row_count == 1, 20, "run listed")
        first = app.runs_table.order[0]
        await wait_for(pilot, lambda: _state(app, first) == "SUCCEEDED", 30, "SUCCEEDED")

        # Detail (config tree with defaults, from the stored view), then relaunch as-is.
        app.runs_table.move_cursor_to(first)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.detail_pane.data is not None, 20, "detail")
        detail_job = app.detail_pane.data.jobs[0]
        assert detail_job.config is not None and detail_job.config["note"] == "'x'"
        await pilot.press("1")
        app.runs_table.move_cursor_to(first)
        await pilot.press("r")
        await wait_for(pilot, lambda: app.runs_table.row_count == 2, 20, "relaunch listed")

        # Edit and relaunch with an override: rebuilt in the helper, diffed from views.
        pane.start(ComposeSource(parent=first, overrides=["n=4"]))
        await wait_for(
            pilot,
            lambda: pane.built is not None and pane.built.plan.parent == first,
            20,
            "relaunch plan",
        )
        assert pane.built.flat[job]["n"] == "4"
        await pilot.press("2")
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: app.runs_table.row_count == 3, 20, "edited relaunch")
        third = app.runs_table.order[0]
        await wait_for(pilot, lambda: _state(app, third) == "SUCCEEDED", 30, "SUCCEEDED")
        app.runs_table.move_cursor_to(third)
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: app.detail_pane.data is not None and app.detail_pane.data.record.id == third,
            20,
            "detail of the edited relaunch",
        )
        changes = [str(c) for c in app.detail_pane.data.jobs[0].diff or []]
        assert changes == ["n: 3 → 4"]

    out = (home / "experiments" / third / "jobs" / job / "logs" / "stdout.log").read_bytes()
    assert out == b"greet 4 x\n"
    # The workspace ran: in the helper and in each job, but never here.
    assert len(_importers(marker)) >= 2
    _assert_not_imported_here(ws, marker)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("import sys; sys.exit(3)", "sys.exit(3)"),
        ("raise RuntimeError('boom at import')", "boom at import"),
        ("os._exit(7)", "exit status 7"),
        ("import signal; os.kill(os.getpid(), signal.SIGKILL)", "killed by SIGKILL"),
        ("import time; time.sleep(3600)", "did not answer"),
    ],
    ids=["sys-exit", "raises", "os-exit", "killed", "hangs"],
)
async def test_a_workspace_that_breaks_on_import_is_an_error_and_the_app_keeps_working(
    make_app: Callable[..., Any], tmp_path: Path, extra: str, expected: str
) -> None:
    ws, marker = _workspace(tmp_path, extra)
    home = tmp_path / "store"
    existing = await _launch_script(home, "before")
    app = make_app(home, workspace=str(ws), poll_seconds=0.2, listing_seconds=0.3)
    app.workspace_helper.timeout = 2.0
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
        await pilot.press("2")
        pane = app.compose_pane
        await wait_for(pilot, lambda: pane.workspace_error is not None, 20, "workspace error")
        assert expected in pane.workspace_error
        # The rest still works: a new run appears, and Detail opens.
        later = await _launch_script(home, "after")
        await pilot.press("1")
        await wait_for(pilot, lambda: app.runs_table.row_count == 2, 20, "new run listed")
        app.runs_table.move_cursor_to(existing)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.detail_pane.data is not None, 20, "detail")
        assert app.detail_pane.data.record.id == existing
        assert later in app.runs_table.order
    _assert_not_imported_here(ws, marker)


async def test_the_app_says_so_and_recovers_when_the_engine_thread_dies(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    home = tmp_path / "store"
    await _launch_script(home, "before")
    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    errors = _errors(app)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.row_count == 1, 20, "listing")

        def die() -> None:
            raise SystemExit("user code called sys.exit on the engine thread")

        app.bridge.loop.call_soon_threadsafe(die)
        # The next poll restarts a dead loop within 0.3 s: the death may show only as that.
        await wait_for(
            pilot,
            lambda: not app.bridge.alive or app.bridge.restarts >= 1,
            10,
            "engine thread to die",
        )
        later = await _launch_script(home, "after")
        await wait_for(pilot, lambda: later in app.runs_table.order, 20, "listing after restart")
        await wait_for(
            pilot, lambda: any("engine thread died" in e for e in errors), 10, "the error"
        )
        assert app.bridge.restarts == 1
        await wait_for(pilot, lambda: _state(app, later) == "SUCCEEDED", 30, "monitor works")


async def test_a_workspace_that_launches_at_import_launches_nothing_from_the_app(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    """No ``if __name__ == "__main__":`` guard: importing it (in the helper) must not launch."""
    home = tmp_path / "store"
    launched = tmp_path / "launched"
    extra = f"run.run(run.Script(inline='touch {launched}'), home={str(home)!r})"
    ws, marker = _workspace(tmp_path, extra)
    app = make_app(home, workspace=str(ws), poll_seconds=0.2, listing_seconds=0.3)
    from nemorun_tui.widgets.compose_pane import ComposeSource

    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
        await pilot.press("2")
        pane = app.compose_pane
        await wait_for(pilot, lambda: pane.workspace is not None, 20, "workspace")
        pane.start(ComposeSource(recipe="hello"))
        await wait_for(pilot, lambda: pane.built is not None, 20, "plan")
        await pilot.pause(0.5)
    assert not launched.exists()
    assert not (home / "experiments").exists() or not any((home / "experiments").iterdir())
    assert _importers(marker)  # it was imported (in the helper)
    _assert_not_imported_here(ws, marker)
