"""The main flows, driven with the keyboard through Textual's Pilot, on real local jobs."""

from __future__ import annotations

import asyncio
import gc
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from app_helpers import wait_for, wait_for_screen
from textual.widgets import OptionList, Static

from core.engine import Engine, Plan
from core.engine.states import JobState
from core.settings import Settings, UISettings
from core.store import Store
from nemorun_tui.screens.confirm import ConfirmScreen

SIZE = (150, 42)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "store"


def _state(app: Any, exp_id: str) -> str | None:
    summary = app.runs_table.summary(exp_id)
    return summary.state if summary is not None else None


async def _open_compose_with(pilot: Any, recipe: str) -> Any:
    app = pilot.app
    await pilot.press("2")
    pane = app.compose_pane
    await wait_for(pilot, lambda: pane.workspace is not None, what="workspace")
    recipes = pane.query_one("#recipes", OptionList)
    recipes.highlighted = recipes.get_option_index(recipe)
    recipes.focus()
    await pilot.pause()
    await pilot.press("enter")
    await wait_for(pilot, lambda: pane.built is not None, what="plan")
    return pane


async def _edit_field(pilot: Any, pane: Any, path: str, value: str) -> None:
    """Put the tree cursor on ``path``, press enter, type ``value``, press enter."""
    tree = pane.config_tree
    node = next(
        n for n in _walk(tree.root) if n.data is not None and n.data.path == path and n.data.leaf
    )
    tree.move_cursor(node)
    tree.focus()
    await pilot.pause()
    await pilot.press("enter")
    await wait_for(pilot, lambda: pane.has_class("-editing"), what="editor")
    editor = pane.query_one("#field-editor")
    editor.value = ""
    await pilot.press(*value, "enter")


def _plain(static: Static) -> str:
    """What a Static shows, as plain text."""
    from rich.console import Console

    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(static.content)
    return console.export_text()


def _walk(node: Any) -> Iterator[Any]:
    yield node
    for child in node.children:
        yield from _walk(child)


async def _launch_script(home: Path, script: str, title: str) -> str:
    """Launch a local script outside the app (as another terminal's CLI would)."""
    from core.config import Script

    engine = Engine(Store(home), Settings())
    plan = Plan(title=title)
    plan.add(Script(inline=script), engine.profile("local"), name="script")
    record = await engine.launch(plan)
    return record.id


async def test_launch_a_recipe_from_compose_and_watch_it_succeed_then_read_its_logs(
    make_app: Callable[..., Any], home: Path
) -> None:
    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
        await _open_compose_with(pilot, "quick_train")
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: app.runs_table.row_count == 1, what="new run listed")
        exp_id = app.runs_table.order[0]
        assert app.active_pane == "runs"
        await wait_for(pilot, lambda: _state(app, exp_id) == "SUCCEEDED", 30, "SUCCEEDED")
        assert app.runs_table.cursor_id == exp_id
        record = Store(home).load(exp_id)
        assert record.recipe == "quick_train" and record.parent is None

        await pilot.press("l")
        await wait_for(pilot, lambda: app.logs_pane.view is not None, what="log tab")
        view = app.logs_pane.view
        await wait_for(pilot, lambda: "[train] done" in view.visible_text(), 10, "log text")
        assert app.active_pane == "logs"
        assert "step     5/5" in view.visible_text()


