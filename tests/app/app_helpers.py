"""Helpers shared by the app tests (importable because conftest puts this folder on sys.path)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


async def wait_for(
    pilot: Any, predicate: Callable[[], bool], timeout: float = 10.0, what: str = ""
) -> None:
    """Let the app run until ``predicate()`` holds (fails the test after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.02)


async def wait_for_screen(pilot: Any, screen_type: type, timeout: float = 10.0) -> None:
    """Wait until the active screen is a mounted ``screen_type``.

    Being pushed is not enough: keys pressed or text read before the screen has mounted its
    widgets are lost, which made tests flaky on a busy machine.
    """
    app = pilot.app
    await wait_for(
        pilot,
        lambda: isinstance(app.screen, screen_type) and app.screen.is_mounted,
        timeout,
        what=f"{screen_type.__name__} to be shown",
    )
