"""What ``ls`` needs to answer from the index without loading the store: light to import.

The store keeps a rendered listing in its index, keyed by a fingerprint of every manifest
version (see :meth:`core.store.Store.rendered_listing`). Checking that key needs only ``os``,
``zlib`` and ``sqlite3``; importing the store itself (dataclasses, hence ``inspect``, and the
protocol types) costs as much again as stat-ing 10,000 manifests. So the scan and the
fingerprint live here, the store uses them, and ``ls`` tries :func:`cached_listing` first.
"""

from __future__ import annotations

import os
import sqlite3
import zlib
from urllib.parse import quote

MANIFEST = "experiment.json"
INDEX_FILE = "index.sqlite"
#: Bump when the index's tables change: an index of another version is rebuilt.
INDEX_VERSION = 5
#: Stamp of a folder without a manifest (no real file has size -1).
MISSING_STAMP = (0, 0, -1)

Stamp = tuple[int, int, int]


def stamp(st: os.stat_result) -> Stamp:
    """What identifies one manifest version: mtime, inode and size.

    Every write is a rename of a new file, so the inode changes even when two writes land
    within one tick of the filesystem's clock (where mtime alone could repeat).
    """
    return (st.st_mtime_ns, st.st_ino, st.st_size)


def scan_manifests(experiments_dir: str) -> dict[str, Stamp]:
    """Manifest stamp of every experiment folder (MISSING_STAMP: a folder without one).

    One ``stat`` per experiment, relative to an open directory fd (shorter path walks): this
    is what lets a hand-edited or truncated manifest show up in the next listing.
    """
    on_disk: dict[str, Stamp] = {}
    try:
        dir_fd = os.open(experiments_dir, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return on_disk
    try:
        names = [n for n in os.listdir(dir_fd) if n[0] != "."]
        stat = os.stat
        suffix = "/" + MANIFEST
        for name in names:
            try:
                on_disk[name] = stamp(stat(name + suffix, dir_fd=dir_fd))
            except FileNotFoundError:
                if os.path.isdir(os.path.join(experiments_dir, name)):
                    on_disk[name] = MISSING_STAMP
            except NotADirectoryError:
                continue
    finally:
        os.close(dir_fd)
    return on_disk


def fingerprint(on_disk: dict[str, Stamp]) -> str:
    """One short text that changes whenever a folder or a manifest version changes.

    Names go through crc32; the stamps (ints only, so Python's hash of them is the same in
    every process, unlike a string's) through one C-level tuple hash. Both avoid formatting
    10,000 entries as text on every listing, which cost as much as the stat calls.
    """
    names = zlib.crc32("\0".join(on_disk).encode())
    stamps = hash(tuple(on_disk.values())) & 0xFFFF_FFFF_FFFF_FFFF
    return f"{len(on_disk)}:{names:x}:{stamps:x}"


def render_key(kind: str) -> str:
    """The index's meta key under which one kind of rendered listing is kept."""
    return f"render:{kind}"


def cached_listing(home: str, kind: str) -> tuple[str | None, dict[str, Stamp] | None]:
    """The listing rendered for the manifests as they are now (or None: then ask the store),
    and the scan it was checked against, which the store can reuse instead of scanning again.

    Read-only and best effort: a missing, busy, damaged or other-version index is simply a
    miss, and the store (which repairs and refreshes the index) takes over.
    """
    index = os.path.join(home, INDEX_FILE)
    if not os.path.exists(index):
        return None, None
    on_disk = scan_manifests(os.path.join(home, "experiments"))
    try:
        # mode=rw: never create a file here (only the store creates the index, privately)
        db = sqlite3.connect(f"file:{quote(index)}?mode=rw", uri=True, timeout=0.5)
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:
                return None, on_disk
            row = db.execute("SELECT value FROM meta WHERE key = ?", (render_key(kind),)).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None, on_disk
    if row is None:
        return None, on_disk
    stored, _, text = str(row[0]).partition("\n")
    return (text if stored == fingerprint(on_disk) else None), on_disk
