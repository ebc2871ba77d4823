"""``PatternPackager``: package files matched by glob patterns, from disk.

For code that is not in git (or extra generated files next to it). Patterns are resolved
against ``relative_path`` (default: the current directory when packaging) and archive paths
are relative to it, so ``PatternPackager(include_pattern="configs/**/*.yaml")`` puts
``configs/a/b.yaml`` at ``configs/a/b.yaml`` in the archive.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterator
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


#: Most directory entries one packaging run may look at: a pattern rooted at a huge tree
#: (``**`` in a home directory) stops with an error instead of running for hours.
MAX_VISITED = 500_000
#: Deepest directory walked (far beyond real code trees; keeps recursion bounded).
MAX_DEPTH = 200
_MAGIC = re.compile(r"[*?[]")


class _Walker:
    """Glob matching that never leaves ``root``: no symlink is ever followed.

    ``glob.glob`` follows directory symlinks, so ``**`` walked out of the tree through
    ``up -> ../..``, shipped the files it found there and looped on symlink cycles. Here a
    symlink is a leaf: matched, it is packaged *as a symlink* (and one pointing outside is
    then refused, see :func:`core.packaging.base.check_tree`); a pattern never matches
    anything below it. Semantics otherwise follow ``glob.glob(recursive=True)``: ``*``,
    ``?`` and ``[...]`` within one component, ``**`` for zero or more directories, and
    wildcards skip names starting with ``.`` unless the pattern component starts with one.
    Real directories are tracked by (device, inode), so even a bind-mount cycle is walked
    once, and the whole run is bounded by :data:`MAX_VISITED` entries.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.visited = 0
        self._listed: dict[str, list[tuple[str, bool]]] = {}
        self._seen_dirs: set[tuple[int, int]] = set()

    def _full(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else str(self.root)

    def children(self, rel: str) -> list[tuple[str, bool]]:
        """``(name, is a real directory)`` of the real directory ``rel``, sorted."""
        cached = self._listed.get(rel)
        if cached is not None:
            return cached
        if rel.count("/") >= MAX_DEPTH:
            raise PackagingError(f"{self.root}/{rel[:200]}… is nested too deep to package")
        result: list[tuple[str, bool]] = []
        try:
            st = os.lstat(self._full(rel))
            if not stat.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) in self._seen_dirs:
                self._listed[rel] = result
                return result
            self._seen_dirs.add((st.st_dev, st.st_ino))
            with os.scandir(self._full(rel)) as it:
                for entry in it:
                    self.visited += 1
                    if self.visited > MAX_VISITED:
                        raise PackagingError(
                            f"include patterns visit more than {MAX_VISITED} entries under "
                            f"{self.root}; narrow them (or set relative_path to a smaller tree)"
                        )
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        is_dir = False
                    result.append((entry.name, is_dir))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            pass
        result.sort()
        self._listed[rel] = result
        return result

    def glob(self, base: str, parts: list[str]) -> Iterator[str]:
        """Relative paths under real directory ``base`` matching the components ``parts``."""
        if not parts:
            yield base
            return
        head, rest = parts[0], parts[1:]
        join = (lambda name: f"{base}/{name}") if base else (lambda name: name)
        if head == "**":
            yield from self.glob(base, rest)
            for name, is_dir in self.children(base):
                if name.startswith("."):
                    continue
                if is_dir:
                    yield from self.glob(join(name), parts)  # "**" again, one level down
                elif not rest:
                    yield join(name)
            return
        if _MAGIC.search(head):
            hidden_ok = head.startswith(".")
            for name, is_dir in self.children(base):
                if (hidden_ok or not name.startswith(".")) and fnmatch.fnmatchcase(name, head):
                    if not rest:
                        yield join(name)
                    elif is_dir:
                        yield from self.glob(join(name), rest)
            return
        try:
            st = os.lstat(self._full(join(head)))
        except OSError:
            return
        if not rest:
            yield join(head)
        elif stat.S_ISDIR(st.st_mode):  # lstat: a symlink to a directory is not descended
            yield from self.glob(join(head), rest)

    def files_below(self, rel: str) -> Iterator[str]:
        """Every file and symlink below the real directory ``rel`` (``.git`` skipped)."""
        for name, is_dir in self.children(rel):
            if name == ".git":
                continue
            child = f"{rel}/{name}" if rel else name
            if is_dir:
                yield from self.files_below(child)
            else:
                yield child


def match_files(root: Path, patterns: list[str]) -> tuple[dict[str, Path], list[str]]:
    """Files (and symlinks) under ``root`` matched by ``patterns``, never following a link.

    Returns ``{path relative to root: absolute path}`` and the patterns that matched nothing
    (worth a warning: a typo would otherwise silently ship less code). A matched directory
    contributes every file below it. Anything inside a ``.git`` directory is never included,
    and a pattern reaching outside ``root`` is an error (archive paths are relative to it).
    See :class:`_Walker` for how symlinks are treated.
    """
    root = root.resolve()
    walker = _Walker(root)
    found: dict[str, Path] = {}
    unmatched: list[str] = []
    for pattern in patterns:
        rel_pattern = pattern.replace(os.sep, "/")
        if os.path.isabs(pattern):
            try:
                rel_pattern = Path(pattern).relative_to(root).as_posix()
            except ValueError:
                raise PackagingError(
                    f"include pattern {pattern!r} is outside {root}; patterns must lie under it"
                ) from None
        # Lexical ".." is what the pattern means: no component is ever a followed symlink.
        norm = posixpath.normpath(rel_pattern) if rel_pattern else "."
        if norm == ".." or norm.startswith("../"):
            raise PackagingError(f"include pattern {pattern!r} reaches outside {root}")
        parts = [] if norm == "." else norm.split("/")
        count = 0
        hits = set(walker.glob("", parts))
        if parts == ["**"]:
            hits.discard("")  # like glob.glob: a bare "**" lists the tree, not the root
        for rel in sorted(hits):
            if _is_git_internal(rel):
                continue
            try:
                is_dir = stat.S_ISDIR(os.lstat(walker._full(rel)).st_mode)
            except OSError:
                continue
            if is_dir:
                for child in walker.files_below(rel):
                    found[child] = root / child
                    count += 1
            elif rel:
                found[rel] = root / rel
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