async def test_edit_a_field_and_relaunch_shows_the_parent_diff_in_detail(
    make_app: Callable[..., Any], home: Path
) -> None:
    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
        pane = await _open_compose_with(pilot, "quick_train")
        await _edit_field(pilot, pane, "seed", "7")
        await wait_for(pilot, lambda: pane.source.overrides == ["seed=7"])
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: app.runs_table.row_count == 1, what="first run")
        parent = app.runs_table.order[0]
        await wait_for(pilot, lambda: _state(app, parent) == "SUCCEEDED", 30, "parent done")

        await pilot.press("e")
        await wait_for(pilot, lambda: pane.source.parent == parent and pane.built, what="edit")
        assert app.active_pane == "compose"
        await _edit_field(pilot, pane, "trainer.max_steps", "3")
        await wait_for(pilot, lambda: pane.source.overrides == ["trainer.max_steps=3"])
        line = _plain(pane.query_one("#overrides", Static))
        assert "trainer.max_steps=3" in line and "on top of the parent's: seed=7" in line
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: app.runs_table.row_count == 2, what="child listed")
        child = next(i for i in app.runs_table.order if i != parent)
        await wait_for(pilot, lambda: _state(app, child) == "SUCCEEDED", 30, "child done")
        assert Store(home).load(child).parent == parent
        assert Store(home).load(child).overrides == ["seed=7", "trainer.max_steps=3"]

        app.runs_table.focus()
        app.runs_table.move_cursor_to(child)
        await pilot.press("enter")
        detail = app.detail_pane
        await wait_for(pilot, lambda: detail.data is not None and detail.exp_id == child)
        changes = [(c.path, c.old, c.new) for c in detail.data.jobs[0].diff]
        assert changes == [("trainer.max_steps", "5", "3")]
        shown = _plain(detail.query_one("#detail-diff", Static))
        assert "trainer.max_steps: 5 → 3" in shown and parent in shown


async def test_relaunch_as_is_records_the_parent(make_app: Callable[..., Any], home: Path) -> None:
    first = await _launch_script(home, "echo again", "again")
    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: _state(app, first) == "SUCCEEDED", 15, "first done")
        await pilot.press("r")
        await wait_for(pilot, lambda: app.runs_table.row_count == 2, 10, "relaunch listed")
        second = next(i for i in app.runs_table.order if i != first)
        await wait_for(pilot, lambda: _state(app, second) == "SUCCEEDED", 15, "relaunch done")
        assert app.runs_table.summary(second).parent == first
        assert app.runs_table.cursor_id == second


async def test_a_bad_field_value_is_rejected_inline_and_nothing_is_launched(
    make_app: Callable[..., Any], home: Path
) -> None:
    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
        pane = await _open_compose_with(pilot, "quick_train")
        await _edit_field(pilot, pane, "trainer.max_steps", "lots")
        error = pane.query_one("#field-error", Static)
        await wait_for(pilot, lambda: error.has_class("-shown"), what="inline error")
        assert "`trainer.max_steps` expects int, got str 'lots'" in _plain(error)
        assert pane.has_class("-editing")  # still editing, value kept for correction
        assert pane.query_one("#field-editor").has_class("-invalid")
        assert pane.source.overrides == []
        await pilot.press("escape")
        assert not pane.has_class("-editing")
        await pilot.pause(0.3)
        assert Store(home).list() == []


async def test_cancel_a_running_job_only_after_confirming(
    make_app: Callable[..., Any], home: Path
) -> None:
    exp_id = await _launch_script(home, "sleep 60", "sleeper")
    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: _state(app, exp_id) == "RUNNING", 15, "RUNNING")

        await pilot.press("c")
        await wait_for_screen(pilot, ConfirmScreen)
        await pilot.press("n")  # declined: still running
        await pilot.pause(0.5)
        assert _state(app, exp_id) == "RUNNING"

        await pilot.press("c")
        await wait_for_screen(pilot, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: _state(app, exp_id) == "CANCELLED", 20, "CANCELLED")
    record = Store(home).load(exp_id)
    assert record.jobs[0].state is JobState.CANCELLED


async def test_filter_narrows_the_runs_and_escape_clears_it(demo_app: Any) -> None:
    app = demo_app
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
        assert app.runs_table.row_count == 5
        await pilot.press("slash", *"fail")
        assert app.runs_table.order == ["fail-20250601-100000-e5f6"]
        await pilot.press("enter")  # back to the table, filter kept
        assert app.focused is app.runs_table
        assert app.runs_table.cursor_id == "fail-20250601-100000-e5f6"
        await pilot.press("slash", "ctrl+u", *"state:succeeded tag:demo")
        assert app.runs_table.row_count == 2
        await pilot.press("escape")
        assert app.runs_table.row_count == 5
        await pilot.press("slash", *"[no-such-run]")  # brackets are text, not markup
        assert app.runs_table.row_count == 0
        assert "[no-such-run]" in str(app.runs_pane.query_one("#runs-status").content)
        await pilot.press("escape")
        assert app.runs_table.row_count == 5


