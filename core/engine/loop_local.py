"""State that belongs to one event loop (asyncio locks, queues, live connections).

asyncio primitives and connections cannot be used from another loop. A process may run
several loops one after the other (tests, or the app replacing a dead engine loop), so a
shared object keeps such state per loop and starts afresh, lazily, when the loop changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoopLocal(Generic[T]):
    """A value made by ``factory`` for the running loop; a new loop gets a new value."""

    def __init__(self, factory: Callable[[asyncio.AbstractEventLoop], T]) -> None:
        self._factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._value: T | None = None

    def get(self) -> T:
        """The running loop's value (call from inside a coroutine)."""
        loop = asyncio.get_running_loop()
        if self._value is None or self._loop is not loop:
            self._value = self._factory(loop)
            self._loop = loop
        return self._value

    def current(self) -> T | None:
        """The value made last, whichever loop it belongs to (None if none yet)."""
        return self._value

    def owned_by_running_loop(self) -> bool:
        try:
            return self._loop is asyncio.get_running_loop()
        except RuntimeError:
            return False

    def clear(self) -> T | None:
        """Forget the value (returned, e.g. to close what it holds)."""
        value, self._value, self._loop = self._value, None, None
        return value
