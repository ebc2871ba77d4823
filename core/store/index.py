"""The SQLite index: a cache of one row per experiment, kept exact by writers, checked cheaply.

Light to import on purpose (``os``, ``sqlite3``, ``zlib``, nothing of the store's records):
``ls`` answers from here without importing the store when nothing changed (see
:func:`cached_listing`).

How the index stays true without stat-ing every manifest on every listing:

* Writers keep it exact: every create and update writes its row in the same breath
  as the manifest (under the experiment's lock).
* ``experiments/`` itself is watched through one ``stat`` (mtime, inode, link count): any
  folder created, removed or renamed by hand changes it, and the next listing reconciles
  every folder. Creates made through the store run under a store-wide lock and
  carry the token forward, so they do not cost a full pass.
* Hand edits *inside* a folder (a manifest rewritten, truncated, replaced) do not touch
  ``experiments/``. Each listing verifies a rotating slice of :data:`VERIFY_SLICE`
  manifests, so such an edit shows within ``n / VERIFY_SLICE`` listings (at once in a store
  of up to that many); ``rebuild-index`` and :meth:`Index.sync` with ``full=True`` check
  every manifest.

One table, :data:`COLUMNS`, generates the schema, the statements and the rows.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

MANIFEST = "experiment.json"
INDEX_FILE = "index.sqlite"
#: Bump when the index's tables change: an index of another version is rebuilt.
INDEX_VERSION = 8
#: Manifests verified per listing (see the module docstring): ~2-4 ms of stat calls.
VERIFY_SLICE = 2000
#: Version token of a folder without a manifest.
MISSING = "missing"
#: Stamp of a folder without a manifest (no real file has size -1).
MISSING_STAMP = (0, 0, -1)

Stamp = tuple[int, int, int]
Row = tuple[Any, ...]


def _join(items: Any) -> str:
    """Lists in one column, separated by the ASCII unit separator (fast to split)."""
    return "\x1f".join(items)


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(text.split("\x1f")) if text else ()


#: name, SQL type ("LIST": text joined by \x1f), value from (record, version), default.
#: The summary columns come first, in :class:`~core.store.records.ExperimentSummary`'s order.
COLUMNS: tuple[tuple[str, str, Callable[[Any, str], Any], Any], ...] = (
    ("id", "TEXT PRIMARY KEY", lambda r, v: r.id, None),
    ("title", "TEXT", lambda r, v: r.title, ""),
    ("created_at", "REAL", lambda r, v: r.created_at, 0.0),
    ("state", "TEXT", lambda r, v: r.state.value, "DAMAGED"),
    ("parent", "TEXT", lambda r, v: r.parent, None),
    ("tags", "LIST", lambda r, v: _join(r.tags), ""),
    ("backends", "LIST", lambda r, v: _join(r.backends), ""),
    ("n_jobs", "INTEGER", lambda r, v: len(r.jobs), 0),
    ("ended_at", "REAL", lambda r, v: r.ended_at, None),
    ("damaged", "TEXT", lambda r, v: None, None),
    ("executors", "LIST", lambda r, v: _join(r.executors), ""),
    ("archived", "INTEGER", lambda r, v: int(r.archived), 0),
    ("note", "TEXT", lambda r, v: r.note, ""),
    ("stalled", "INTEGER", lambda r, v: r.stalled_jobs, 0),
    ("version", "TEXT", lambda r, v: v, MISSING),
)
_NAMES = [c[0] for c in COLUMNS]
SUMMARY_COLUMNS = _NAMES[: _NAMES.index("version")]
_LIST_AT = tuple(i for i, c in enumerate(COLUMNS) if c[1] == "LIST")
_ARCHIVED_AT = _NAMES.index("archived")
_SCHEMA = [
    "CREATE TABLE experiments ("
    + ", ".join(f"{n} {'TEXT' if t == 'LIST' else t}" for n, t, _, _ in COLUMNS)
    + ")",
    "CREATE INDEX by_title ON experiments(title, created_at)",
    "CREATE INDEX by_created ON experiments(created_at, id)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
    "INSERT INTO meta VALUES ('rows_gen', '0')",
    # Every change of a row bumps the generation the rendered listings are keyed by: no
    # writer can forget it.
    *(
        f"CREATE TRIGGER gen_{what.lower()} AFTER {what} ON experiments BEGIN"
        " UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'rows_gen'; END"
        for what in ("INSERT", "UPDATE", "DELETE")
    ),
]
_OBJECTS = {
    "experiments",
    "by_title",
    "by_created",
    "meta",
    "gen_insert",
    "gen_update",
    "gen_delete",
}
INSERT = (
    f"INSERT OR REPLACE INTO experiments ({', '.join(_NAMES)})"
    f" VALUES ({', '.join('?' * len(_NAMES))})"
)
SELECT_SUMMARY = f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM experiments"


def row_of(record: Any, version: str) -> Row:
    """The index row of a manifest read as ``record`` at ``version``."""
    return tuple(get(record, version) for _, _, get, _ in COLUMNS)


def damaged_row(exp_id: str, reason: str, created_at: float, version: str) -> Row:
    """The row of an experiment whose manifest cannot be read: listed, with its reason."""
    values = {"id": exp_id, "title": exp_id, "created_at": created_at, "damaged": reason}
    values["version"] = version
    return tuple(values.get(name, default) for name, _, _, default in COLUMNS)


def summary_values(row: Row) -> list[Any]:
    """A summary row's values with the list columns split (the summary's field order)."""
    values = list(row)
    for i in _LIST_AT:
        values[i] = _split(values[i])
    values[_ARCHIVED_AT] = bool(values[_ARCHIVED_AT])
    return values


# -- what is on disk -----------------------------------------------------------------------
def stamp(st: os.stat_result) -> Stamp:
    """What identifies one manifest version: mtime, inode and size.

    Every write is a rename of a new file, so the inode changes even when two writes land
    within one tick of the filesystem's clock (where mtime alone could repeat).
    """
    return (st.st_mtime_ns, st.st_ino, st.st_size)


def version_of(s: Stamp) -> str:
    """The stamp as stored in the ``version`` column."""
    return MISSING if s == MISSING_STAMP else f"{s[0]}:{s[1]}:{s[2]}"


def dir_token(experiments_dir: str) -> str:
    """One ``stat`` of ``experiments/``: changes when a folder is created, removed or renamed.

    The link count changes with every folder created or removed even within one tick of
    the filesystem clock, where the mtime may not (ext4 stops counting past 65,000
    subfolders; the mtime alone then serves, to the clock's resolution).
    """
    try:
        st = os.stat(experiments_dir)
    except (FileNotFoundError, NotADirectoryError):
        return "none"
    return f"{st.st_mtime_ns}:{st.st_ino}:{st.st_nlink}"


def manifest_version(experiments_dir: str, exp_id: str, dir_fd: int | None = None) -> str:
    """The version token of one manifest (``lstat``: a symlink is never followed)."""
    try:
        if dir_fd is not None:
            st = os.stat(f"{exp_id}/{MANIFEST}", dir_fd=dir_fd, follow_symlinks=False)
        else:
            st = os.lstat(os.path.join(experiments_dir, exp_id, MANIFEST))
    except (FileNotFoundError, NotADirectoryError):
        return MISSING
    except OSError as exc:  # EACCES, ELOOP, ENAMETOOLONG…: still a version, a damaged one
        return f"error:{exc.errno}"
    return version_of(stamp(st))


def scan_manifests(experiments_dir: str) -> dict[str, str]:
    """Manifest version of every experiment folder (one ``lstat`` each)."""
    on_disk: dict[str, str] = {}
    try:
        dir_fd = os.open(experiments_dir, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return on_disk
    try:
        with os.scandir(dir_fd) as entries:
            folders = []
            for e in entries:
                if e.name[0] == ".":
                    continue
                if e.is_symlink():  # listed, as damaged: the store never follows it
                    on_disk[e.name] = "symlink"
                elif e.is_dir(follow_symlinks=False):
                    folders.append(e.name)
        for name in folders:
            on_disk[name] = manifest_version(experiments_dir, name, dir_fd)
    finally:
        os.close(dir_fd)
    return on_disk


# -- the database --------------------------------------------------------------------------
@contextlib.contextmanager
def transaction(db: sqlite3.Connection, *, write: bool = True) -> Iterator[None]:
    """One explicit transaction (the connection is in autocommit mode). ``write`` takes the
    write lock at once, so what is read inside is still true when the writes commit."""
    db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def schema_ok(db: sqlite3.Connection) -> bool:
    """The right version number *and* the right tables (a number alone proves nothing)."""
    if db.execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:
        return False
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    if not names >= _OBJECTS:
        return False
    columns = [r[1] for r in db.execute("PRAGMA table_info(experiments)")]
    meta = [r[1] for r in db.execute("PRAGMA table_info(meta)")]
    return columns == _NAMES and meta == ["key", "value"]


def create_schema(db: sqlite3.Connection) -> None:
    """Drop whatever is there and create the index's tables (inside the caller's write)."""
    objects = list(
        db.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
    )
    for kind, name in objects:
        if kind in ("table", "view"):
            db.execute(f'DROP {kind.upper()} IF EXISTS "{name}"')
    for statement in _SCHEMA:
        db.execute(statement)
    db.execute(f"PRAGMA user_version={INDEX_VERSION}")


def _set_wal(db: sqlite3.Connection, patience: float = 10.0) -> None:
    """Switch a new index to WAL (persistent: once per file), waiting out other openers.

    Changing the journal mode can fail at once with "database is locked" while another
    process sets the same file up; sqlite's busy timeout does not cover it, so retry here.
    """
    deadline = time.monotonic() + patience
    while db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _busy(exc: sqlite3.Error) -> bool:
    """Another process holds the file: never a reason to throw the index away."""
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc).lower()


RowFor = Callable[[str, str], Row]


class Index:
    """The index of one store; ``row_for(exp_id, version)`` reads a manifest into a row.

    When the index cannot be opened for writing (a read-only store), it lives in memory
    for this process, filled from the file when that can be read, and is fully verified.
    """

    def __init__(self, home: str, row_for: RowFor, *, prepare_home: Callable[[], None]) -> None:
        self.home = home
        self.experiments_dir = os.path.join(home, "experiments")
        self.path = os.path.join(home, INDEX_FILE)
        self._row_for = row_for
        self._prepare_home = prepare_home
        #: One connection per thread (sqlite connections belong to the thread that opened
        #: them): the app's engine thread, or a script's main thread and the shared loop.
        self._local = threading.local()
        self.in_memory = False
        #: Index writes this process missed (see :meth:`mark_stale`).
        self.missed = 0

    # -- opening and repair ----------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        # A sqlite connection belongs to the thread that opened it. If that thread is gone
        # (the app replaced a dead engine thread), the old one is dropped, not closed.
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._open()
        return db

    def _open(self) -> sqlite3.Connection:
        try:
            self._prepare_home()
            try:
                return self._open_file()
            except sqlite3.Error as exc:
                if _busy(exc) or not _damaged(exc):
                    raise
                # A damaged cache ("not a database", "malformed") is thrown away and
                # rebuilt; it holds nothing of its own.
                self.discard_file()
                return self._open_file()
        except (OSError, sqlite3.Error) as exc:
            if isinstance(exc, sqlite3.Error) and _busy(exc):
                raise
            return self._open_memory()

    def _open_file(self) -> sqlite3.Connection:
        fresh = not os.path.exists(self.path)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            if fresh:
                os.chmod(self.path, 0o600)
            _set_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
            if not schema_ok(db):
                # Several processes may open a new index at once: create the schema in one
                # write transaction, checking again inside it, so exactly one of them does.
                with transaction(db):
                    if not schema_ok(db):
                        create_schema(db)
        except BaseException:
            db.close()
            raise
        return db

    def _open_memory(self) -> sqlite3.Connection:
        """A private index for a store this process cannot write (see the class)."""
        db = sqlite3.connect(":memory:", isolation_level=None)
        with transaction(db):
            create_schema(db)
        with contextlib.suppress(sqlite3.Error, OSError):
            source = sqlite3.connect(f"file:{quote(self.path)}?mode=ro&immutable=1", uri=True)
            try:
                if schema_ok(source):
                    rows = source.execute(f"SELECT {', '.join(_NAMES)} FROM experiments").fetchall()
                    with transaction(db):
                        db.executemany(INSERT, rows)
            finally:
                source.close()
        self.in_memory = True
        return db

    def discard_file(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")

    def close(self) -> None:
        """Close this thread's connection (others close with their thread's objects)."""
        db = getattr(self._local, "db", None)
        self._local.db = None
        if db is not None:
            db.close()

    def forget(self) -> None:
        """Drop every connection without closing them (a thread that owned one is gone)."""
        self._local = threading.local()

    def guarded(self, action: Callable[[], Any]) -> Any:
        """Run ``action``; an index that fails in a way its open did not catch is thrown
        away and rebuilt, and if even that fails this process uses one in memory."""
        try:
            return action()
        except sqlite3.Error as exc:
            if _busy(exc) or self.in_memory:
                raise
        self.discard_file()
        try:
            return action()
        except sqlite3.Error as exc:
            if _busy(exc):
                raise
        self.close()
        self._local.db = self._open_memory()
        return action()

    # -- writers keep it exact -------------------------------------------------------------
    def put(self, row: Row) -> bool:
        """Write one row; False when the index could not be written (then it is marked)."""
        try:
            self.db.execute(INSERT, row)
            return True
        except sqlite3.Error:
            self.mark_stale()
            return False

    def drop(self, exp_id: str) -> bool:
        """Remove one row (its folder was removed); False when the index missed it."""
        try:
            self.db.execute("DELETE FROM experiments WHERE id = ?", (exp_id,))
            return True
        except sqlite3.Error:
            self.mark_stale()
            return False

    def mark_stale(self) -> None:
        """A write the index missed: touch ``experiments/`` so the next listing reconciles."""
        self.missed += 1
        with contextlib.suppress(OSError):
            os.utime(self.experiments_dir)

    def carry_token(self, before: str, after: str) -> None:
        """After a create made under the store lock: if the index was current at
        ``before``, it is current at ``after`` (its own row is written already)."""
        with contextlib.suppress(sqlite3.Error):
            db = self.db
            with transaction(db):
                if _meta(db, "dir_token") == before:
                    _set_meta(db, "dir_token", after)

    # -- readers: the cheap check ----------------------------------------------------------
    def sync(self, *, full: bool = False, verify: bool = True) -> None:
        """Make the rows true to disk (see the module docstring for how far).

        ``verify=False`` checks only which folders exist (enough to look ids and titles
        up, which never change after creation).
        """
        db = self.db
        token = dir_token(self.experiments_dir)
        if full or _meta(db, "dir_token") != token:
            self._reconcile_all(token)
            return
        if verify:
            stale, cursor = verify_slice(db, self.experiments_dir)
            if stale:
                self._replace(stale)
            with contextlib.suppress(sqlite3.Error):
                _set_meta(db, "cursor", cursor)

    def _reconcile_all(self, token: str) -> None:
        """Stat every manifest and re-read the changed ones; ``token`` was taken before."""
        db = self.db
        on_disk = scan_manifests(self.experiments_dir)
        # Compare and write in one write transaction: rows another process committed in
        # between are compared too, and the rows and their token land together.
        with transaction(db):
            known = dict(db.execute("SELECT id, version FROM experiments"))
            stale = [i for i, v in on_disk.items() if known.get(i) != v]
            gone = [i for i in known if i not in on_disk]
            rows = [self._row_for(i, on_disk[i]) for i in stale]
            db.executemany("DELETE FROM experiments WHERE id = ?", [(i,) for i in gone])
            db.executemany(INSERT, rows)
            _set_meta(db, "dir_token", token)

    def _replace(self, stale: dict[str, str]) -> None:
        rows = [self._row_for(i, v) for i, v in stale.items()]
        with transaction(self.db):
            self.db.executemany(INSERT, rows)

    def rebuild(self) -> None:
        """Drop every table and rebuild from the manifests (repairs any damage)."""
        if self.in_memory:
            self.sync(full=True)
            return
        try:
            with transaction(self.db):
                create_schema(self.db)
        except sqlite3.Error as exc:
            if _busy(exc):
                raise
            self.discard_file()
        self.sync(full=True)

    # -- queries ---------------------------------------------------------------------------
    def summary_rows(self, where: str = "", params: tuple[Any, ...] = ()) -> list[Row]:
        return self.db.execute(f"{SELECT_SUMMARY} {where}", params).fetchall()

    def rows_gen(self) -> str | None:
        return _meta(self.db, "rows_gen")

    def rendered(self, kind: str, render: Callable[[list[Row]], str]) -> str:
        """``render(rows newest first)``, kept in the index under the rows' generation."""
        db = self.db
        key = render_key(kind)
        with transaction(db, write=False):
            gen = _meta(db, "rows_gen")
            kept = _meta(db, key)
            if kept is not None and gen is not None:
                kept_gen, _, text = kept.partition("\n")
                if kept_gen == gen:
                    return text
            rows = db.execute(f"{SELECT_SUMMARY} ORDER BY created_at DESC, id DESC").fetchall()
        text = render(rows)
        with contextlib.suppress(sqlite3.Error), transaction(db):
            if _meta(db, "rows_gen") == gen:  # rows unchanged since they were read
                _set_meta(db, key, f"{gen}\n{text}")
        return text


