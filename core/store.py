"""The file-backed experiment store: the source of truth for what ran and how it ended.

Layout (readable without nemorun-tui)::

    <home>/experiments/<exp-id>/experiment.json        manifest (schema_version, jobs, states)
    <home>/experiments/<exp-id>/events.jsonl           append-only state transitions
    <home>/experiments/<exp-id>/jobs/<job>/task.json   serialized task
    <home>/experiments/<exp-id>/jobs/<job>/executor.json
    <home>/experiments/<exp-id>/jobs/<job>/logs/…      local logs or fetched copies
    <home>/index.sqlite                                cache for fast listing; rebuildable

An experiment folder appears whole or not at all (built under a temp name, then renamed).
Manifest updates are read-modify-write under a per-experiment ``flock`` and land with an
atomic rename, so concurrent CLIs, apps and monitors never tear a file. The index is only a
cache: every listing checks each manifest's version (mtime, inode, size) and re-reads the
ones that changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.fsutil import append_line, atomic_write, ensure_private_dir, file_lock, fsync_dir
from core.listing_cache import (
    INDEX_FILE,
    INDEX_VERSION,
    MANIFEST,
    MISSING_STAMP,
    Stamp,
    fingerprint,
    render_key,
    scan_manifests,
)
from core.listing_cache import stamp as _stamp
from core.protocol import Handle
from core.states import JobState, StatusReport, aggregate_state

SCHEMA_VERSION = 1
EVENTS = "events.jsonl"
LOCK = ".lock"


class StoreError(Exception):
    """A store problem the user can act on; ``str()`` is one line."""


class ExperimentNotFound(StoreError):
    """No experiment matches the given id, prefix or title."""


class AmbiguousExperiment(StoreError):
    """A prefix matched several experiments."""


class DamagedManifestError(StoreError):
    """A manifest exists but cannot be read; listed as damaged, never fatal to a listing."""

    def __init__(self, exp_id: str, reason: str) -> None:
        super().__init__(f"experiment {exp_id} is damaged: {reason}")
        self.exp_id = exp_id
        self.reason = reason


@dataclass
class JobRecord:
    """One job of an experiment as the store knows it."""

    name: str
    kind: str
    backend: str
    profile: str | None = None
    handle: Handle | None = None
    state: JobState = JobState.UNSUBMITTED
    source: str | None = None
    observed_at: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    restarts: int = 0
    dependencies: list[str] = field(default_factory=list)
    submitted_at: float | None = None
    ended_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "backend": self.backend,
            "profile": self.profile,
            "handle": self.handle.to_dict() if self.handle else None,
            "state": self.state.value,
            "source": self.source,
            "observed_at": self.observed_at,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "restarts": self.restarts,
            "dependencies": list(self.dependencies),
            "submitted_at": self.submitted_at,
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRecord:
        handle = data.get("handle")
        return cls(
            name=str(data["name"]),
            kind=str(data.get("kind", "")),
            backend=str(data["backend"]),
            profile=data.get("profile"),
            handle=Handle.from_dict(handle) if handle else None,
            state=JobState(data.get("state", "UNSUBMITTED")),
            source=data.get("source"),
            observed_at=data.get("observed_at"),
            exit_code=data.get("exit_code"),
            reason=data.get("reason"),
            restarts=int(data.get("restarts") or 0),
            dependencies=list(data.get("dependencies") or []),
            submitted_at=data.get("submitted_at"),
            ended_at=data.get("ended_at"),
        )

    @property
    def duration(self) -> float | None:
        """Seconds from submission to end (or to now while live)."""
        if self.submitted_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else time.time()
        return max(0.0, end - self.submitted_at)


@dataclass
class ExperimentRecord:
    """The manifest of one experiment."""

    id: str
    title: str
    created_at: float
    jobs: list[JobRecord] = field(default_factory=list)
    parent: str | None = None
    tags: list[str] = field(default_factory=list)
    workspace: str | None = None
    recipe: str | None = None
    overrides: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def job(self, name: str) -> JobRecord:
        for job in self.jobs:
            if job.name == name:
                return job
        known = ", ".join(j.name for j in self.jobs) or "none"
        raise StoreError(f"experiment {self.id} has no job `{name}` (jobs: {known})")

    @property
    def state(self) -> JobState:
        return aggregate_state([j.state for j in self.jobs])

    @property
    def backends(self) -> list[str]:
        return sorted({j.backend for j in self.jobs})

    @property
    def executors(self) -> list[str]:
        """Where the jobs ran, as ``backend/profile`` (just the backend when the profile is
        unnamed or named after it): what a user picked, e.g. ``slurm/ci`` vs ``slurm/big``."""
        return sorted({executor_label(j.backend, j.profile) for j in self.jobs})

    @property
    def ended_at(self) -> float | None:
        if not self.jobs or not self.state.is_terminal:
            return None
        ends = [j.ended_at for j in self.jobs if j.ended_at is not None]
        return max(ends) if ends else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "id": self.id,
            "title": self.title,
            "created_at": self.created_at,
            "parent": self.parent,
            "tags": list(self.tags),
            "workspace": self.workspace,
            "recipe": self.recipe,
            "overrides": list(self.overrides),
            "jobs": [j.to_dict() for j in self.jobs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentRecord:
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise ValueError("missing schema_version")
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {version} is newer than this nemorun-tui ({SCHEMA_VERSION})"
            )
        return cls(
            id=str(data["id"]),
            title=str(data["title"]),
            created_at=float(data["created_at"]),
            jobs=[JobRecord.from_dict(j) for j in data.get("jobs") or []],
            parent=data.get("parent"),
            tags=list(data.get("tags") or []),
            workspace=data.get("workspace"),
            recipe=data.get("recipe"),
            overrides=list(data.get("overrides") or []),
            schema_version=version,
        )


@dataclass(slots=True)
class ExperimentSummary:
    """One row of a listing, served from the index."""

    id: str
    title: str
    created_at: float
    state: str
    parent: str | None = None
    tags: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    n_jobs: int = 0
    ended_at: float | None = None
    damaged: str | None = None
    executors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "state": self.state,
            "parent": self.parent,
            "tags": list(self.tags),
            "backends": list(self.backends),
            "executors": list(self.executors),
            "jobs": self.n_jobs,
            "damaged": self.damaged,
        }


@dataclass(frozen=True)
class StateChange:
    """A transition the store recorded (what the monitor publishes to the app)."""

    exp_id: str
    job: str
    old: JobState
    new: JobState
    report: StatusReport


_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(title: str) -> str:
    """A short, filesystem-safe form of a title used as the id's readable prefix."""
    slug = _SLUG.sub("-", title.lower()).strip("-")[:40].strip("-")
    return slug or "exp"


