"""The Logs pane in the app: follow, pause with a count of new lines, resume, search,
filter, copy, stdout/stderr, and logs that come through a backend's stream (spooled)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from app_helpers import wait_for

from core.engine.protocol import Handle
from core.engine.states import JobState
from core.store import ExperimentRecord, JobRecord, Store

SIZE = (120, 30)
TRAIN = "train-20250601-090000-a1b2"


def _log_path(home: Path, exp_id: str = TRAIN, job: str = "train") -> Path:
    return Store(home).job_dir(exp_id, job) / "logs" / "stdout.log"


async def _open(pilot: Any, exp_id: str = TRAIN) -> Any:
    app = pilot.app
    await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
    app.runs_table.move_cursor_to(exp_id)
    await pilot.press("l")
    await wait_for(pilot, lambda: app.panes_ready.is_set() and app.logs_pane.view is not None)
    view = app.logs_pane.view
    await wait_for(pilot, lambda: view.window.line_count > 0, what="lines")
    return view


def _status(app: Any) -> str:
    return str(app.logs_pane.query_one("#log-status").content)


async def test_scrolling_up_pauses_counts_new_lines_and_end_resumes(
    demo_app: Any, demo_home: Path
) -> None:
    with _log_path(demo_home).open("a") as log:
        log.write("".join(f"more output {i}\n" for i in range(100)))  # more than a screen
    app = demo_app
    async with app.run_test(size=SIZE) as pilot:
        view = await _open(pilot)
        assert view.follow and "ENDED" in _status(app)  # the demo run has finished
        await pilot.press("up")
        assert not view.follow
        with _log_path(demo_home).open("a") as log:
            log.write("".join(f"late line {i}\n" for i in range(7)))
        await wait_for(pilot, lambda: view.new_lines == 7, what="new lines counted")
        await wait_for(pilot, lambda: "PAUSED +7 new" in _status(app), what="status")
        assert "late line 6" not in view.visible_text()
        await pilot.press("end")
        await wait_for(pilot, lambda: "late line 6" in view.visible_text(), what="resumed")
        assert "ENDED" in _status(app) and "PAUSED" not in _status(app)


async def test_search_highlights_and_filter_keeps_only_matching_lines(demo_app: Any) -> None:
    app = demo_app
    async with app.run_test(size=SIZE) as pilot:
        view = await _open(pilot)
        await pilot.press("slash", *"final", "enter")
        await wait_for(pilot, lambda: view.current_match == 11, what="match found")
        assert view.highlight is not None and view.highlight.pattern == "final"
        await pilot.press("f", *"step +1[02]0/", "enter")  # plain text: no match
        await wait_for(pilot, lambda: view.window.filtering and not view.window.filter_busy)
        assert view.window.rows == []
        await pilot.press("x")  # regex on: now it matches steps 100 and 120
        await wait_for(pilot, lambda: view.window.filter_matches == 2, what="regex filter")
        shown = view.visible_text().splitlines()
        assert any("100/200" in line for line in shown)
        assert any("120/200" in line for line in shown)
        assert len(shown) == 6  # lines 6 and 7 with 2 lines of context each, merged
        await pilot.press("f", "ctrl+u", "enter")  # empty: filter off
        await wait_for(pilot, lambda: not view.window.filtering, what="filter off")
        assert view.window.total_rows == 12


async def test_copy_puts_the_visible_lines_on_the_clipboard(demo_app: Any) -> None:
    app = demo_app
    async with app.run_test(size=SIZE) as pilot:
        view = await _open(pilot)
        await pilot.press("y")
        assert app.clipboard == view.visible_text()
        assert "[train] done" in app.clipboard


async def test_stderr_switch_shows_the_other_stream(demo_app: Any) -> None:
    app = demo_app
    async with app.run_test(size=SIZE) as pilot:
        # A failed run's logs open where its error is (its traceback is in stderr).
        view = await _open(pilot, "fail-20250601-100000-e5f6")
        assert app.logs_pane.current_key.stream == "stderr"
        assert "loss became NaN" in view.visible_text()
        await pilot.press("s")
        await wait_for(
            pilot,
            lambda: (
                app.logs_pane.current_key is not None
                and app.logs_pane.current_key.stream == "stdout"
            ),
        )
        stdout = app.logs_pane.view
        await wait_for(pilot, lambda: "step     2/10" in stdout.visible_text(), what="stdout")
        assert len(app.logs_pane._keys) == 1  # replaced in the same tab


# -- a backend whose logs come through its stream (like Slurm over SSH) -------------------
@dataclass
class StreamingBackend:
    """Logs come only from ``logs()``; the app must spool them, resuming from an offset."""

    name: ClassVar[str] = "streamy"
    offsets: ClassVar[list[int]] = []

    @classmethod
    def from_profile(cls, profile: Any) -> StreamingBackend:
        return cls()

    async def poll(self, handles: Any) -> dict[Any, Any]:
        return {}

    endless: ClassVar[bool] = False  # follow a job that never ends
    stopped: ClassVar[int] = 0  # streams closed before their end

    async def logs(
        self, handle: Handle, *, offset: int = 0, follow: bool = False, stream: str = "stdout"
    ) -> AsyncIterator[bytes]:
        type(self).offsets.append(offset)
        data = b"".join(f"remote line {i}\n".encode() for i in range(50))
        for start in range(offset, len(data), 100):
            yield data[start : start + 100]
        if type(self).endless:
            try:
                await asyncio.sleep(3600)
            finally:
                type(self).stopped += 1

    async def close(self) -> None:
        return None


@pytest.fixture
def streaming_backend() -> Iterator[type[StreamingBackend]]:
    from core.engine import executors, registry
    from core.engine.executors import ExecutorProfile

    @dataclass
    class StreamyExecutor(ExecutorProfile):
        backend: ClassVar[str] = "streamy"

    executors.register_profile(StreamyExecutor)
    registry.register_backend("streamy", StreamingBackend)
    StreamingBackend.offsets = []
    StreamingBackend.endless = False
    StreamingBackend.stopped = 0
    yield StreamingBackend
    registry._extra.pop("streamy", None)
    for key in [k for k in registry._instances if k[0] == "streamy"]:
        del registry._instances[key]
    executors._PROFILE_TYPES.pop("streamy", None)


def _remote_store(home: Path) -> Store:
    from core.engine.executors import profile_types

    store = Store(home)
    executor = profile_types()["streamy"](profile_name="remote")
    store.create(
        ExperimentRecord(
            id="remote-1",
            title="remote",
            created_at=time.time(),
            jobs=[
                JobRecord(
                    name="train",
                    kind="script",
                    backend="streamy",
                    handle=Handle("streamy", "far-away", "77"),
                    state=JobState.SUCCEEDED,
                )
            ],
        ),
        {"train": {"executor.json": json.dumps(executor.to_dict())}},
    )
    return store


async def test_remote_logs_are_streamed_into_the_same_pane(
    make_app: Callable[..., Any], tmp_path: Path, streaming_backend: type[StreamingBackend]
) -> None:
    home = tmp_path / "store"
    store = _remote_store(home)
    app = make_app(home, monitor=False, listing_seconds=3600)
    async with app.run_test(size=SIZE) as pilot:
        view = await _open(pilot, "remote-1")
        await wait_for(pilot, lambda: view.window.line_count == 50, what="all remote lines")
        assert "remote line 49" in view.visible_text()
    spool = store.job_dir("remote-1", "train") / "logs" / ".fetched-stdout.log"
    assert spool.read_bytes().count(b"\n") == 50
    assert streaming_backend.offsets == [0]


async def test_closing_a_tab_stops_its_remote_copy_and_reopening_resumes(
    make_app: Callable[..., Any], tmp_path: Path, streaming_backend: type[StreamingBackend]
) -> None:
    """A followed remote log of a live job is copied until its tab closes, not forever."""
    streaming_backend.endless = True
    home = tmp_path / "store"
    _remote_store(home)
    app = make_app(home, monitor=False, listing_seconds=3600)
    async with app.run_test(size=SIZE) as pilot:
        view = await _open(pilot, "remote-1")
        await wait_for(pilot, lambda: view.window.line_count == 50, what="all remote lines")
        assert streaming_backend.stopped == 0
        await pilot.press("d")  # close the tab
        await wait_for(pilot, lambda: streaming_backend.stopped == 1, what="the copy to stop")
        await pilot.press("1")
        view = await _open(pilot, "remote-1")
        assert streaming_backend.offsets[-1] == len(
            b"".join(f"remote line {i}\n".encode() for i in range(50))
        ), "the copy resumes where it stopped"
        assert view.window.line_count == 50


async def test_wrap_toggle_wraps_long_lines(demo_app: Any, demo_home: Path) -> None:
    with _log_path(demo_home).open("a") as log:
        log.write("W" * 300 + "\n")
    app = demo_app
    async with app.run_test(size=SIZE) as pilot:
        view = await _open(pilot)
        await wait_for(pilot, lambda: "WWW" in view.visible_text(), what="long line")
        before = [s.text for s in view._get_frame()]
        assert sum("W" in line for line in before) == 1  # cut at the edge
        await pilot.press("w")
        await pilot.pause(0.05)
        after = [s.text for s in view._get_frame()]
        assert sum("W" in line for line in after) == 3  # 300 chars over ~115 columns
        assert "wrap" in _status(app)


async def test_log_redraw_cap_comes_from_config(make_app: Any, tmp_path: Path) -> None:
    from core.settings import Settings, UISettings

    settings = Settings(ui=UISettings(bell=False, log_redraws_per_second=3.0))
    app = make_app(tmp_path / "store", settings=settings, poll_seconds=5, listing_seconds=5)
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.log_max_rate == 3.0
        await pilot.press("3")  # the Logs pane is built after the first frame
        await wait_for(pilot, lambda: bool(app.query("#logs")), what="logs pane")
        assert app.logs_pane.max_rate == 3.0
