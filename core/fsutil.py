"""Small filesystem helpers the store relies on for "nothing lost".

Every write goes through :func:`atomic_write` (temp file in the same directory, fsync,
rename, fsync of the directory), so a reader sees either the old or the new file, never a
torn one, even when the writer is SIGKILLed mid-write.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents, each readable only by the user.

    ``Path.mkdir(parents=True)`` gives intermediate directories the umask's mode, so each
    missing level is created explicitly.
    """
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue
        os.chmod(directory, PRIVATE_DIR)  # mkdir's mode is masked by the umask
    return path


def fsync_dir(directory: Path) -> None:
    """Make a rename or creation inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes | str, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically; the file is private (0600)."""
    if isinstance(data, str):
        data = data.encode()
    # pid + thread id + random: unique across processes and threads writing the same file.
    tmp = path.with_name(
        f".{path.name}.{os.getpid()}.{threading.get_ident()}.{os.urandom(3).hex()}.tmp"
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # a failed write leaves no stray temp file
        raise
    if durable:
        fsync_dir(path.parent)


def append_line(path: Path, line: str) -> None:
    """Append one line with a single ``write`` on an O_APPEND fd (whole lines or nothing)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock held for the ``with`` block; released if the process dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class UnreadableFile(OSError):
    """A path that exists but is not a regular file of bounded size; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_regular(path: Path | str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, never blocking or following.

    Store files are read back from disk where anything may be: a FIFO (a plain ``open``
    blocks until a writer comes), a symlink to ``/dev/zero`` (a read never ends), a
    directory, a 1 GB file. ``O_NONBLOCK|O_NOFOLLOW`` and an ``fstat`` before reading turn
    each into :class:`UnreadableFile`; ``FileNotFoundError`` passes through.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnreadableFile("is a symlink, not a file") from None
        if isinstance(exc, FileNotFoundError):
            raise
        raise UnreadableFile(f"cannot be opened ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise UnreadableFile(f"is {kind}")
        if st.st_size > limit:
            raise UnreadableFile(f"is too large ({st.st_size} bytes; at most {limit})")
        chunks = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise UnreadableFile(f"is too large (more than {limit} bytes)")
        return data
    except UnreadableFile:
        raise
    except OSError as exc:
        raise UnreadableFile(f"cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)


def chmod_if_needed(path: Path, mode: int) -> None:
    """Set ``path``'s mode only when it differs: a read-only store is never written to."""
    if stat.S_IMODE(os.stat(path).st_mode) != mode:
        os.chmod(path, mode)
