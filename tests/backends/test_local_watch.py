"""backends.local.watch: file events for job dirs, kept from construction on."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from backends.local.watch import DirWatch, WatchUnavailable, names

TIMEOUT = 20.0


async def test_changes_made_before_waiting_are_not_lost(tmp_path: Path) -> None:
    with DirWatch([str(tmp_path)]) as watch:
        (tmp_path / "result.json").write_text("{}")  # after construction, before the wait
        changed = await asyncio.wait_for(watch.changed(60.0), TIMEOUT)
    assert "result.json" in names(changed)


async def test_a_change_wakes_a_wait_under_way(tmp_path: Path) -> None:
    with DirWatch([str(tmp_path)]) as watch:
        waiting = asyncio.create_task(watch.changed(60.0))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        (tmp_path / "pid.json").write_text("{}")
        changed = await asyncio.wait_for(waiting, TIMEOUT)
    assert "pid.json" in names(changed)


async def test_a_rename_into_place_names_the_target(tmp_path: Path) -> None:
    """The supervisor writes result.json as temp file + link/rename: the name must show."""
    tmp = tmp_path / ".result.json.1.tmp"
    tmp.write_text("{}")
    with DirWatch([str(tmp_path)]) as watch:
        tmp.rename(tmp_path / "result.json")
        seen: set[str] = set()
        while "result.json" not in seen:
            seen |= names(await asyncio.wait_for(watch.changed(60.0), TIMEOUT))


async def test_nothing_changed_is_an_empty_answer_at_the_timeout(tmp_path: Path) -> None:
    with DirWatch([str(tmp_path)]) as watch:
        assert await asyncio.wait_for(watch.changed(0.05), TIMEOUT) == set()


async def test_subfolders_are_not_watched(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    with DirWatch([str(tmp_path)]) as watch:
        (tmp_path / "logs" / "stdout.log").write_text("chatty output")
        assert await asyncio.wait_for(watch.changed(0.1), TIMEOUT) == set()


def test_a_missing_folder_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(WatchUnavailable):
        DirWatch([str(tmp_path / "gone")])


async def test_a_cancelled_wait_leaves_no_thread_behind(tmp_path: Path) -> None:
    with DirWatch([str(tmp_path)]) as watch:
        waiting = asyncio.create_task(watch.changed(60.0))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    deadline = time.monotonic() + TIMEOUT
    while any(t.name == "nrt-local-watch" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the watch thread outlived its cancelled wait"
        await asyncio.sleep(0.01)


async def test_one_wait_at_a_time(tmp_path: Path) -> None:
    with DirWatch([str(tmp_path)]) as watch:
        first = asyncio.create_task(watch.changed(0.2))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError):
            await watch.changed(0.2)
        await asyncio.wait_for(first, TIMEOUT)


def test_the_notifier_loads_without_the_watchfiles_package_and_is_shared() -> None:
    """In a fresh interpreter: no anyio/multiprocessing for a wait, one module for both."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from backends.local.watch import _rust_notify\n"
        "m = _rust_notify()\n"
        "print('anyio' in sys.modules, 'multiprocessing' in sys.modules)\n"
        "import watchfiles\n"
        "print(sys.modules['watchfiles._rust_notify'] is m, callable(watchfiles.watch))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    ).stdout.split()
    assert out == ["False", "False", "True", "True"]
