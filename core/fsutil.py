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
    """Create ``path`` and any missing parents, each readable only by the user (0700)."""
    makedirs_exact(path, PRIVATE_DIR)
    return path


def makedirs_exact(path: str | os.PathLike[str], mode: int = PRIVATE_DIR) -> None:
    """``mkdir -p`` where every directory *created* gets exactly ``mode``, whatever the umask.

    ``os.makedirs(path, mode)`` gives the intermediate levels the umask's default (0777
    under ``umask 000``: world-writable parents of a private job directory). Levels that
    already existed are left alone: they belong to the user (a shared ``/scratch/group``
    may be group-writable on purpose).
    """
    missing = []
    probe = os.path.abspath(os.fspath(path))
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            continue  # created concurrently by someone else: not ours to chmod
        os.chmod(directory, mode)  # mkdir's mode is masked by the umask


def tighten_private_dir(path: Path) -> Path:
    """:func:`ensure_private_dir`, and drop group/other bits if the directory has them.

    For directories the app owns by name (the package cache), which must stay private even
    when an older version or a permissive umask created them wider. Errors (a read-only
    store, someone else's directory) are left to the first real write to report.
    """
    ensure_private_dir(path)
    with contextlib.suppress(OSError):
        st = os.stat(path)
        if st.st_mode & 0o077 and st.st_uid == os.getuid():
            os.chmod(path, PRIVATE_DIR)
    return path


def fsync_dir(directory: Path) -> None:
    """Make a rename or creation inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path | str, data: bytes | str, *, durable: bool = True, mode: int = PRIVATE_FILE
) -> None:
    """Replace ``path`` with ``data`` atomically: readers see the old or the new file, never
    a torn one, and a failed write leaves no temp file behind. ``mode`` is exact (not masked
    by the umask); ``durable`` fsyncs the file and its directory (the store's records)."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    # pid + thread id + random: unique across processes and threads writing the same file.
    tmp = path.with_name(
        f".{path.name}.{os.getpid()}.{threading.get_ident()}.{os.urandom(3).hex()}.tmp"
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        try:
            if mode != PRIVATE_FILE:
                os.fchmod(fd, mode)
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
