"""Copy one artifact to this machine, resumably, and prove it arrived whole.

Bytes go to ``<dest>.part`` in chunks read at an offset, so an interrupted fetch (a dropped
link that did not come back in time, ctrl+c, a closed laptop) resumes from the partial
file's size. Over SSH the transport already reconnects and re-asks from the same offset; a
fetch that still fails leaves the partial file for the next try. At the end the sha256 of the
whole local file is compared with the source's (``sha256sum`` on the remote side, or a local
hash), and only a match is renamed to ``dest``: a mismatch deletes the partial file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.results.artifacts import file_sha256, hash_files
from core.results.locate import JobOutputs
from core.transport import TransportError

CHUNK = 1 << 20


class FetchError(Exception):
    """The artifact could not be fetched (the message says why and what is left)."""


@dataclass
class FetchResult:
    source: str
    dest: Path
    size: int
    sha256: str
    resumed_from: int


def source_path(outputs: JobOutputs, path: str, *, allow_outside: bool = False) -> str:
    """The artifact's path on the job's side; outside the job dir only when allowed (a
    declared absolute glob that the recorded listing holds)."""
    root = posixpath.normpath(outputs.job_dir)
    full = posixpath.normpath(path if posixpath.isabs(path) else posixpath.join(root, path))
    if not allow_outside and not full.startswith(root + "/"):
        raise FetchError(f"{path} is outside the job dir {root}")
    return full


async def fetch(
    outputs: JobOutputs,
    source: str,
    dest: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = CHUNK,
    expected_sha256: str | None = None,
) -> FetchResult:
    """Fetch ``source`` (a full path on the job's side) into ``dest``."""
    transport = outputs.transport
    total = await transport.size(source)
    if total is None:
        raise FileNotFoundError(f"{source} not found on {transport.target}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    if offset > total:  # the source was replaced by a smaller file: start again
        part.unlink()
        offset = 0
    resumed_from = offset
    digest = hashlib.sha256()
    if offset:
        await asyncio.to_thread(file_sha256, str(part), into=digest)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        if progress:
            progress(offset, total)
        while offset < total:
            data = await transport.read(source, offset, min(chunk, total - offset))
            if not data:
                raise FetchError(
                    f"{source} ended at {offset} of {total} bytes (it shrank while fetched); "
                    f"the partial file {part} is kept"
                )
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            digest.update(data)
            offset += len(data)
            if progress:
                progress(offset, total)
        os.fsync(fd)
    finally:
        os.close(fd)
    local_sha = digest.hexdigest()
    remote_sha = expected_sha256
    if remote_sha is None:
        try:
            remote_sha = (await hash_files(transport, [source])).get(source)
        except TransportError as exc:
            raise FetchError(f"cannot hash {source} to verify it: {exc}") from exc
    if remote_sha is None:
        raise FetchError(f"cannot hash {source} on {transport.target} to verify the copy")
    if remote_sha != local_sha:
        part.unlink()
        raise FetchError(
            f"{source}: sha256 mismatch (source {remote_sha[:12]}, copy {local_sha[:12]}); "
            "the partial copy was removed, fetch again"
        )
    os.replace(part, dest)
    return FetchResult(source, dest, total, local_sha, resumed_from)
