"""How the engine and backends reach a machine: run commands, move files, tail logs.

``LocalTransport`` (subprocess + filesystem) serves a Slurm login node; ``SSHTransport``
(asyncssh, in ``core.transport.ssh``) serves a laptop. Backends receive a :class:`Transport`
and never care which. Commands are argument lists, never shell strings: the SSH transport
quotes every element with :func:`shlex.quote` before it crosses the wire.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class TransportError(Exception):
    """The transport failed (connection refused, host key mismatch, …); message is for users."""


@dataclass(frozen=True)
class CommandResult:
    """Outcome of one command run through a transport."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Transport(abc.ABC):
    """Abstract transport. One instance per host per process (see ``transport_for``)."""

    #: Groups jobs polled together, e.g. ``"local"`` or ``"ssh://user@host:22"``.
    target: str = "local"

    @abc.abstractmethod
    async def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv``, collect its output; ``TransportError`` only for transport faults."""

    @abc.abstractmethod
    async def put(self, local: Path, remote: str) -> None:
        """Copy a local file to ``remote`` (parents created)."""

    @abc.abstractmethod
    async def get(self, remote: str, local: Path) -> None:
        """Copy a remote file to ``local``."""

    @abc.abstractmethod
    async def read(self, remote: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read bytes from ``offset``; a missing file raises ``FileNotFoundError``."""

    @abc.abstractmethod
    async def write(self, remote: str, data: bytes, mode: int = 0o600) -> None:
        """Write a file atomically (temp + rename), creating parent directories."""

    @abc.abstractmethod
    async def size(self, remote: str) -> int | None:
        """Size in bytes, or None when the file does not exist."""

    @abc.abstractmethod
    async def makedirs(self, remote: str, mode: int = 0o700) -> None:
        """Create a directory and its parents; fine if it exists."""

    @abc.abstractmethod
    def tail(
        self,
        remote: str,
        *,
        offset: int = 0,
        follow: bool = False,
        done: Callable[[], Awaitable[bool]] | None = None,
        interval: float = 0.25,
    ) -> AsyncIterator[bytes]:
        """Yield the file's bytes from ``offset``; with ``follow`` keep going until ``done()``.

        After ``done()`` turns true the remaining bytes are drained, so the caller receives the
        complete file. Over SSH a dropped connection resumes from the last delivered offset.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; safe to call twice."""
