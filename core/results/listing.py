"""List a directory tree through a transport: one ``find`` over SSH, ``os.walk`` locally.

Symlinks are listed, never followed (a link in a job dir may point anywhere; the listing
stays inside the root). Hidden entries and the extracted code (``code/``) are pruned: the
code is the input of the run, not its output, and can hold thousands of files.
"""

from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import dataclass

from core.transport import Transport, TransportError

#: Top-level folders of a job dir that are the backends' own (packaged code, archives).
PRUNED_DIRS = ("code", ".packages")
MAX_ENTRIES = 20000


@dataclass(frozen=True, slots=True)
class Entry:
    """One file or folder under the root: path relative to it, size, mtime, kind."""

    path: str
    size: int
    mtime: float
    kind: str  # "f" file, "d" directory, "l" symlink, "o" other


async def list_tree(
    transport: Transport, root: str, *, max_depth: int = 8, max_entries: int = MAX_ENTRIES
) -> list[Entry]:
    """Everything under ``root`` (not ``root`` itself); empty when it does not exist."""
    if transport.target == "local":
        return await asyncio.to_thread(_walk, root, max_depth, max_entries)
    return await _find(transport, root, max_depth, max_entries)


def _walk(root: str, max_depth: int, max_entries: int) -> list[Entry]:
    out: list[Entry] = []
    if not os.path.isdir(root):
        return out
    stack = [("", 1)]
    while stack and len(out) < max_entries:
        rel, depth = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel) if rel else root) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        for item in items:
            if item.name.startswith(".") or (not rel and item.name in PRUNED_DIRS):
                continue
            path = f"{rel}/{item.name}" if rel else item.name
            try:
                st = item.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                kind = "l"
            elif stat.S_ISDIR(st.st_mode):
                kind = "d"
            elif stat.S_ISREG(st.st_mode):
                kind = "f"
            else:
                kind = "o"
            out.append(Entry(path, st.st_size, st.st_mtime, kind))
            if kind == "d" and depth < max_depth:
                stack.append((path, depth + 1))
    out.sort(key=lambda e: e.path)
    return out[:max_entries]


def _find_escape(path: str) -> str:
    """``path`` as a literal ``find -path`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in path)


async def _find(transport: Transport, root: str, max_depth: int, max_entries: int) -> list[Entry]:
    root = root.rstrip("/") or "/"
    prune: list[str] = ["-name", ".*"]
    for name in PRUNED_DIRS:
        prune += ["-o", "-path", _find_escape(f"{root}/{name}")]
    argv = [
        "find",
        root,
        "-mindepth",
        "1",
        "-maxdepth",
        str(max_depth),
        "(",
        *prune,
        ")",
        "-prune",
        "-o",
        "-printf",
        "%y\\t%s\\t%T@\\t%P\\0",
    ]
    result = await transport.run(argv, timeout=60)
    if not result.ok:
        if b"No such file" in result.stderr and not result.stdout:
            return []
        if not result.stdout:
            raise TransportError(
                f"cannot list {root} on {transport.target}: "
                f"{result.stderr.decode(errors='replace').strip()[:200]}"
            )
    out = []
    for raw in result.stdout.split(b"\0"):
        if not raw:
            continue
        parts = raw.split(b"\t", 3)
        if len(parts) != 4:
            continue
        kind, size, mtime, path = parts
        letter = kind.decode(errors="replace")
        try:
            entry = Entry(
                path.decode("utf-8", "surrogateescape"),
                int(size),
                float(mtime),
                letter if letter in "fdl" else "o",
            )
        except ValueError:
            continue
        out.append(entry)
        if len(out) >= max_entries:
            break
    out.sort(key=lambda e: e.path)
    return out
