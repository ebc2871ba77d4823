"""The transport of a Slurm login node: subprocesses and the local filesystem.

Its tails, like the SSH transport's and the local backend's logs, go through
:func:`core.transport.follow.follow_file`, the one resumable follow loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

from core.fsutil import atomic_write, makedirs_exact
from core.transport import CommandResult, Transport, TransportError
from core.transport.follow import MAX_FOLLOW_INTERVAL as MAX_FOLLOW_INTERVAL
from core.transport.follow import follow_file

#: Largest chunk one read returns; big enough for fast catch-up, small enough for the UI.
CHUNK_SIZE = 256 * 1024


def _read_at(path: str, pos: int, length: int) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            fh.seek(pos)
            return fh.read(length)
    except FileNotFoundError:
        return None


class LocalTransport(Transport):
    """Commands as subprocesses (no shell), files through the local filesystem."""

    target = "local"

    async def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv`` in its own session so a timeout can kill the whole process group."""
        args = tuple(str(a) for a in argv)
        full_env = {**os.environ, **env} if env else None
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=full_env,
                start_new_session=True,
            )
        except FileNotFoundError:
            # Same as a shell would say; a missing sbatch is the user's problem, not a fault.
            return CommandResult(args, 127, b"", f"{args[0]}: command not found\n".encode())
        except OSError as exc:
            raise TransportError(f"cannot run {args[0]}: {exc}") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(input), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise TransportError(f"{args[0]} timed out after {timeout:g} s") from None
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        return CommandResult(args, proc.returncode or 0, out, err)

    async def put(self, local: Path, remote: str) -> None:
        """Copy a file (parents created); copying a file onto itself is a no-op."""

        def _copy() -> None:
            src, dst = Path(local), Path(remote)
            if dst.exists() and os.path.samefile(src, dst):
                return
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)

        await asyncio.to_thread(_copy)

    async def get(self, remote: str, local: Path) -> None:
        """Copy a file to ``local`` (parents created)."""

        def _copy() -> None:
            dst = Path(local)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(remote, dst)

        await asyncio.to_thread(_copy)

    async def read(self, remote: str, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes from ``offset``; ``FileNotFoundError`` when the file is missing."""
        data = await asyncio.to_thread(_read_at, remote, offset, -1 if length is None else length)
        if data is None:
            raise FileNotFoundError(remote)
        return data

    async def write(self, remote: str, data: bytes, mode: int = 0o600) -> None:
        """Atomic write: temp file, fsync, rename."""
        await asyncio.to_thread(_write_file, remote, data, mode)

    async def size(self, remote: str) -> int | None:
        """Size in bytes or None."""
        try:
            return (await asyncio.to_thread(os.stat, remote)).st_size
        except FileNotFoundError:
            return None

    async def makedirs(self, remote: str, mode: int = 0o700) -> None:
        """``mkdir -p``; every directory it creates gets exactly ``mode`` (not the umask's)."""
        await asyncio.to_thread(makedirs_exact, remote, mode)

    def tail(
        self,
        remote: str,
        *,
        offset: int = 0,
        follow: bool = False,
        done: Callable[[], Awaitable[bool]] | None = None,
        interval: float = 0.25,
    ) -> AsyncIterator[bytes]:
        """Offset reads of the local file (see :func:`follow_file`)."""

        async def read_at(pos: int) -> bytes | None:
            return await asyncio.to_thread(_read_at, remote, pos, CHUNK_SIZE)

        return follow_file(read_at, offset=offset, follow=follow, done=done, interval=interval)


_LOCAL: LocalTransport | None = None


def local_transport() -> LocalTransport:
    """The process-wide local transport (it holds no state, one is enough)."""
    global _LOCAL
    if _LOCAL is None:
        _LOCAL = LocalTransport()
    return _LOCAL


def _write_file(path: str, data: bytes, mode: int) -> None:
    """The transport's ``write``: parents created private, the file replaced atomically."""
    makedirs_exact(os.path.dirname(os.path.abspath(path)))
    atomic_write(path, data, mode=mode, durable=True)