class Store:
    """Experiments under ``home``; safe for several processes at once."""

    def __init__(self, home: Path | str) -> None:
        self.home = Path(home).expanduser()
        self.experiments_dir = self.home / "experiments"
        self._db: sqlite3.Connection | None = None

    # -- paths -------------------------------------------------------------------------
    def exp_dir(self, exp_id: str) -> Path:
        if "/" in exp_id or exp_id in ("", ".", "..") or exp_id.startswith("."):
            raise ExperimentNotFound(f"invalid experiment id `{exp_id}`")
        return self.experiments_dir / exp_id

    def job_dir(self, exp_id: str, job: str) -> Path:
        return self.exp_dir(exp_id) / "jobs" / job

    def _ensure_home(self) -> None:
        ensure_private_dir(self.experiments_dir)
        os.chmod(self.home, 0o700)

    # -- create / read / update ----------------------------------------------------------
    def new_id(self, title: str) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
        return f"{slugify(title)}-{stamp}-{os.urandom(2).hex()}"

    def create(
        self,
        record: ExperimentRecord,
        job_files: Mapping[str, Mapping[str, bytes | str]] | None = None,
    ) -> ExperimentRecord:
        """Write a new experiment whole (manifest, job files, first event) or not at all."""
        self._ensure_home()
        final = self.exp_dir(record.id)
        if final.exists():
            raise StoreError(f"experiment {record.id} already exists")
        staging = self.experiments_dir / f".staging-{record.id}"
        ensure_private_dir(staging)
        try:
            for job in record.jobs:
                jdir = ensure_private_dir(staging / "jobs" / job.name)
                ensure_private_dir(jdir / "logs")
                for name, data in (job_files or {}).get(job.name, {}).items():
                    atomic_write(jdir / name, data)
            atomic_write(staging / MANIFEST, _dump(record.to_dict()))
            append_line(
                staging / EVENTS,
                json.dumps({"t": record.created_at, "kind": "created", "parent": record.parent}),
            )
            os.rename(staging, final)
            fsync_dir(self.experiments_dir)  # the rename itself survives a power loss
        except BaseException:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._index_record(record, self._manifest_version(record.id))
        return record

    def load(self, exp_id: str) -> ExperimentRecord:
        path = self.exp_dir(exp_id) / MANIFEST
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            if self.exp_dir(exp_id).is_dir():
                raise DamagedManifestError(exp_id, "experiment.json is missing") from None
            raise ExperimentNotFound(f"no experiment `{exp_id}`") from None
        return _parse_manifest(exp_id, raw)

    @contextlib.contextmanager
    def locked(self, exp_id: str) -> Iterator[None]:
        directory = self.exp_dir(exp_id)
        if not directory.is_dir():
            raise ExperimentNotFound(f"no experiment `{exp_id}`")
        with file_lock(directory / LOCK):
            yield

    def update(
        self, exp_id: str, mutate: Callable[[ExperimentRecord], bool | None]
    ) -> ExperimentRecord:
        """Read-modify-write the manifest under the experiment's lock.

        ``mutate`` changes the record in place; returning ``False`` means "nothing changed"
        and skips the write.
        """
        with self.locked(exp_id):
            record = self.load(exp_id)
            if mutate(record) is False:
                return record
            atomic_write(self.exp_dir(exp_id) / MANIFEST, _dump(record.to_dict()))
            # Indexed under the lock: rows of one experiment land in the order its manifests
            # were written, each with the stamp of the manifest it describes, so a slower
            # writer can never file older content under the newest stamp.
            self._index_record(record, self._manifest_version(exp_id))
        return record

    def append_event(self, exp_id: str, event: Mapping[str, Any]) -> None:
        payload = {"t": time.time(), **event}
        append_line(self.exp_dir(exp_id) / EVENTS, json.dumps(payload, sort_keys=True))

    def events(self, exp_id: str) -> list[dict[str, Any]]:
        """Events in order; a torn last line (writer killed) is skipped, not fatal."""
        path = self.exp_dir(exp_id) / EVENTS
        out: list[dict[str, Any]] = []
        try:
            text = path.read_text()
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    def record_statuses(
        self, exp_id: str, reports: Mapping[str, StatusReport]
    ) -> list[StateChange]:
        """Apply observed reports; write and log only real changes. Returns the transitions."""
        changes: list[StateChange] = []

        def mutate(record: ExperimentRecord) -> bool:
            dirty = False
            for name, report in reports.items():
                job = record.job(name)
                if job.state.is_terminal:
                    continue  # a finished job never goes back to life
                old = job.state
                before = (job.state, job.reason, job.exit_code, job.restarts)
                after = (report.state, report.reason, report.exit_code, report.restarts)
                job.observed_at = report.observed_at
                job.source = report.source
                if before == after:
                    continue
                dirty = True
                job.state, job.reason = report.state, report.reason
                job.exit_code, job.restarts = report.exit_code, report.restarts
                if report.state.is_terminal:
                    job.ended_at = report.end_time()  # when it ended, not when seen
                if old != report.state:
                    changes.append(StateChange(exp_id, name, old, report.state, report))
            return dirty

        self.update(exp_id, mutate)
        for change in changes:
            self.append_event(
                exp_id,
                {
                    "kind": "state",
                    "job": change.job,
                    "from": change.old.value,
                    "to": change.new.value,
                    "source": change.report.source,
                    "reason": change.report.reason,
                    "exit_code": change.report.exit_code,
                    "observed_at": change.report.observed_at,
                },
            )
        return changes

    def write_job_file(self, exp_id: str, job: str, name: str, data: bytes | str) -> Path:
        path = self.job_dir(exp_id, job) / name
        ensure_private_dir(path.parent)
        atomic_write(path, data)
        return path

    def read_job_file(self, exp_id: str, job: str, name: str) -> bytes:
        return (self.job_dir(exp_id, job) / name).read_bytes()

    def delete(self, exp_id: str) -> None:
        """Remove an experiment folder and its index row."""
        directory = self.exp_dir(exp_id)
        if not directory.is_dir():
            raise ExperimentNotFound(f"no experiment `{exp_id}`")
        trash = self.experiments_dir / f".deleting-{exp_id}"
        os.rename(directory, trash)
        import shutil

        shutil.rmtree(trash, ignore_errors=True)
        db = self._index()
        with db:
            db.execute("DELETE FROM experiments WHERE id = ?", (exp_id,))

    # -- listing -------------------------------------------------------------------------
    def list(self, *, limit: int | None = None) -> list[ExperimentSummary]:
        """Every experiment (or the newest ``limit``), newest first; damaged ones included."""
        self._refresh_index()
        return self._rows(limit)

    def _rows(self, limit: int | None = None) -> list[ExperimentSummary]:
        sql = f"SELECT {_SUMMARY_COLUMNS} FROM experiments ORDER BY created_at DESC, id DESC"
        params: tuple[int, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (limit,)
        return [_summary(r) for r in self._index().execute(sql, params)]

    def rendered_listing(
        self,
        kind: str,
        render: Callable[[list[ExperimentSummary]], str],
        *,
        on_disk: dict[str, Stamp] | None = None,
    ) -> str:
        """``render(self.list())``, served from the index while no manifest has changed.

        The rendered text is a derived cache like the index itself: it is keyed by the
        fingerprint of every manifest version, so any write, hand edit or new experiment
        renders it again. Listing 10,000 experiments then costs one stat per manifest.
        ``on_disk`` is a scan the caller has just made (see :func:`cached_listing`).
        """
        current = self._refresh_index(on_disk)
        key = render_key(kind)
        db = self._index()
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is not None:
            stored_fp, _, text = str(row[0]).partition("\n")
            if stored_fp == current:
                return text
        # The rows and the fingerprint they were reconciled to, from one snapshot: another
        # process's slower refresh may have put older rows back since ours returned, and a
        # rendering of those must not be kept under the current fingerprint.
        with _transaction(db, write=False):
            fp_row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
            rows = self._rows()
        if fp_row is None or fp_row[0] != current:
            return render(self.list())  # reconciled once more, and not kept
        text = render(rows)
        try:
            with db:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, f"{current}\n{text}"))
        except sqlite3.Error:
            pass  # only a cache
        return text

    def summaries(
        self, where: str, params: tuple[Any, ...], *, membership_only: bool = False
    ) -> list[ExperimentSummary]:
        """Rows matching an SQL condition on the index (after reconciling it).

        ``membership_only`` reconciles only which experiments exist (one directory read, no
        per-manifest stat): enough to look ids and titles up, which never change after
        creation. Callers then load the manifest they picked, which reports any damage.
        """
        if membership_only:
            self._refresh_membership()
        else:
            self._refresh_index()
        return self._query(where, params)

    def _query(self, where: str, params: tuple[Any, ...]) -> list[ExperimentSummary]:
        sql = f"SELECT {_SUMMARY_COLUMNS} FROM experiments WHERE {where}"
        return [_summary(r) for r in self._index().execute(sql, params)]

    def resolve(self, ref: str) -> str:
        """An id from an exact id, a unique id prefix, or a title (the latest wins)."""
        ref = ref.strip()
        if not ref:
            raise ExperimentNotFound("empty experiment reference")
        if not ref.startswith(".") and "/" not in ref and (self.experiments_dir / ref).is_dir():
            return ref
        escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        self._refresh_membership()  # once for both lookups: ids and titles never change
        prefixed = self._query("id LIKE ? ESCAPE '\\' ORDER BY id LIMIT 6", (escaped + "%",))
        prefixed = [s for s in prefixed if s.id.startswith(ref)]  # LIKE ignores case
        if len(prefixed) == 1:
            return prefixed[0].id
        titled = self._query("title = ? ORDER BY created_at DESC, id DESC LIMIT 1", (ref,))
        if titled:
            return titled[0].id
        if len(prefixed) > 1:
            shown = ", ".join(s.id for s in prefixed[:5])
            more = " and more" if len(prefixed) > 5 else ""
            raise AmbiguousExperiment(
                f"`{ref}` matches several experiments ({shown}{more}); give more of the id"
            )
        raise ExperimentNotFound(
            f"no experiment matches `{ref}` (by id, id prefix or title); see `nemorun-tui ls`"
        )

    # -- the index (a cache) ---------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        return self.home / INDEX_FILE

    def _index(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        self._ensure_home()
        try:
            db = self._open_index()
        except sqlite3.OperationalError:
            # Busy or locked (another process is setting the index up): never a reason to
            # throw the file away under its other users.
            raise
        except sqlite3.DatabaseError:
            # A damaged cache ("not a database", "malformed") is thrown away and rebuilt; it
            # holds nothing of its own.
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.index_path}{suffix}")
            db = self._open_index()
        self._db = db
        return db

    def _open_index(self) -> sqlite3.Connection:
        fresh = not self.index_path.exists()
        db = sqlite3.connect(self.index_path, timeout=30, isolation_level=None)
        if fresh:
            os.chmod(self.index_path, 0o600)
        _set_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        if db.execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:
            # Several processes may open a new index at once: create the schema in one
            # write transaction, checking again inside it, so exactly one of them does.
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:
                    db.execute("DROP TABLE IF EXISTS experiments")
                    db.execute("DROP TABLE IF EXISTS meta")
                    db.execute(
                        "CREATE TABLE experiments (id TEXT PRIMARY KEY, title TEXT,"
                        " created_at REAL, state TEXT, parent TEXT, tags TEXT, backends TEXT,"
                        " n_jobs INTEGER, ended_at REAL, damaged TEXT, version TEXT,"
                        " executors TEXT)"
                    )
                    db.execute("CREATE INDEX by_title ON experiments(title, created_at)")
                    db.execute("CREATE INDEX by_created ON experiments(created_at, id)")
                    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
                    db.execute(f"PRAGMA user_version={INDEX_VERSION}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _manifest_version(self, exp_id: str) -> str:
        try:
            return _version(_stamp((self.exp_dir(exp_id) / MANIFEST).stat()))
        except FileNotFoundError:
            return MISSING

    def _index_record(self, record: ExperimentRecord, version: str) -> None:
        try:
            db = self._index()
            with db:
                db.execute(
                    "INSERT OR REPLACE INTO experiments VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    _row(record, version),
                )
        except sqlite3.Error:
            pass  # the index is a cache; the next listing reconciles from manifests

    def _scan_manifests(self) -> dict[str, Stamp]:
        """Manifest stamp of every experiment folder (see :func:`scan_manifests`)."""
        return scan_manifests(str(self.experiments_dir))

    def _refresh_membership(self) -> None:
        """Add experiments the index does not know and drop vanished ones (no stat pass)."""
        db = self._index()
        try:
            with os.scandir(self.experiments_dir) as entries:
                names = {e.name for e in entries if not e.name.startswith(".") and e.is_dir()}
        except FileNotFoundError:
            names = set()
        known = {row[0] for row in db.execute("SELECT id FROM experiments")}
        new, gone = names - known, known - names
        if not new and not gone:
            return
        rows = [self._row_from_disk(i, self._manifest_version(i)) for i in new]
        with _transaction(db):
            db.executemany("DELETE FROM experiments WHERE id = ?", [(i,) for i in gone])
            db.executemany(
                "INSERT OR REPLACE INTO experiments VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows
            )

    def _refresh_index(self, on_disk: dict[str, Stamp] | None = None) -> str:
        """Reconcile the cache with the manifests on disk.

        A fingerprint of every (id, manifest version) pair is kept in the index: when it
        matches, the cache is known fresh without comparing rows one by one. Returns it.
        """
        db = self._index()
        if on_disk is None:
            on_disk = self._scan_manifests()
        current = fingerprint(on_disk)
        row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
        if row is not None and row[0] == current:
            return current
        versions = {i: _version(v) for i, v in on_disk.items()}
        # Compare and write in one write transaction: rows another process committed in
        # between are compared too, and the rows and their fingerprint land together.
        with _transaction(db):
            known = dict(db.execute("SELECT id, version FROM experiments"))
            stale = [i for i, m in versions.items() if known.get(i) != m]
            gone = [i for i in known if i not in on_disk]
            rows = [self._row_from_disk(exp_id, versions[exp_id]) for exp_id in stale]
            db.executemany("DELETE FROM experiments WHERE id = ?", [(i,) for i in gone])
            db.executemany(
                "INSERT OR REPLACE INTO experiments VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows
            )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('fingerprint', ?)", (current,))
        return current

    def _row_from_disk(self, exp_id: str, version: str) -> tuple[Any, ...]:
        try:
            record = self.load(exp_id)
        except DamagedManifestError as exc:
            created = _dir_ctime(self.exp_dir(exp_id))
            return (
                exp_id,
                exp_id,
                created,
                "DAMAGED",
                None,
                "",
                "",
                0,
                None,
                exc.reason,
                version,
                "",
            )
        return _row(record, version)

    def rebuild_index(self) -> None:
        """Drop the cache and rebuild it from every manifest."""
        db = self._index()
        with _transaction(db):
            db.execute("DELETE FROM experiments")
            db.execute("DELETE FROM meta")
        self._refresh_index()

    def index_rows(self) -> list[tuple[Any, ...]]:
        """The index content without mtimes (for checking that a rebuild matches)."""
        self._refresh_index()
        return list(
            self._index().execute(f"SELECT {_SUMMARY_COLUMNS} FROM experiments ORDER BY id")
        )


#: Version token of a folder without a manifest.
MISSING = "missing"


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection, *, write: bool = True) -> Iterator[None]:
    """One explicit transaction (the connection is in autocommit mode, where ``with db:``
    would commit each statement on its own). ``write`` takes the write lock at once, so what
    is read inside is still true when the writes commit."""
    db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


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


