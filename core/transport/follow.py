"""The one follow-a-file loop: local logs, Slurm logs on a login node and over SSH.

The loop only ever asks "give me the bytes at ``offset``", so resuming after any fault (a
dropped SSH connection, a restarted app) is a matter of asking again from the last delivered
offset: no line can be lost or repeated.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

#: A followed file that shows no new bytes is polled less and less often, up to this.
MAX_FOLLOW_INTERVAL = 2.0

ReadAt = Callable[[int], Awaitable[bytes | None]]


async def follow_file(
    read_at: ReadAt,
    *,
    offset: int = 0,
    follow: bool = False,
    done: Callable[[], Awaitable[bool]] | None = None,
    interval: float = 0.25,
    max_interval: float = MAX_FOLLOW_INTERVAL,
    wait: Callable[[float], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    """Yield a file's bytes from ``offset`` using ``read_at(pos)`` (None = file missing).

    Without ``follow`` a missing file raises ``FileNotFoundError``. With ``follow`` a missing
    file is waited for (a pending job has no log yet). ``done()`` is checked only after a read
    came back empty and, once true, the file is drained, so bytes written between that empty
    read and ``done()`` turning true are still delivered. ``wait(seconds)`` replaces the sleep
    between empty reads (e.g. woken early by file events); it may return at any time.
    """
    pos = offset
    delay = interval
    burst = 0
    while True:
        chunk = await read_at(pos)
        if chunk is None and not follow:
            raise FileNotFoundError(pos)
        if chunk:
            pos += len(chunk)
            delay = interval
            yield chunk
            burst += 1
            if burst % 16 == 0:
                await asyncio.sleep(0)  # a fast writer must not starve the loop
            continue
        burst = 0
        if not follow:
            return
        if done is not None and await done():
            while True:
                chunk = await read_at(pos)
                if not chunk:
                    return
                pos += len(chunk)
                yield chunk
        await (wait(delay) if wait is not None else asyncio.sleep(delay))
        delay = min(delay * 1.5, max(max_interval, interval))
