"""``PatternPackager``: package files matched by glob patterns, from disk.

For code that is not in git (or extra generated files next to it). Patterns are resolved
against ``relative_path`` (default: the current directory when packaging) and archive paths
are relative to it, so ``PatternPackager(include_pattern="configs/**/*.yaml")`` puts
``configs/a/b.yaml`` at ``configs/a/b.yaml`` in the archive.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.packaging.archive import Entry, disk_entry
from core.packaging.base import Collected, Packager, PackagingError
from core.packaging.provenance import Provenance


def as_pattern_list(patterns: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """NeMo Run accepts one pattern or a list; so do we."""
    if patterns is None:
        return []
    if isinstance(patterns, str):
        return [patterns] if patterns else []
    return [str(p) for p in patterns]


def _is_git_internal(rel: str) -> bool:
    return ".git" in rel.split("/")


def match_files(root: Path, patterns: list[str]) -> tuple[dict[str, Path], list[str]]:
    """Files (and symlinks) under ``root`` matched by ``patterns``.

    Returns ``{path relative to root: absolute path}`` and the patterns that matched nothing
    (worth a warning: a typo would otherwise silently ship less code). A matched directory
    contributes every file below it. Anything inside a ``.git`` directory is never included,
    and a match outside ``root`` is an error (archive paths are relative to ``root``).
    """
    root = root.resolve()
    found: dict[str, Path] = {}
    unmatched: list[str] = []
    for pattern in patterns:
        rel_pattern = pattern
        if os.path.isabs(pattern):
            try:
                rel_pattern = str(Path(pattern).relative_to(root))
            except ValueError:
                raise PackagingError(
                    f"include pattern {pattern!r} is outside {root}; patterns must lie under it"
                ) from None
        hits = sorted(glob.glob(rel_pattern, root_dir=root, recursive=True))
        count = 0
        for hit in hits:
            rel = os.path.normpath(hit).replace(os.sep, "/")
            if rel.startswith("../") or rel == "..":
                raise PackagingError(f"include pattern {pattern!r} matched {hit!r}, outside {root}")
            if _is_git_internal(rel):
                continue
            full = root / rel
            if full.is_dir() and not full.is_symlink():
                for dirpath, dirnames, filenames in os.walk(full):
                    dirnames[:] = sorted(d for d in dirnames if d != ".git")
                    # os.walk lists symlinks to directories as directories (not followed):
                    # keep them as links.
                    links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
                    for name in [*filenames, *links]:
                        child = Path(dirpath) / name
                        found[child.relative_to(root).as_posix()] = child
                        count += 1
            elif rel != ".":
                found[rel] = full
                count += 1
        if count == 0:
            unmatched.append(pattern)
    return found, unmatched


def pattern_entries(
    root: Path,
    patterns: list[str],
    arcname: Callable[[str], str] = lambda rel: rel,
) -> tuple[list[Entry], list[str]]:
    """Archive entries for :func:`match_files`; second item: warnings for the user."""
    files, unmatched = match_files(root, patterns)
    entries = []
    for rel, full in sorted(files.items()):
        entry = disk_entry(full, arcname(rel))
        if entry is not None:
            entries.append(entry)
    warnings = [f"include pattern {p!r} matched no files under {root}" for p in unmatched]
    return entries, warnings


@dataclass
class PatternPackager(Packager):
    """Package the files matched by ``include_pattern`` (glob, ``**`` allowed).

    ``relative_path`` is the directory patterns are resolved against and archive paths are
    relative to; empty means the current directory at packaging time.
    """

    include_pattern: str | list[str] | None = None
    relative_path: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.include_pattern, tuple):
            self.include_pattern = list(self.include_pattern)
        self.relative_path = str(self.relative_path) if self.relative_path else ""

    def collect(self, stack: contextlib.ExitStack) -> Collected | None:
        patterns = as_pattern_list(self.include_pattern)
        if not patterns:
            raise PackagingError("PatternPackager needs include_pattern (one glob or a list)")
        root = Path(self.relative_path or os.getcwd()).expanduser().resolve()
        if not root.is_dir():
            raise PackagingError(f"PatternPackager relative_path {root} is not a directory")
        entries, warnings = pattern_entries(root, patterns)
        prov = Provenance(self.type_name, self.to_dict(), source="worktree")
        return Collected(entries, prov, warnings)
