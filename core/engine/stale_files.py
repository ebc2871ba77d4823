"""Remove what crashed writers left behind: staging folders and temporary files.

Every atomic write in the project goes through a temporary name (a store's
``.staging-<id>`` folder, ``.<name>.<pid>.<…>.tmp`` files, the package cache's
``.pack-<pid>-<hex>.tar.gz.tmp``, ``nemorun-pack-*`` folders in the system temp dir). A
process killed mid-write (SIGKILL, OOM, power loss) leaves them there forever. The engine
sweeps them at the next launch.

Only our own names are touched, only once they are older than :data:`STALE_SECONDS` (no
live writer takes that long), never through a symlink, and only inside the root given.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

#: Age after which a temporary name is certainly abandoned.
STALE_SECONDS = 3600.0
#: ``atomic_write`` (core.fsutil), the supervisor's write_json, the archive index.
_TMP_FILE = re.compile(r"^\.[^/]+\.\d+\.[0-9a-f.]+\.tmp$")
_PACK_TMP = re.compile(r"^\.pack-\d+-[0-9a-f]+\.tar\.gz\.tmp$")
_STORE_DIRS = re.compile(r"^\.(staging|deleting)-[^/]+$")
_SYSTEM_TMP_DIR = re.compile(r"^nemorun-pack-[A-Za-z0-9_]+$")


def _old(entry: os.DirEntry[str], cutoff: float) -> bool:
    try:
        return entry.stat(follow_symlinks=False).st_mtime < cutoff
    except OSError:
        return False


def _remove(entry: os.DirEntry[str]) -> bool:
    """Remove a regular file or a real directory (never what a symlink points to)."""
    try:
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            shutil.rmtree(entry.path)
        elif stat.S_ISREG(mode):
            os.unlink(entry.path)
        else:
            return False
    except OSError:
        return False
    return True


def _sweep_dir(
    folder: Path, patterns: tuple[re.Pattern[str], ...], cutoff: float, *, uid: int | None = None
) -> list[str]:
    removed: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not any(p.match(entry.name) for p in patterns) or not _old(entry, cutoff):
            continue
        if uid is not None:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
            except OSError:
                continue
        if _remove(entry):
            removed.append(entry.path)
    return removed


def sweep_home(home: Path, *, max_age: float = STALE_SECONDS) -> list[str]:
    """Sweep a store home's own temporary names; returns the paths removed."""
    cutoff = time.time() - max_age
    removed = _sweep_dir(home / "experiments", (_STORE_DIRS, _TMP_FILE), cutoff)
    removed += _sweep_dir(home, (_TMP_FILE,), cutoff)
    packages = home / "packages"
    removed += _sweep_dir(packages, (_PACK_TMP, _TMP_FILE), cutoff)
    if packages.is_dir():
        for child in (packages / "index",):
            removed += _sweep_dir(child, (_TMP_FILE,), cutoff)
    return removed


def sweep_experiment(exp_dir: Path, *, max_age: float = STALE_SECONDS) -> list[str]:
    """Temporary files left in one experiment's folder and its jobs' folders."""
    cutoff = time.time() - max_age
    removed = _sweep_dir(exp_dir, (_TMP_FILE,), cutoff)
    try:
        jobs = [e for e in os.scandir(exp_dir / "jobs") if e.is_dir(follow_symlinks=False)]
    except OSError:
        return removed
    for job in jobs:
        removed += _sweep_dir(Path(job.path), (_TMP_FILE,), cutoff)
    return removed


def sweep_system_tmp(*, max_age: float = STALE_SECONDS) -> list[str]:
    """Packaging folders (``nemorun-pack-*``) of this user in the system temp dir."""
    cutoff = time.time() - max_age
    return _sweep_dir(Path(tempfile.gettempdir()), (_SYSTEM_TMP_DIR,), cutoff, uid=os.getuid())


_last_sweep: dict[str, float] = {}
#: A process sweeps one home at most this often (a TUI launches many times).
SWEEP_EVERY_SECONDS = 600.0


def sweep_before_launch(home: Path) -> list[str]:
    """What the engine calls before recording a launch; cheap (three folders), throttled,
    and never raises (cleaning up must not stop a launch)."""
    key = str(home)
    now = time.monotonic()
    if now - _last_sweep.get(key, -SWEEP_EVERY_SECONDS) < SWEEP_EVERY_SECONDS:
        return []
    _last_sweep[key] = now
    try:
        return sweep_home(home) + sweep_system_tmp()
    except Exception:
        return []


_swept_experiments: set[str] = set()


def sweep_experiment_once(exp_dir: Path) -> list[str]:
    """:func:`sweep_experiment`, once per process per experiment (the monitor calls it for
    each live experiment it polls); never raises."""
    key = str(exp_dir)
    if key in _swept_experiments:
        return []
    _swept_experiments.add(key)
    try:
        return sweep_experiment(exp_dir)
    except Exception:
        return []
