"""One extraction policy for packaged code, here and on a cluster.

Why not ``tarfile``'s ``filter="data"``: the Python in use (3.11.7) lets a crafted archive
past it (CVE-2025-4517: a symlink chain longer than ``PATH_MAX`` stops ``os.path.realpath``
from resolving, and a link placed "through" it then escapes). So every archive is checked
here, by rules that never ask the filesystem what a path resolves to:

* **Members**: only directories, regular files and symlinks. Hard links, devices, FIFOs,
  sparse and continuation members are refused (our writer never produces them). Names are
  relative, without ``..``, NUL or over-long parts; no name appears twice (except a
  directory); nothing is placed *through* a symlink or a file of the same archive; no pax
  keys beyond the ones tar itself needs.
* **Symlinks** must resolve inside the tree. Each target is resolved component by
  component against the archive's own members (other symlinks included, at most
  :data:`MAX_LINK_HOPS` hops), the way the kernel would in a fresh directory; an absolute
  target, a ``..`` above the root, a too-long or too-deep chain are refused. The same
  :class:`TreeChecker` runs at packaging time on the entry list, so a repository symlink
  pointing outside is refused before anything is recorded, on every backend alike.
* **End of archive**: after the last member only zero bytes may follow. ``tarfile`` stops
  quietly at a damaged header that GNU tar would skip over; refusing trailing data means
  both tools see exactly the same members.
* **The hash** is checked before anything is extracted, and again over the bytes actually
  extracted (a file swapped in between is caught; the partial tree is discarded).

:func:`extract_local` then writes with directory file descriptors and ``O_NOFOLLOW`` on
every component, into a fresh staging directory renamed into place when complete: even a
checker bug could not make it write outside. On a cluster, :func:`tar_extract_argv` is run
by :func:`core.packaging.upload.extract_archive` only after the same check passed on the
local copy of the very bytes the cluster holds (same sha256).

Both extractors give the same tree: extracted files get the extraction time as mtime (like
``tar -m``; the archive's fixed 1980 mtime exists for determinism only, and "now" keeps
``make``/``.pyc`` caches behaving as after a fresh checkout), modes are the archive's
0644/0755 filtered by the umask (GNU tar's default for a non-root user, forced with
``--no-same-permissions`` for root), and owners are whoever extracts.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shutil
import tarfile
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Protocol, cast

#: Linux's own limit on symlinks followed while resolving one path (MAXSYMLINKS).
MAX_LINK_HOPS = 40
#: Longest member name, link target or resolved path accepted (Linux PATH_MAX).
MAX_PATH_BYTES = 4096
#: Longest single path component (NAME_MAX).
MAX_NAME_BYTES = 255
#: pax header keys tar needs for long or non-ASCII names and large values; any other key
#: (``GNU.sparse.*``, ``SCHILY.*``, ``LIBARCHIVE.*``) is something two tar readers may
#: interpret differently, so it is refused.
ALLOWED_PAX_KEYS = frozenset(
    {"path", "linkpath", "size", "mtime", "atime", "ctime", "uid", "gid", "uname", "gname"}
    | {"hdrcharset", "comment"}
)
#: Written inside the extracted tree when it is complete (a retried submit reuses it).
EXTRACTED_MARKER = ".nemorun-extracted"
_CHUNK = 1 << 20


class UnsafeArchiveError(ValueError):
    """An archive (or entry list) would place something outside its root, or is not ours.

    ``path`` names the offending member or link; the message says why.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path!r}: {reason}")


@dataclass(frozen=True)
class Member:
    """A checked member: its clean relative path, kind and (for symlinks) target."""

    path: str
    kind: str  # "dir" | "file" | "symlink"
    link_target: str = ""
    executable: bool = False


