"""Test support for core.results: a transport proxy that counts what crosses it.

The proxy sits between a reader and the real transport (local, or SSH to the CI sshd), so
"bytes read per refresh" is measured where the bytes cross, not taken from the reader's own
bookkeeping. Used by tests/core/results and bench/bench_results.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.transport import CommandResult, Transport


class Counting(Transport):
    """Delegates everything; counts bytes returned by ``read`` and calls of each kind."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.target = inner.target
        self.bytes_read = 0
        self.reads = 0
        self.sizes = 0
        self.commands: list[list[str]] = []

    async def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
    ) -> CommandResult:
        self.commands.append(list(argv))
        return await self.inner.run(argv, input=input, timeout=timeout, env=env)

    async def put(self, local: Path, remote: str) -> None:
        await self.inner.put(local, remote)

    async def get(self, remote: str, local: Path) -> None:
        await self.inner.get(remote, local)

    async def read(self, remote: str, offset: int = 0, length: int | None = None) -> bytes:
        data = await self.inner.read(remote, offset, length)
        self.reads += 1
        self.bytes_read += len(data)
        return data

    async def write(self, remote: str, data: bytes, mode: int = 0o600) -> None:
        await self.inner.write(remote, data, mode)

    async def size(self, remote: str) -> int | None:
        self.sizes += 1
        return await self.inner.size(remote)

    async def makedirs(self, remote: str, mode: int = 0o700) -> None:
        await self.inner.makedirs(remote, mode)

    def tail(
        self,
        remote: str,
        *,
        offset: int = 0,
        follow: bool = False,
        done: Callable[[], Awaitable[bool]] | None = None,
        interval: float = 0.25,
    ) -> AsyncIterator[bytes]:
        return self.inner.tail(remote, offset=offset, follow=follow, done=done, interval=interval)


@dataclass
class PrivateSSHD:
    """A second sshd with the CI's keys on a free port: a test may kill its connections
    without touching the shared sshd that other tests (and other people) are using."""

    alias: str
    ssh_config: Path
    pid: int

    def connection_pids(self) -> list[int]:
        kids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.pid:
                kids.append(int(entry))
        return kids

    def kill_connections(self) -> int:
        killed = 0
        for pid in self.connection_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        return killed