def _version(stamp: Stamp) -> str:
    """The stamp as stored in the index's ``version`` column."""
    return MISSING if stamp == MISSING_STAMP else f"{stamp[0]}:{stamp[1]}:{stamp[2]}"


_SUMMARY_COLUMNS = (
    "id, title, created_at, state, parent, tags, backends, n_jobs, ended_at, damaged, executors"
)


def _summary(r: tuple[Any, ...]) -> ExperimentSummary:
    return ExperimentSummary(
        r[0], r[1], r[2], r[3], r[4], _split(r[5]), _split(r[6]), r[7], r[8], r[9], _split(r[10])
    )


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split("\x1f")) if text else ()


def _join(items: list[str]) -> str:
    """Tags/backends in one column, separated by the ASCII unit separator (fast to split)."""
    return "\x1f".join(items)


def _row(record: ExperimentRecord, version: str) -> tuple[Any, ...]:
    return (
        record.id,
        record.title,
        record.created_at,
        record.state.value,
        record.parent,
        _join(record.tags),
        _join(record.backends),
        len(record.jobs),
        record.ended_at,
        None,
        version,
        _join(record.executors),
    )


def executor_label(backend: str, profile: str | None) -> str:
    """``backend/profile``, or the backend alone when the profile adds nothing."""
    return backend if not profile or profile == backend else f"{backend}/{profile}"


def _dir_ctime(path: Path) -> float:
    try:
        return path.stat().st_ctime
    except FileNotFoundError:
        return 0.0


def _dump(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _parse_manifest(exp_id: str, raw: bytes) -> ExperimentRecord:
    if not raw.strip():
        raise DamagedManifestError(exp_id, "experiment.json is empty")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DamagedManifestError(exp_id, f"experiment.json is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DamagedManifestError(exp_id, "experiment.json is not a JSON object")
    try:
        record = ExperimentRecord.from_dict(data)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise DamagedManifestError(exp_id, f"experiment.json: {detail}") from None
    if record.id != exp_id:
        # A folder renamed or copied by hand: reading it as the id inside would show one
        # experiment twice and let writes land in the wrong folder.
        raise DamagedManifestError(
            exp_id, f"experiment.json belongs to `{record.id}`, not to its folder `{exp_id}`"
        )
    return record