def _name_parts(name: str) -> list[str]:
    """The components of a member name; raises for anything that could leave the root."""
    if "\0" in name:
        raise UnsafeArchiveError(name, "contains a NUL byte")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise UnsafeArchiveError(name[:80] + "…", f"name longer than {MAX_PATH_BYTES} bytes")
    if name.startswith("/"):
        raise UnsafeArchiveError(name, "absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        raise UnsafeArchiveError(name, "empty path")
    for part in parts:
        if part == "..":
            raise UnsafeArchiveError(name, "'..' component")
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise UnsafeArchiveError(name, f"a component is longer than {MAX_NAME_BYTES} bytes")
    return parts


class TreeChecker:
    """Checks a tree described member by member; :meth:`finish` checks the symlinks.

    Used on a tar stream (extraction) and on a packager's entry list (packaging), so what
    the packager accepts is exactly what both extractors accept.
    """

    def __init__(self) -> None:
        self._kinds: dict[str, str] = {}
        self._links: dict[str, str] = {}
        self.members: list[Member] = []

    def add(self, name: str, kind: str, link_target: str = "", executable: bool = False) -> Member:
        if kind not in ("dir", "file", "symlink"):
            raise UnsafeArchiveError(name, f"{kind} members are not allowed")
        parts = _name_parts(name)
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            seen = self._kinds.get(prefix)
            if seen == "symlink":
                raise UnsafeArchiveError(name, f"placed through the symlink {prefix!r}")
            if seen == "file":
                raise UnsafeArchiveError(name, f"placed below the file {prefix!r}")
            if seen is None:
                self._kinds[prefix] = "dir"  # created implicitly, like tar does
        path = "/".join(parts)
        previous = self._kinds.get(path)
        if previous is not None and not (previous == "dir" and kind == "dir"):
            raise UnsafeArchiveError(path, "appears twice in the archive")
        if kind == "symlink":
            _check_target(path, link_target)
            self._links[path] = link_target
        self._kinds[path] = kind
        member = Member(path, kind, link_target if kind == "symlink" else "", executable)
        self.members.append(member)
        return member

    def finish(self) -> list[Member]:
        """Resolve every symlink against the whole tree; raises if one leaves it."""
        for path, target in self._links.items():
            self._resolve(path, target)
        return self.members

    def _resolve(self, link: str, target: str) -> None:
        parts = link.split("/")[:-1]  # the link's directory
        pending = list(reversed(target.split("/")))
        hops = 1
        size = sum(len(p) + 1 for p in parts)
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    raise UnsafeArchiveError(link, f"symlink to {target!r} points outside the tree")
                size -= len(parts.pop()) + 1
                continue
            parts.append(part)
            size += len(part) + 1
            if size > MAX_PATH_BYTES:
                raise UnsafeArchiveError(
                    link, f"symlink to {target!r} resolves to an over-long path"
                )
            inner = self._links.get("/".join(parts))
            if inner is not None:
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise UnsafeArchiveError(
                        link, f"symlink to {target!r} needs more than {MAX_LINK_HOPS} hops"
                    )
                size -= len(parts.pop()) + 1
                pending.extend(reversed(inner.split("/")))


def _check_target(path: str, target: str) -> None:
    if not target:
        raise UnsafeArchiveError(path, "symlink with an empty target")
    if "\0" in target:
        raise UnsafeArchiveError(path, "symlink target contains a NUL byte")
    if len(target.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise UnsafeArchiveError(path, f"symlink target longer than {MAX_PATH_BYTES} bytes")
    if target.startswith("/"):
        raise UnsafeArchiveError(path, f"symlink to the absolute path {target!r}")


def _member_kind(info: tarfile.TarInfo) -> str:
    if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and not info.issparse():
        return "file"
    if info.type == tarfile.DIRTYPE:
        return "dir"
    if info.type == tarfile.SYMTYPE:
        return "symlink"
    names = {
        tarfile.LNKTYPE: "hard link",
        tarfile.CHRTYPE: "character device",
        tarfile.BLKTYPE: "block device",
        tarfile.FIFOTYPE: "FIFO",
        tarfile.CONTTYPE: "contiguous file",
    }
    return names.get(info.type, "sparse" if info.issparse() else f"type {info.type!r}")


def check_member(checker: TreeChecker, info: tarfile.TarInfo) -> Member:
    """Check one tar member (type, pax keys, name, link) and add it to ``checker``."""
    odd = sorted(set(info.pax_headers) - ALLOWED_PAX_KEYS)
    if odd:
        raise UnsafeArchiveError(info.name, f"unsupported pax header(s) {', '.join(odd)}")
    kind = _member_kind(info)
    executable = bool(info.mode & 0o100)
    return checker.add(info.name, kind, info.linkname if kind == "symlink" else "", executable)


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class _HashingReader:
    """Reads a file and hashes every byte that goes by (so the hash is of what was used).

    Only ``read`` exists: gzip needs nothing more, and without ``seek`` nothing can make
    it read a byte twice.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        self.digest.update(data)
        return data

    def drain(self) -> str:
        """Hash the rest of the file (bytes tar never needed) and return the digest."""
        while chunk := self._raw.read(_CHUNK):
            self.digest.update(chunk)
        return self.digest.hexdigest()


class _ForwardReader:
    """The decompressed tar stream, read once, front to back, with a short look-back.

    ``tarfile`` needs ``seek``/``tell``; its seeks go forward, or back by at most a block
    (to re-read where the end-of-archive marker starts). Serving those from the last
    :data:`LOOKBACK` bytes means the gzip stream is never rewound, so each compressed byte
    passes the hashing reader exactly once, whatever the buffer boundaries.
    """

    LOOKBACK = 1 << 16

    def __init__(self, source: _Readable) -> None:
        self._src = source
        self._pos = 0  # the reader's position
        self._end = 0  # how far the source has been read
        self._tail = b""  # the source's last bytes, ending at ``_end``

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("seek from the end of a tar stream")
        if offset < self._end - len(self._tail) or offset < 0:
            raise io.UnsupportedOperation("seek back beyond the look-back window")
        self._pos = offset
        return offset

    def _pull(self, size: int) -> bytes:
        data = self._src.read(size)
        if data:
            self._end += len(data)
            keep = self._tail + data if len(data) < self.LOOKBACK else data
            self._tail = keep[-self.LOOKBACK :]
        return data

    def read(self, size: int = -1) -> bytes:
        while self._end < self._pos:  # a forward seek: skip what lies in between
            if not self._pull(min(_CHUNK, self._pos - self._end)):
                return b""
        out = bytearray()
        if self._pos < self._end:  # re-reading within the look-back window
            start = len(self._tail) - (self._end - self._pos)
            out += self._tail[start : start + size] if size >= 0 else self._tail[start:]
        while size < 0 or len(out) < size:
            data = self._pull(_CHUNK if size < 0 else size - len(out))
            if not data:
                break
            out += data
        self._pos += len(out)
        return bytes(out)


def _only_zeros_follow(stream: _ForwardReader, tar: tarfile.TarFile) -> bool:
    """True when nothing but zero bytes follows the last member tar read.

    ``tar.offset`` is where tar stopped: at the end-of-archive block, or at a header it
    could not parse (``tarfile`` then stops quietly where GNU tar would skip ahead).
    """
    stream.seek(tar.offset)
    while chunk := stream.read(_CHUNK):
        if chunk.count(0) != len(chunk):
            return False
    return True


@contextlib.contextmanager
def _open_stream(hashing: _HashingReader) -> Iterator[tuple[_ForwardReader, tarfile.TarFile]]:
    """tar over a forward-only view of gzip over a hashing reader: every compressed byte
    is read, and hashed, exactly once."""
    # GzipFile seeks its fileobj only to rewind, which nothing here does; the reader has no
    # seek on purpose (see _HashingReader), so it is cast to the file type gzip names.
    gz = gzip.GzipFile(fileobj=cast(IO[bytes], hashing), mode="rb")
    stream = _ForwardReader(gz)
    with tarfile.open(
        # tarfile uses only read/seek/tell of its fileobj, all of which _ForwardReader has.
        fileobj=cast(IO[bytes], stream),
        mode="r:",
        encoding="utf-8",
        errors="surrogateescape",
    ) as tar:
        yield stream, tar


#: What a damaged or foreign compressed stream raises while being read.
_READ_ERRORS = (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, io.UnsupportedOperation)


def _check_sha_name(archive: Path, expected_sha256: str) -> None:
    if archive.name != f"{expected_sha256}.tar.gz":
        raise UnsafeArchiveError(
            archive.name, f"a cached archive must be named {expected_sha256}.tar.gz"
        )


def check_archive(archive: Path, expected_sha256: str, *, named: bool = True) -> list[Member]:
    """Verify ``archive`` hashes to ``expected_sha256`` and that every member is safe.

    Reads the file once. ``named``: the file must also be called ``<sha256>.tar.gz`` (true
    of every archive in a package cache). Raises :class:`UnsafeArchiveError` (a member) or
    :class:`ArchiveHashError` (the bytes), or ``OSError``; returns the checked members.
    """
    archive = Path(archive)
    if named:
        _check_sha_name(archive, expected_sha256)
    checker = TreeChecker()
    problem: Exception | None = None
    with open(archive, "rb") as fh:
        hashing = _HashingReader(fh)
        try:
            with _open_stream(hashing) as (gz, tar):
                for info in tar:
                    check_member(checker, info)
                if not _only_zeros_follow(gz, tar):
                    raise UnsafeArchiveError(archive.name, "data after the end of the archive")
            checker.finish()
        except UnsafeArchiveError as exc:
            problem = exc
        except _READ_ERRORS as exc:
            problem = ArchiveHashError(f"{archive} is not a readable .tar.gz: {exc}")
        actual = hashing.drain()
    if actual != expected_sha256:  # the bytes are not the recorded ones: say that first
        raise ArchiveHashError(
            f"{archive} hashes to {actual}, expected {expected_sha256}; refusing to extract it"
        )
    if problem is not None:
        raise problem
    return checker.members


class ArchiveHashError(ValueError):
    """The archive's bytes are not the ones recorded (or not a .tar.gz at all)."""


def extract_local(archive: Path, dest: Path, expected_sha256: str, *, named: bool = True) -> Path:
    """Check ``archive`` (see :func:`check_archive`), then unpack it as ``dest``.

    ``dest`` must not exist yet, unless it holds a complete earlier extraction (its
    :data:`EXTRACTED_MARKER`), which is reused. The tree is written into a private staging
    directory next to ``dest`` and renamed into place once complete, so ``dest`` is either
    absent or whole. Returns ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.is_symlink():
        raise UnsafeArchiveError(str(dest), "the destination is a symlink")
    if (dest / EXTRACTED_MARKER).is_file():
        return dest
    expected = check_archive(archive, expected_sha256, named=named)
    parent = dest.parent
    if not parent.is_dir():
        from core.fsutil import ensure_private_dir

        ensure_private_dir(parent)
    staging = parent / f".{dest.name}.partial-{uuid.uuid4().hex[:12]}"
    os.mkdir(staging, 0o700)
    try:
        _extract_checked(archive, staging, expected, expected_sha256)
        fd = os.open(staging / EXTRACTED_MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.chmod(staging, 0o700)
        if dest.is_dir() and not (dest / EXTRACTED_MARKER).exists():
            shutil.rmtree(dest)  # a partial tree left by an older version: ours, incomplete
        try:
            os.rename(staging, dest)
        except OSError:
            if not dest.is_symlink() and (dest / EXTRACTED_MARKER).is_file():  # a racing submit
                shutil.rmtree(staging, ignore_errors=True)
                return dest
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def _extract_checked(
    archive: Path, root: Path, expected: list[Member], expected_sha256: str
) -> None:
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    dirs = _DirFds(root_fd)
    checker = TreeChecker()
    want = iter(expected)
    changed = ArchiveHashError(f"{archive} changed while it was being extracted")
    try:
        with open(archive, "rb") as fh:
            hashing = _HashingReader(fh)
            with _open_stream(hashing) as (gz, tar):
                for info in tar:
                    member = check_member(checker, info)
                    if member != next(want, None):
                        raise changed
                    _write_member(dirs, tar, info, member)
                if next(want, None) is not None or not _only_zeros_follow(gz, tar):
                    raise changed
            if hashing.drain() != expected_sha256:
                raise changed
    except _READ_ERRORS:
        raise changed from None
    finally:
        dirs.close()


class _DirFds:
    """Open directory descriptors by relative path; every component opened ``O_NOFOLLOW``."""

    def __init__(self, root_fd: int) -> None:
        self._fds: dict[str, int] = {"": root_fd}

    def get(self, parts: list[str]) -> int:
        key = "/".join(parts)
        fd = self._fds.get(key)
        if fd is not None:
            return fd
        parent = self.get(parts[:-1])
        name = parts[-1]
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=parent)
        fd = os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent
        )
        if len(self._fds) > 64:  # bounded: members come sorted, so old parents are done
            self.close(keep_root=True)
        self._fds[key] = fd
        return fd

    def close(self, keep_root: bool = False) -> None:
        root = self._fds.pop("")
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {"": root}
        if not keep_root:
            os.close(root)
            self._fds = {}


def _write_member(dirs: _DirFds, tar: tarfile.TarFile, info: tarfile.TarInfo, m: Member) -> None:
    parts = m.path.split("/")
    if m.kind == "dir":
        dirs.get(parts)
        return
    parent = dirs.get(parts[:-1])
    name = parts[-1]
    if m.kind == "symlink":
        os.symlink(m.link_target, name, dir_fd=parent)
        return
    mode = 0o755 if m.executable else 0o644
    fd = os.open(
        name,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        mode,
        dir_fd=parent,
    )
    with os.fdopen(fd, "wb") as out:
        source = tar.extractfile(info)
        if source is not None:
            shutil.copyfileobj(source, out, _CHUNK)


def tar_extract_argv(archive: str, dest: str) -> list[str]:
    """The GNU tar command that extracts a *checked* archive with the same result as
    :func:`extract_local`: extraction-time mtimes, umask-filtered modes, own ownership."""
    return [
        "tar",
        "-x",
        "-z",
        "-m",
        "--no-same-owner",
        "--no-same-permissions",
        "-f",
        archive,
        "-C",
        dest,
    ]


def check_entries(entries: Iterable[tuple[str, str, str]]) -> None:
    """Packaging-time check of ``(path, kind, link_target)`` triples; raises like tar members."""
    checker = TreeChecker()
    for path, kind, target in entries:
        checker.add(path, kind, target)
    checker.finish()
