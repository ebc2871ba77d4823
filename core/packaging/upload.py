"""Move archives to a target and unpack them there, by content address.

The remote cache holds ``<remote_cache_dir>/<sha256>.tar.gz``. Before sending, we ask the
target whether that file exists and hashes to its name (``sha256sum`` run remotely, so no
bytes come back); if so nothing is sent: relaunching unchanged code uploads 0 bytes. A file
that exists but does not verify (a killed upload from an older tool, disk trouble, someone
editing it) is replaced. Uploads go to a unique temp name, are verified, then renamed into
place, so a reader never sees a partial archive under the final name, and two launches
uploading the same archive at once both end with a good file.

Paths are the transport's: over SSH a relative path is relative to the login directory.
``~`` is *not* expanded (commands are argv lists, never shell strings).
"""

from __future__ import annotations

import contextlib
import inspect
import posixpath
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.packaging.base import PackagingError
from core.progress import RateMeter as RateMeter  # re-exported
from core.transport import Transport

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

UploadProgress = Callable[[int, int], None]


class ArchiveIntegrityError(PackagingError):
    """An archive on the target does not hash to the sha256 it should have."""


@dataclass(frozen=True)
class UploadResult:
    """Outcome of :func:`upload_archive`.

    ``skipped``: the target already held a verified copy (``bytes_sent == 0``).
    ``replaced_corrupt``: a copy existed but failed verification and was re-sent.
    """

    remote_path: str
    bytes_sent: int
    skipped: bool
    replaced_corrupt: bool = False
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Average bytes per second of the transfer (0 when nothing was sent)."""
        return self.bytes_sent / self.seconds if self.seconds > 0 and self.bytes_sent else 0.0


def remote_archive_path(remote_cache_dir: str, sha256: str) -> str:
    """Where the archive with this sha256 lives in a remote cache."""
    return posixpath.join(remote_cache_dir, f"{_check_sha(sha256)}.tar.gz")


def _check_sha(sha256: str) -> str:
    if not _SHA256.match(sha256 or ""):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


async def remote_sha256(transport: Transport, path: str) -> str | None:
    """sha256 of a file on the target (computed there), or None when it does not exist.

    Uses ``sha256sum`` (GNU coreutils, every Linux cluster) and falls back to
    ``shasum -a 256`` (macOS/BSD).
    """
    for argv in (["sha256sum", "--", path], ["shasum", "-a", "256", "--", path]):
        result = await transport.run(argv)
        if result.ok:
            digest = result.stdout.split(maxsplit=1)[0].decode("ascii", "replace").lower()
            if _SHA256.match(digest):
                return digest
        if result.returncode != 127:
            # The tool exists but failed: most often the file is missing (one round trip in
            # the common case; only a failure costs a second one to tell which).
            if await transport.size(path) is None:
                return None
            raise PackagingError(
                f"cannot hash {path} on {transport.target}: "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
    raise PackagingError(f"neither sha256sum nor shasum is available on {transport.target}")


def _put_accepts_progress(transport: Transport) -> bool:
    try:
        return "progress" in inspect.signature(transport.put).parameters
    except (TypeError, ValueError):
        return False


async def upload_archive(
    transport: Transport,
    archive: Path,
    sha256: str,
    remote_cache_dir: str,
    progress: UploadProgress | None = None,
) -> UploadResult:
    """Make sure ``<remote_cache_dir>/<sha256>.tar.gz`` on the target holds ``archive``.

    Sends nothing when a verified copy is already there. ``progress(bytes_done, total)``
    gets per-chunk updates when the transport's ``put`` accepts a ``progress`` keyword,
    otherwise a start and an end update. The uploaded copy is verified by hash before it is
    renamed into place; a mismatch raises :class:`ArchiveIntegrityError` (the local archive
    is not what ``sha256`` says, or the transfer corrupted it).
    """
    _check_sha(sha256)
    archive = Path(archive)
    total = archive.stat().st_size
    final = remote_archive_path(remote_cache_dir, sha256)
    started = time.monotonic()

    existing_size = await transport.size(final)
    # A copy of the wrong size is corrupt without hashing it.
    if existing_size == total and await remote_sha256(transport, final) == sha256:
        if progress is not None:
            progress(0, 0)
        return UploadResult(final, 0, True, False, time.monotonic() - started)
    replaced = existing_size is not None

    await transport.makedirs(remote_cache_dir)
    tmp = f"{final}.part-{uuid.uuid4().hex[:12]}"
    try:
        if progress is not None:
            progress(0, total)
        if progress is not None and _put_accepts_progress(transport):
            # Transport.put declares no progress=; this one's put was just seen to take it.
            await transport.put(archive, tmp, progress=progress)  # type: ignore[call-arg]
        else:
            await transport.put(archive, tmp)
        if progress is not None:
            progress(total, total)
        sent = await remote_sha256(transport, tmp)
        if sent != sha256:
            raise ArchiveIntegrityError(
                f"uploaded {archive.name} to {transport.target} but it hashes to {sent}, not "
                f"{sha256}; the local archive may be damaged (repackage) or the transfer failed"
            )
        moved = await transport.run(["mv", "-f", "--", tmp, final])
        if not moved.ok:
            raise PackagingError(
                f"cannot move {tmp} to {final} on {transport.target}: "
                f"{moved.stderr.decode(errors='replace').strip()}"
            )
    except BaseException:
        with contextlib.suppress(Exception):
            await transport.run(["rm", "-f", "--", tmp])
        raise
    return UploadResult(final, total, False, replaced, time.monotonic() - started)


async def extract_archive(
    transport: Transport,
    remote_archive: str,
    dest_dir: str,
    sha256: str,
    *,
    local_archive: Path,
) -> None:
    """Check the archive, verify the target's copy hashes to ``sha256``, unpack it there.

    ``local_archive`` is this machine's copy (the package cache's ``<sha256>.tar.gz``):
    it is checked by :func:`core.packaging.extract.check_archive`, the same rules the local
    backend extracts by, and the target's copy must hash to the same sha256, so the target's
    ``tar`` unpacks exactly the bytes that passed. The command is
    :func:`~core.packaging.extract.tar_extract_argv`: the same mtime/mode/owner policy as
    the local extractor (extraction-time mtimes, like ``tar -m``).
    """
    import asyncio

    from core.packaging.extract import (
        ArchiveHashError,
        UnsafeArchiveError,
        check_archive,
        tar_extract_argv,
    )

    _check_sha(sha256)
    try:
        await asyncio.to_thread(check_archive, Path(local_archive), sha256)
    except UnsafeArchiveError as exc:
        raise PackagingError(f"refusing to extract {local_archive}: {exc}") from None
    except ArchiveHashError as exc:
        raise ArchiveIntegrityError(str(exc)) from None
    except OSError as exc:
        raise PackagingError(f"cannot read {local_archive}: {exc}") from None
    actual = await remote_sha256(transport, remote_archive)
    if actual is None:
        raise PackagingError(f"{remote_archive} does not exist on {transport.target}")
    if actual != sha256:
        raise ArchiveIntegrityError(
            f"{remote_archive} on {transport.target} hashes to {actual}, expected {sha256}; "
            f"refusing to extract it (upload it again)"
        )
    await transport.makedirs(dest_dir)
    result = await transport.run(tar_extract_argv(remote_archive, dest_dir))
    if not result.ok:
        raise PackagingError(
            f"extracting {remote_archive} into {dest_dir} on {transport.target} failed: "
            f"{result.stderr.decode(errors='replace').strip()}"
        )