async def test_runs_are_listed_live_and_a_watched_run_ending_is_notified(
    make_app: Callable[..., Any], home: Path
) -> None:
    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
        exp_id = await _launch_script(home, "echo hi; sleep 0.5", "from-cli")
        await wait_for(pilot, lambda: exp_id in app.runs_table.order, 10, "listed")
        await wait_for(pilot, lambda: _state(app, exp_id) == "SUCCEEDED", 20, "done")
        await wait_for(
            pilot,
            lambda: any(exp_id in str(n.message) for n in app._notifications),
            5,
            "notification",
        )


async def test_keys_are_remappable_from_settings(
    make_app: Callable[..., Any], demo_home: Path
) -> None:
    settings = Settings(
        ui=UISettings(bell=False), keys={"filter": "F", "quit": "ctrl+q", "relaunh": "R"}
    )
    app = make_app(demo_home, settings=settings, monitor=False, listing_seconds=3600)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
        await pilot.press("F")
        assert app.runs_pane.has_class("-filtering")
        await pilot.press("escape")
        await pilot.press("q")  # no longer quit
        await pilot.pause(0.1)
        assert app.is_running
        await wait_for(pilot, lambda: app.panes_ready.is_set(), what="panes")
        warnings = [str(n.message) for n in app._notifications]
        assert any("no binding called relaunh" in w for w in warnings), warnings


# -- responsiveness with a backend that hangs -------------------------------------------------
async def _timed_press(app: Any, key: str, done: Callable[[], bool], limit: float = 2.0) -> float:
    """Seconds from a key arriving (as from the terminal) until its effect is visible.

    ``pilot.press`` is not used for timing: it waits for the whole process to go idle,
    which background threads (engine, log readers) legitimately delay.
    """
    from textual import events

    event = events.Key(key, None)
    event.set_sender(app)
    started = time.perf_counter()
    app._driver.send_message(event)
    while not done():
        if time.perf_counter() - started > limit:
            raise AssertionError(f"key {key!r} had no effect within {limit} s")
        await asyncio.sleep(0.001)
    return time.perf_counter() - started


@dataclass
class SlowBackend:
    """A backend whose poll blocks its thread for 10 s (the worst kind of hang)."""

    name: ClassVar[str] = "slow"
    polls: ClassVar[int] = 0
    hang_seconds: ClassVar[float] = 10.0

    @classmethod
    def from_profile(cls, profile: Any) -> SlowBackend:
        return cls()

    async def poll(self, handles: Any) -> dict[Any, Any]:
        type(self).polls += 1
        time.sleep(self.hang_seconds)  # blocks the engine thread's loop entirely
        return {}

    async def dryrun(self, job: Any) -> Any:  # pragma: no cover - unused
        raise NotImplementedError

    async def submit(self, job: Any) -> Any:  # pragma: no cover - unused
        raise NotImplementedError

    async def cancel(self, handle: Any) -> None:  # pragma: no cover - unused
        raise NotImplementedError

    async def logs(self, handle: Any, **kwargs: Any) -> Any:  # pragma: no cover - unused
        raise NotImplementedError
        yield b""

    async def close(self) -> None:
        return None


@pytest.fixture
def slow_backend() -> Iterator[type[SlowBackend]]:
    """Register the slow backend and its profile type for this test only."""
    from core.engine import executors, registry
    from core.engine.executors import ExecutorProfile

    @dataclass
    class SlowExecutor(ExecutorProfile):
        backend: ClassVar[str] = "slow"

        def target(self) -> str:
            return "slow-cluster"

    executors.register_profile(SlowExecutor)
    registry.register_backend("slow", SlowBackend)
    SlowBackend.polls = 0
    yield SlowBackend
    registry._extra.pop("slow", None)
    for key in [k for k in registry._instances if k[0] == "slow"]:
        del registry._instances[key]
    executors._PROFILE_TYPES.pop("slow", None)


