"""Deterministic ``.tar.gz`` writer: the same tree always gives the same bytes.

Why: the archive's sha256 is the identity of "the code that ran". It names the archive in
the remote cache (so an unchanged tree is never uploaded twice) and it is what the store
records. That only works if nothing incidental leaks into the bytes, so every entry is
normalised:

* entries are written in sorted order of their archive path (parents before children);
* ``mtime`` is the fixed :data:`ARCHIVE_MTIME` (1980-01-02T00:00:00Z) for every entry. It is
  deliberately *not* the commit time: two commits with the same tree then share one archive
  (and one upload). It is not 0 because zip-based tools (wheel builds from the extracted
  tree) reject timestamps before 1980. Both extractors (:mod:`core.packaging.extract`)
  give extracted files the extraction time anyway;
* the archive file is 0600 in a 0700 cache (it is the user's code), whatever the umask;
* uid/gid are 0, uname/gname are empty, modes are 0644 or 0755 (only the exec bit of the
  source survives, the way git tracks it), directories are 0755;
* gzip is written with ``mtime=0``, no file name and a fixed level (:data:`GZIP_LEVEL`), as
  one member per 1 MiB of tar stream compressed on every core (see :mod:`.pgzip`).

The sha256 of the compressed bytes depends on the zlib build, so :class:`ArchiveInfo` also
carries ``content_sha256``, the digest of the uncompressed tar stream, which stays stable
across machines. Data is streamed (one chunk at a time); an archive of any size is never
held in memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import stat
import tarfile
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from core.fsutil import atomic_write, makedirs_exact
from core.packaging.pgzip import ByteSink, ParallelGzipWriter

#: Fixed modification time of every entry (1980-01-02T00:00:00Z); see the module docstring.
ARCHIVE_MTIME = 315_619_200
#: gzip level: the same as ``tar -czf``/``gzip`` defaults. Part of the format (changing it
#: changes every archive's sha256).
GZIP_LEVEL = 6
#: Read/write chunk size while streaming file contents into the archive.
CHUNK = 1 << 20
#: Bumped whenever the byte layout changes; part of the reuse key. 2: multi-member gzip.
FORMAT_VERSION = 2
#: Folder (inside ``dest_dir``) remembering which entry lists produced which archive.
INDEX_DIR = ".index"

#: ``progress(bytes_done, bytes_total)``; called from whichever thread does the packaging.
ProgressFn = Callable[[int, int], None]
#: Opens an entry's contents: a context manager giving ``(stream, exact_size)``.
Opener = Callable[[], contextlib.AbstractContextManager[tuple[BinaryIO, int]]]


class ArchiveError(Exception):
    """The archive could not be built (bad entry path, duplicate entry, unreadable file)."""


@dataclass(frozen=True)
class Entry:
    """One member of an archive, described before its contents are read.

    ``size`` is an estimate used for progress; the exact size comes from ``opener`` at write
    time (a file on disk may change between listing and packing).
    """

    path: str
    kind: str = "file"  # "file" | "symlink" | "dir"
    executable: bool = False
    size: int = 0
    link_target: str = ""
    opener: Opener | None = field(default=None, compare=False, repr=False)
    #: Immutable identity of the contents (``git:<blob sha>``), None when read from disk.
    #: When every file has one, an identical archive built before can be reused.
    content_id: str | None = None

    def with_path(self, path: str) -> Entry:
        """The same entry placed elsewhere (used by subpath stripping and hybrid prefixes)."""
        return dataclasses.replace(self, path=path)


@dataclass(frozen=True)
class ArchiveInfo:
    """What :func:`write_archive` produced (``reused``: an identical archive was found)."""

    path: Path
    sha256: str
    content_sha256: str
    size: int
    file_count: int
    reused: bool = False


def clean_arcname(path: str) -> str:
    """Normalise an archive path and refuse ones that would escape the extraction dir."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts or path.startswith("/"):
        raise ArchiveError(f"unsafe or empty archive path: {path!r}")
    return "/".join(parts)


