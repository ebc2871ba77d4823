"""The packager interface, its result, its errors and its stored form.

A packager turns "the user's code" into one deterministic archive plus a
:class:`~core.packaging.provenance.Provenance`. Packagers are small dataclasses so an
executor profile can store them (``to_dict``) and rebuild them months later
(:func:`packager_from_dict`). Work is split in two so :class:`HybridPackager` can merge
several packagers into *one* archive without tar-in-tar: :meth:`Packager.collect` lists the
entries (reading nothing big), :meth:`Packager.package` streams them into the archive.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from core.packaging.archive import Entry, ProgressFn, write_archive
from core.packaging.provenance import Provenance


class PackagingError(Exception):
    """Packaging failed; the message is meant for the user (it says what to do)."""


class UncommittedChangesError(PackagingError):
    """The policy is ``refuse`` and the working tree has changes / untracked files.

    ``uncommitted`` and ``untracked`` list the offending paths (relative to the repo root)
    so the app can show them instead of a bare "repository is dirty".
    """

    def __init__(self, repo: str, uncommitted: list[str], untracked: list[str]) -> None:
        self.repo = repo
        self.uncommitted = list(uncommitted)
        self.untracked = list(untracked)
        parts = []
        if uncommitted:
            parts.append(f"{len(uncommitted)} uncommitted change(s): {_preview(uncommitted)}")
        if untracked:
            parts.append(f"{len(untracked)} untracked file(s): {_preview(untracked)}")
        super().__init__(
            f"refusing to package {repo}: "
            + "; ".join(parts)
            + " (commit or stash them, or set the packager policy to 'warn' or 'include')"
        )


class SubmoduleError(PackagingError):
    """A submodule cannot be packaged at the commit its superproject records."""


class UnsafeEntryError(PackagingError):
    """An entry would not extract inside the job's code directory (a symlink pointing out
    of the tree, most often). Raised while collecting, so before anything is recorded."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"refusing to package {path!r}: {reason}. Packaged symlinks must point inside the "
            f"packaged tree (a relative target that does not leave it); replace the link or "
            f"leave it out of the package"
        )


def _preview(paths: list[str], limit: int = 8) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f", … (+{len(paths) - limit} more)" if len(paths) > limit else "")


@dataclass
class PackageResult:
    """What :meth:`Packager.package` produced.

    ``archive`` is ``<dest_dir>/<sha256>.tar.gz`` or None when nothing is packaged.
    ``warnings`` are for the user *before* launch (e.g. "3 uncommitted changes are not
    packaged"); they are also implied by the provenance, which the store keeps.
    """

    archive: Path | None
    sha256: str | None
    size: int
    provenance: Provenance
    warnings: list[str] = field(default_factory=list)
    #: True when an identical archive built earlier was found (and re-verified) in
    #: ``dest_dir`` instead of compressing again (unchanged committed code).
    reused: bool = False


@dataclass
class Collected:
    """The listing a packager produced: entries to write plus their provenance."""

    entries: list[Entry]
    provenance: Provenance
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_tree(self.entries)
        self.provenance.set_files([e.path for e in self.entries if e.kind != "dir"])


def check_tree(entries: list[Entry]) -> None:
    """The extractors' own rules, applied to an entry list (see :mod:`.extract`).

    Both extractors refuse a symlink that leaves the tree; refusing it here, while
    collecting, means the launch stops before anything is recorded or submitted, with the
    same message on every backend.
    """
    from core.packaging.extract import UnsafeArchiveError, check_entries

    try:
        check_entries((e.path, e.kind, e.link_target) for e in entries)
    except UnsafeArchiveError as exc:
        raise UnsafeEntryError(exc.path, exc.reason) from None


_PACKAGER_TYPES: dict[str, type[Packager]] = {}


@dataclass
class Packager:
    """Packages nothing: the job runs with whatever code is already at the destination.

    Subclasses override :meth:`collect`. Every dataclass field is a setting and is stored
    by :meth:`to_dict`.
    """

    type_name: ClassVar[str] = "Packager"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.type_name = cls.__name__
        _PACKAGER_TYPES[cls.__name__] = cls

    # -- work ---------------------------------------------------------------------------
    def collect(self, stack: contextlib.ExitStack) -> Collected | None:
        """List what to pack (resources needed while writing go on ``stack``); None = nothing."""
        return None

    def package(self, dest_dir: Path, progress: ProgressFn | None = None) -> PackageResult:
        """Build the archive in ``dest_dir`` (created if needed) and describe it.

        Synchronous (git subprocesses and compression); call it from a worker thread, or use
        :meth:`package_async`. ``progress(bytes_done, bytes_total)`` is called as file
        contents are streamed.
        """
        with contextlib.ExitStack() as stack:
            collected = self.collect(stack)
            if collected is None:
                return PackageResult(None, None, 0, Provenance(self.type_name, self.to_dict()))
            info = write_archive(collected.entries, Path(dest_dir), progress)
        prov = collected.provenance
        prov.archive_sha256 = info.sha256
        prov.content_sha256 = info.content_sha256
        prov.archive_size = info.size
        return PackageResult(
            info.path, info.sha256, info.size, prov, list(collected.warnings), info.reused
        )

    def preflight(self) -> list[str]:
        """What :meth:`package` would warn about, without building anything (cheap: listings
        only). Raises like :meth:`package` would (e.g. :class:`UncommittedChangesError`), so
        the app can show problems in the launch dialog before any work starts."""
        with contextlib.ExitStack() as stack:
            collected = self.collect(stack)
        return [] if collected is None else list(collected.warnings)

    async def package_async(
        self, dest_dir: Path, progress: ProgressFn | None = None
    ) -> PackageResult:
        """:meth:`package` in a worker thread (``progress`` is called from that thread)."""
        import asyncio  # only async callers pay for it

        return await asyncio.to_thread(self.package, dest_dir, progress)

    # -- stored form --------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Constructor arguments, JSON-safe."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_dict(self) -> dict[str, Any]:
        return {"__type__": self.type_name, **self.settings()}

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Packager:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ValueError(f"{cls.__name__} has no setting(s) {', '.join(unknown)}")
        return cls(**settings)


_PACKAGER_TYPES["Packager"] = Packager


def _jsonable(value: Any) -> Any:
    if isinstance(value, Packager):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def packager_from_dict(data: dict[str, Any] | None) -> Packager:
    """Rebuild a stored packager (``to_dict`` output). ``None`` means :class:`Packager`.

    Accepts ``"__type__"`` (our stored form) or ``"type"`` (handier in config.toml); unknown
    types and unknown settings are errors, never silently dropped.
    """
    if data is None:
        return Packager()
    data = dict(data)
    type_name = data.pop("__type__", None) or data.pop("type", None) or "Packager"
    cls = _PACKAGER_TYPES.get(str(type_name))
    if cls is None:
        known = ", ".join(sorted(_PACKAGER_TYPES))
        raise ValueError(f"unknown packager type {type_name!r} (known: {known})")
    return cls.from_settings(data)


def as_packager(value: Packager | dict[str, Any] | None) -> Packager:
    """Whatever an executor profile holds (object, stored dict or None) as a packager."""
    if isinstance(value, Packager):
        return value
    if value is None or isinstance(value, dict):
        return packager_from_dict(value)
    raise TypeError(f"not a packager: {value!r}")
