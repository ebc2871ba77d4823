"""Transfer progress shared by the CLI and the app: bytes, percentage, rate, throttled.

A light module on purpose (no packaging or SSH imports): front ends create a meter for
every launch, whether or not anything is uploaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RateMeter:
    """A ``progress(done, total)`` callback that also knows the transfer rate.

    Pass the meter as ``progress``; read ``done``, ``total``, ``rate`` (bytes/s since the
    first call) or give ``on_update(done, total, rate)`` to be told. With ``min_interval``
    the updates are throttled to one per interval, plus the final one (``done >= total``),
    so a terminal or a slow SSH link is not flooded.
    """

    def __init__(
        self,
        on_update: Callable[[int, int, float], None] | None = None,
        *,
        min_interval: float = 0.0,
    ) -> None:
        self.on_update = on_update
        self.min_interval = min_interval
        self.done = 0
        self.total = 0
        self._start: float | None = None
        self._last_update = float("-inf")

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        self.done, self.total = done, total
        if self.on_update is None:
            return
        if done < total and now - self._last_update < self.min_interval:
            return
        self._last_update = now
        self.on_update(done, total, self.rate)

    @property
    def rate(self) -> float:
        if self._start is None:
            return 0.0
        elapsed = time.monotonic() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0


def describe_transfer(done: int, total: int, rate: float) -> str:
    """``"12.3/144.0 MB (9%, 30.1 MB/s)"``."""
    pct = 100.0 * done / total if total else 100.0
    return f"{done / 1e6:.1f}/{total / 1e6:.1f} MB ({pct:.0f}%, {rate / 1e6:.1f} MB/s)"