def file_sha256(path: Path) -> str:
    """sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _open_disk(path: Path) -> Opener:
    @contextlib.contextmanager
    def opener() -> Iterator[tuple[BinaryIO, int]]:
        with open(path, "rb") as fh:
            # Size of what we opened, not of what we listed: the user may be editing.
            yield fh, os.fstat(fh.fileno()).st_size

    return opener


def disk_entry(path: Path, arcname: str) -> Entry | None:
    """An entry for a file or symlink on disk (not followed); None for anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return Entry(clean_arcname(arcname), "symlink", link_target=os.readlink(path))
    if stat.S_ISREG(st.st_mode):
        return Entry(
            clean_arcname(arcname),
            "file",
            executable=bool(st.st_mode & stat.S_IXUSR),
            size=st.st_size,
            opener=_open_disk(path),
        )
    return None


class _HashingWriter(io.RawIOBase):
    """Pass-through writer that hashes and counts what goes by."""

    def __init__(self, sink: ByteSink) -> None:
        self._sink = sink
        self.digest = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    # RawIOBase.write takes any Buffer; the bytes-likes tarfile and gzip actually pass are
    # sized, which len() below needs.
    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._sink.write(data)
        self.digest.update(data)
        n = len(data)
        self.count += n
        return n


class _CountingReader(io.RawIOBase):
    """Reads from ``source`` and reports progress (tarfile pulls file data through this)."""

    def __init__(self, source: BinaryIO, tick: Callable[[int], None]) -> None:
        self._source = source
        self._tick = tick

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if data:
            self._tick(len(data))
        return data


def _with_parent_dirs(entries: Iterable[Entry]) -> list[Entry]:
    by_path: dict[str, Entry] = {}
    for entry in entries:
        path = clean_arcname(entry.path)
        previous = by_path.get(path)
        if previous is not None:
            if previous.kind == "dir" and entry.kind == "dir":
                continue
            raise ArchiveError(f"two archive entries for {path!r}")
        by_path[path] = entry if path == entry.path else entry.with_path(path)
    for path in list(by_path):
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            existing = by_path.get(parent)
            if existing is None:
                by_path[parent] = Entry(parent, "dir")
            elif existing.kind != "dir":
                raise ArchiveError(f"{parent!r} is both a file and a directory in the archive")
    # Plain sort puts a directory before everything inside it ("a" < "a-b" < "a/x" is fine
    # for tar: parents only need to precede their own children).
    return [by_path[p] for p in sorted(by_path, key=lambda p: p.encode("utf-8", "surrogateescape"))]