def _add_slow_experiment(home: Path) -> None:
    """A RUNNING job on the "slow" backend (its profile type must be registered)."""
    import json

    from core.engine.protocol import Handle
    from core.store import ExperimentRecord, JobRecord

    store = Store(home)
    from core.engine.executors import profile_types

    executor = profile_types()["slow"](profile_name="slow")
    store.create(
        ExperimentRecord(
            id="on-slow-cluster-1",
            title="on the slow cluster",
            created_at=time.time(),
            jobs=[
                JobRecord(
                    name="train",
                    kind="script",
                    backend="slow",
                    handle=Handle("slow", "slow-cluster", "42"),
                    state=JobState.RUNNING,
                    submitted_at=time.time(),
                )
            ],
        ),
        {"train": {"executor.json": json.dumps(executor.to_dict())}},
    )


async def test_a_hanging_backend_never_delays_a_key_press(
    make_app: Callable[..., Any], demo_home: Path, slow_backend: type[SlowBackend]
) -> None:
    _add_slow_experiment(demo_home)
    app = make_app(demo_home, poll_seconds=0.1, listing_seconds=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
        await wait_for(pilot, lambda: slow_backend.polls >= 1, 5, "a poll in flight")
        await pilot.pause(0.2)  # the engine thread is now stuck in time.sleep(10)
        # Garbage left by earlier tests in this process makes gen-2 collections slow (100+ ms
        # after a dozen apps); that is the test runner's heap, not the app. Start clean.
        gc.collect()
        gc.freeze()
        table = app.runs_table
        steps: list[tuple[str, Callable[[], bool]]] = [
            ("down", lambda: table.cursor_row == 1),
            ("up", lambda: table.cursor_row == 0),
            ("2", lambda: app.active_pane == "compose"),
            ("1", lambda: app.active_pane == "runs"),
            ("slash", lambda: app.runs_pane.has_class("-filtering")),
            ("escape", lambda: not app.runs_pane.has_class("-filtering")),
            ("4", lambda: app.active_pane == "detail"),
            ("1", lambda: app.active_pane == "runs"),
        ]
        # Each sequence three times; a key's figure is its median, so that a moment of CPU
        # contention from other processes on a 2-core machine is not blamed on the backend.
        timings: dict[str, list[float]] = {}
        for _ in range(3):
            for key, done in steps:
                took = await _timed_press(app, key, done)
                timings.setdefault(key, []).append(took)
                await pilot.pause(0.25)  # let the previous pane finish drawing
        gc.unfreeze()
        medians = {key: sorted(values)[1] for key, values in timings.items()}
        worst_key = max(medians, key=lambda k: medians[k])
        print(
            "key handling with a hung backend (median ms): "
            + ", ".join(f"{k} {v * 1000:.1f}" for k, v in medians.items())
        )
        assert medians[worst_key] < 0.1, (
            f"key {worst_key!r} took {medians[worst_key] * 1000:.0f} ms to be handled"
        )
        assert app.active_pane == "runs"
        assert slow_backend.polls <= 2  # polls are chained: no pile-up behind the hang
    await asyncio.sleep(0)


@dataclass
class BrokenBackend(SlowBackend):
    """A backend whose every poll fails (cluster down, expired credentials)."""

    async def poll(self, handles: Any) -> dict[Any, Any]:
        type(self).polls += 1
        raise ConnectionError("[Errno 111] sacct: error: Slurm controller not responding")


async def test_a_failing_backend_is_a_notification_not_a_traceback(
    make_app: Callable[..., Any], demo_home: Path, slow_backend: type[SlowBackend]
) -> None:
    from core.engine import registry

    registry.register_backend("slow", BrokenBackend)
    BrokenBackend.polls = 0
    _add_slow_experiment(demo_home)
    app = make_app(demo_home, poll_seconds=0.1, listing_seconds=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(
            pilot,
            lambda: any("not responding" in str(n.message) for n in app._notifications),
            5,
            "error notification",
        )
        await wait_for(pilot, lambda: BrokenBackend.polls >= 3, 5, "polling goes on")
        shown = [n for n in app._notifications if "not responding" in str(n.message)]
        assert len(shown) == 1  # the same error is not repeated on every poll
        assert app.is_running
        assert app.runs_table.summary("on-slow-cluster-1").state == "RUNNING"  # not invented


async def test_a_dirty_tree_is_confirmed_before_launch_and_provenance_recorded(
    make_app: Callable[..., Any], home: Path, tmp_path: Path
) -> None:
    """Packaging warnings (uncommitted changes) are shown and must be confirmed in the app."""
    import subprocess

    from core.config import Script
    from core.engine.executors import LocalExecutor
    from core.packaging import GitArchivePackager

    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@e"], ["config", "user.name", "T"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    (repo / "f.txt").write_text("v1\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "c"], check=True)
    (repo / "f.txt").write_text("dirty\n")

    def plan() -> Plan:
        p = Plan(title="dirty")
        executor = LocalExecutor(packager=GitArchivePackager(basepath=str(repo)))
        p.add(Script(inline="cat f.txt"), executor, name="cat")
        return p

    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
        declined = app.run_worker(app.launch_plan(plan()), exit_on_error=False)
        await wait_for_screen(pilot, ConfirmScreen)
        assert "f.txt" in _plain_screen(app)
        await pilot.press("n")
        await declined.wait()
        assert declined.result is None and Store(home).list() == []
        accepted = app.run_worker(app.launch_plan(plan()), exit_on_error=False)
        await wait_for_screen(pilot, ConfirmScreen)
        await pilot.press("y")
        await accepted.wait()
        exp_id = accepted.result
        assert exp_id is not None
        await wait_for(pilot, lambda: _state(app, exp_id) == "SUCCEEDED", 15, "launched run")
        prov = Engine(Store(home)).provenance_of(exp_id, "cat")
        assert prov is not None and "dirty" in (prov.get("dirty_diff") or "")