def _damaged(exc: sqlite3.Error) -> bool:
    """The file is not a usable index (as opposed to busy, read-only or unreachable)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return isinstance(exc, sqlite3.DatabaseError)
    text = str(exc).lower()
    return any(k in text for k in ("no such", "malformed", "not a database", "no column"))


def verify_slice(
    db: sqlite3.Connection, experiments_dir: str, size: int | None = None
) -> tuple[dict[str, str], str]:
    """Check the next ``size`` rows after the stored cursor against their manifests.

    Returns the ids whose manifest changed (with the version now on disk) and the next
    cursor. Read-only: the caller stores the cursor when it can write.
    """
    size = VERIFY_SLICE if size is None else size
    cursor = _meta(db, "cursor") or ""
    rows = db.execute(
        "SELECT id, version FROM experiments WHERE id > ? ORDER BY id LIMIT ?", (cursor, size)
    ).fetchall()
    if len(rows) < size:  # wrap around to the start, stopping short of where this began
        rows += db.execute(
            "SELECT id, version FROM experiments WHERE id <= ? ORDER BY id LIMIT ?",
            (cursor, size - len(rows)),
        ).fetchall()
    stale: dict[str, str] = {}
    if not rows:
        return stale, ""
    try:
        dir_fd = os.open(experiments_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return {i: MISSING for i, _ in rows}, ""
    try:
        for exp_id, version in rows:
            now = manifest_version(experiments_dir, exp_id, dir_fd)
            if now != version:
                stale[exp_id] = now
    finally:
        os.close(dir_fd)
    return stale, rows[-1][0]


def render_key(kind: str) -> str:
    """The index's meta key under which one kind of rendered listing is kept."""
    return f"render:{kind}"