def _tarinfo(entry: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mtime = ARCHIVE_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.link_target
        info.mode = 0o777
    elif entry.kind == "file":
        info.type = tarfile.REGTYPE
        info.mode = 0o755 if entry.executable else 0o644
    else:
        raise ArchiveError(f"unknown entry kind {entry.kind!r} for {entry.path!r}")
    return info


def _reuse_key(ordered: list[Entry]) -> str | None:
    """Digest of an entry list whose contents are all immutable (git objects), else None."""
    digest = hashlib.sha256(
        f"{FORMAT_VERSION}\n{GZIP_LEVEL}\n{zlib.ZLIB_RUNTIME_VERSION}\n".encode()
    )
    for entry in ordered:
        if entry.kind == "file":
            if entry.content_id is None:
                return None
            ident = entry.content_id
        elif entry.kind == "symlink":
            ident = entry.link_target
        else:
            ident = ""
        line = f"{entry.path}\0{entry.kind}\0{int(entry.executable)}\0{ident}\n"
        digest.update(line.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _reuse(dest_dir: Path, key: str) -> ArchiveInfo | None:
    """The archive recorded for ``key``, if it is still there and still hashes right."""
    try:
        record = json.loads((dest_dir / INDEX_DIR / f"{key}.json").read_text())
        path = dest_dir / f"{record['sha256']}.tar.gz"
        if path.stat().st_size != record["size"] or file_sha256(path) != record["sha256"]:
            return None
        return ArchiveInfo(
            path,
            record["sha256"],
            record["content_sha256"],
            record["size"],
            record["file_count"],
            reused=True,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _private_file(path: Path) -> BinaryIO:
    """A new file only the user can read (0600, whatever the umask): the package cache
    holds the user's code."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "wb")


def _remember(dest_dir: Path, key: str, info: ArchiveInfo) -> None:
    index = dest_dir / INDEX_DIR
    makedirs_exact(index)
    record = {
        "sha256": info.sha256,
        "content_sha256": info.content_sha256,
        "size": info.size,
        "file_count": info.file_count,
    }
    atomic_write(index / f"{key}.json", json.dumps(record), durable=False)


def write_archive(
    entries: Iterable[Entry],
    dest_dir: Path,
    progress: ProgressFn | None = None,
    *,
    reuse: bool = True,
) -> ArchiveInfo:
    """Write ``entries`` as a deterministic ``.tar.gz`` named ``<dest_dir>/<sha256>.tar.gz``.

    The archive is written to a unique temporary name first and renamed once complete, so
    concurrent packagers sharing ``dest_dir`` (a content-addressed cache) never see a torn
    file; an identical archive already present is simply replaced by the same bytes.

    With ``reuse`` and entries whose contents are all immutable (every file has a
    ``content_id``, i.e. comes from git objects), an archive built earlier from the same
    list is reused after re-hashing it: relaunching unchanged code costs one sha256 pass
    instead of a full re-compression. Anything read from disk is always re-packed.
    """
    ordered = _with_parent_dirs(entries)
    total = sum(e.size for e in ordered if e.kind == "file")
    key = _reuse_key(ordered) if reuse else None
    if key is not None:
        found = _reuse(dest_dir, key)
        if found is not None:
            if progress is not None:
                progress(total, total)
            return found
    done = 0
    last_report = -1

    def tick(n: int) -> None:
        nonlocal done, last_report
        done += n
        if progress is not None and (done - last_report >= CHUNK or done >= total):
            last_report = done
            progress(done, max(total, done))

    makedirs_exact(dest_dir)
    tmp = dest_dir / f".pack-{os.getpid()}-{uuid.uuid4().hex[:12]}.tar.gz.tmp"
    file_count = 0
    try:
        with _private_file(tmp) as raw:
            outer = _HashingWriter(raw)
            with ParallelGzipWriter(outer, GZIP_LEVEL) as gz:
                inner = _HashingWriter(gz)
                with tarfile.open(
                    fileobj=inner,
                    mode="w|",
                    format=tarfile.PAX_FORMAT,
                    encoding="utf-8",
                    errors="surrogateescape",
                ) as tar:
                    tar.copybufsize = CHUNK  # type: ignore[attr-defined]  # real, unlisted in typeshed
                    for entry in ordered:
                        info = _tarinfo(entry)
                        if entry.kind != "file":
                            tar.addfile(info)
                            if entry.kind == "symlink":
                                file_count += 1
                            continue
                        if entry.opener is None:
                            raise ArchiveError(f"no contents for {entry.path!r}")
                        with entry.opener() as (stream, size):
                            info.size = size
                            tar.addfile(info, _CountingReader(stream, tick))
                        file_count += 1
            raw.flush()
            os.fsync(raw.fileno())
        if progress is not None and last_report != done:
            progress(done, max(total, done))
        sha = outer.digest.hexdigest()
        final = dest_dir / f"{sha}.tar.gz"
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    made = ArchiveInfo(
        path=final,
        sha256=sha,
        content_sha256=inner.digest.hexdigest(),
        size=outer.count,
        file_count=file_count,
    )
    if key is not None:
        with contextlib.suppress(OSError):  # only an optimisation
            _remember(dest_dir, key, made)
    return made


def list_archive(path: Path) -> list[str]:
    """Member names of an archive (for tests, the detail pane and debugging)."""
    with tarfile.open(path, "r:gz") as tar:
        return tar.getnames()