def _plain_screen(app: Any) -> str:
    return " ".join(str(w.render()) for w in app.screen.query(Static))


async def test_a_two_job_experiment_runs_in_order_and_L_opens_every_jobs_log(
    make_app: Callable[..., Any], home: Path
) -> None:
    """Multi-job flow: ``eval`` waits for ``prep``; Runs shows both; ``L`` in Detail opens a
    log tab per job, each with that job's own output."""
    from core.config import Script

    engine = Engine(Store(home), Settings())
    plan = Plan(title="two-step")
    profile = engine.profile("local")
    marker = shlex.quote(str(home.parent / "prepared.marker"))
    plan.add(Script(inline=f"sleep 0.5; echo ok > {marker}; echo prepared"), profile, name="prep")
    # fails (and the experiment with it) if it ran before prep had finished
    plan.add(
        Script(inline=f"cat {marker} > /dev/null && echo evaluated"),
        profile,
        name="eval",
        dependencies=["prep"],
    )
    exp_id = (await engine.launch(plan)).id

    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: _state(app, exp_id) == "SUCCEEDED", 20, "both jobs done")
        assert app.runs_table.summary(exp_id).n_jobs == 2
        record = Store(home).load(exp_id)
        assert {job.state for job in record.jobs} == {JobState.SUCCEEDED}

        app.runs_table.move_cursor_to(exp_id)
        await pilot.press("enter")
        detail = app.detail_pane
        await wait_for(pilot, lambda: detail.data is not None and detail.exp_id == exp_id)
        await pilot.press("L")
        pane = app.logs_pane
        await wait_for(pilot, lambda: len(pane._keys) == 2, what="a tab per job")
        texts = {}
        for view_id, key in pane._keys.items():
            view = pane.query_one(f"#{view_id}")
            await wait_for(pilot, lambda v=view: v.window.line_count > 0, what=key.job)
            texts[key.job] = view.visible_text()
        assert "prepared" in texts["prep"] and "evaluated" not in texts["prep"]
        assert "evaluated" in texts["eval"] and "prepared" not in texts["eval"]
