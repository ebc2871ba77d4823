"""The process's engine loop: one loop for many calls, and never a silent freeze."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from core.engine.loop_thread import LoopThread, LoopThreadError


def test_every_call_runs_on_the_same_loop_and_thread() -> None:
    lt = LoopThread(name="test-loop")

    async def where() -> tuple[int, int]:
        return id(asyncio.get_running_loop()), threading.get_ident()

    try:
        assert lt.run_sync(where()) == lt.run_sync(where())
        assert lt.run_sync(where())[1] != threading.get_ident()
    finally:
        lt.stop()


def test_system_exit_inside_a_call_is_an_error_and_the_loop_goes_on() -> None:
    lt = LoopThread(name="test-loop")

    async def exits() -> None:
        raise SystemExit(3)

    async def fine() -> str:
        return "still here"

    try:
        with pytest.raises(LoopThreadError, match="SystemExit"):
            lt.run_sync(exits())
        assert lt.run_sync(fine()) == "still here"
        assert lt.restarts == 0 and lt.died is None
    finally:
        lt.stop()


def test_a_dead_loop_fails_waiting_calls_and_the_next_call_starts_a_fresh_one() -> None:
    lt = LoopThread(name="test-loop")
    restarted = threading.Event()
    lt.on_restart.append(restarted.set)

    async def forever() -> None:
        await asyncio.sleep(3600)

    try:
        waiting = lt.submit(forever())

        def die() -> None:
            raise SystemExit("killed from a callback")

        lt.loop.call_soon_threadsafe(die)
        with pytest.raises(LoopThreadError, match="engine thread ended"):
            waiting.result(timeout=5)
        deadline = time.monotonic() + 5
        while lt.alive and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not lt.alive
        assert lt.died is not None and "killed from a callback" in lt.died

        async def fine() -> int:
            return 42

        assert lt.run_sync(fine()) == 42
        assert lt.restarts == 1
        assert restarted.wait(5)
    finally:
        lt.stop()


def test_a_clean_stop_then_use_is_not_a_death() -> None:
    lt = LoopThread(name="test-loop")

    async def fine() -> int:
        return 1

    lt.run_sync(fine())
    lt.stop()
    assert lt.run_sync(fine()) == 1
    assert lt.restarts == 0 and lt.died is None
    lt.stop()