def cached_listing(home: str, kind: str) -> str | None:
    """The listing rendered for the store as it is now, or None (then ask the store).

    Read-only and best effort, the same checks as :meth:`Index.sync` (the folder token
    and a verified slice): a missing, busy, damaged or other-version index, or any change
    found, is simply a miss, and the store (which repairs and refreshes the index) takes
    over.
    """
    index = os.path.join(home, INDEX_FILE)
    if not os.path.exists(index):
        return None
    experiments_dir = os.path.join(home, "experiments")
    try:
        # mode=rw: never create a file here (only the store creates the index, privately)
        db = sqlite3.connect(f"file:{quote(index)}?mode=rw", uri=True, timeout=0.5)
        db.isolation_level = None
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:
                return None
            token = dir_token(experiments_dir)
            with transaction(db, write=False):
                if _meta(db, "dir_token") != token:
                    return None
                stale, cursor = verify_slice(db, experiments_dir)
                if stale:
                    return None
                gen = _meta(db, "rows_gen")
                kept = _meta(db, render_key(kind))
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA busy_timeout = 0")  # a busy writer never holds `ls` up
                _set_meta(db, "cursor", cursor)
        finally:
            db.close()
    except sqlite3.Error:
        return None
    if kept is None or gen is None:
        return None
    kept_gen, _, text = kept.partition("\n")
    return text if kept_gen == gen else None
