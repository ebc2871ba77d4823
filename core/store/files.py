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
atomic rename, so concurrent CLIs, apps and monitors never tear a file. Everything read back
is checked (bounded reads of regular files only, every field, every name), so damage is
reported as such and never crashes or hangs a reader. How the index stays true is in
:mod:`core.store.index`.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import json
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from core.engine.states import StatusReport
from core.fsutil import (
    UnreadableFile,
    append_line,
    atomic_write,
    chmod_if_needed,
    ensure_private_dir,
    file_lock,
    fsync_dir,
    read_regular,
)
from core.store.index import (
    INDEX_FILE,
    MANIFEST,
    Index,
    Row,
    damaged_row,
    dir_token,
    manifest_version,
    row_of,
    summary_values,
)
from core.store.records import (
    AmbiguousExperiment,
    DamagedFileError,
    DamagedManifestError,
    ExperimentNotFound,
    ExperimentRecord,
    ExperimentSummary,
    LiveRunError,
    StateChange,
    StoreError,
    StoreWriteError,
    _short,
    dump_manifest,
    name_problem,
    parse_manifest,
    slugify,
)

EVENTS = "events.jsonl"
LOCK = ".lock"
#: Serializes creating and removing experiment folders (see :meth:`Index.carry_token`).
STORE_LOCK = ".store.lock"
#: Space set aside so that recording the outcome of a launch fits on a full disk.
RESERVE = ".reserve"
RESERVE_BYTES = 1 << 20
MAX_MANIFEST_BYTES = 16 << 20
MAX_JOB_FILE_BYTES = 64 << 20
MAX_EVENTS_BYTES = 64 << 20
#: Longer references cannot name anything (ids are single path components).
MAX_REF_CHARS = 1024
#: Run management bounds: a tag is a short label shown in listings, a note a paragraph.
MAX_TAG_CHARS = 64
MAX_TAGS = 32
MAX_NOTE_CHARS = 4096

T = TypeVar("T")


class Store:
    """Experiments under ``home``; safe for several processes at once."""

    def __init__(self, home: Path | str) -> None:
        self.home = Path(home).expanduser()
        self.experiments_dir = self.home / "experiments"
        self.index = Index(str(self.home), self._row_from_disk, prepare_home=self._prepare_home)

    # -- paths -------------------------------------------------------------------------
    def exp_dir(self, exp_id: str) -> Path:
        problem = name_problem(exp_id)
        if problem:
            raise ExperimentNotFound(f"invalid experiment id: {problem}")
        return self.experiments_dir / exp_id

    def job_dir(self, exp_id: str, job: str) -> Path:
        """A job's folder; refused when the name, or a symlink on the way, leads outside."""
        problem = name_problem(job)
        if problem:
            raise StoreError(f"experiment {_short(exp_id)}: invalid job name: {problem}")
        path = self.exp_dir(exp_id) / "jobs" / job
        root = os.path.realpath(self.experiments_dir)
        if not os.path.realpath(path).startswith(root + os.sep):
            raise StoreError(f"experiment {_short(exp_id)}: job `{job}` leads outside the store")
        return path

    def _ensure_home(self) -> None:
        """Create the store for writing, private to its user."""
        try:
            ensure_private_dir(self.experiments_dir)
            chmod_if_needed(self.home, 0o700)
        except OSError as exc:
            raise _write_error(exc, self.home) from None
        if not (self.home / RESERVE).exists():
            with contextlib.suppress(OSError):
                _make_reserve(self.home / RESERVE)

    def _prepare_home(self) -> None:
        """Before opening the index: a missing store is created; an existing one untouched.

        When it cannot be created (a read-only parent), the index lives in memory."""
        if not self.home.exists():
            with contextlib.suppress(StoreWriteError):
                self._ensure_home()

    # -- create / read / update ----------------------------------------------------------
    def new_id(self, title: str) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
        return f"{slugify(title)}-{stamp}-{os.urandom(2).hex()}"

    @contextlib.contextmanager
    def _folder_change(self) -> Iterator[None]:
        """Create/remove folders under the store lock, carrying the index's token over."""
        with file_lock(self.home / STORE_LOCK):
            before = dir_token(str(self.experiments_dir))
            missed = self.index.missed
            yield
            if self.index.missed == missed:  # never carry over a row the index missed
                self.index.carry_token(before, dir_token(str(self.experiments_dir)))

    def create(
        self,
        record: ExperimentRecord,
        job_files: Mapping[str, Mapping[str, bytes | str]] | None = None,
    ) -> ExperimentRecord:
        """Write a new experiment whole (manifest, job files, first event) or not at all."""
        for job in record.jobs:
            self.job_dir(record.id, job.name)  # every name checked before anything is written
        self._ensure_home()
        final = self.exp_dir(record.id)
        if final.exists():
            raise StoreError(f"experiment {record.id} already exists")
        staging = self.experiments_dir / f".staging-{record.id}"
        try:
            with self._folder_change():
                ensure_private_dir(staging)
                try:
                    for job in record.jobs:
                        jdir = ensure_private_dir(staging / "jobs" / job.name)
                        ensure_private_dir(jdir / "logs")
                        for name, data in (job_files or {}).get(job.name, {}).items():
                            atomic_write(jdir / name, data)
                    atomic_write(staging / MANIFEST, dump_manifest(record))
                    event = {"t": record.created_at, "kind": "created", "parent": record.parent}
                    append_line(staging / EVENTS, json.dumps(event))
                    os.rename(staging, final)
                    fsync_dir(self.experiments_dir)  # the rename itself survives a power loss
                except BaseException:
                    import shutil

                    shutil.rmtree(staging, ignore_errors=True)
                    raise
                self._index_record(record)
        except OSError as exc:
            raise _write_error(exc, self.home) from None
        return record

    def load(self, exp_id: str) -> ExperimentRecord:
        directory = self.exp_dir(exp_id)
        try:
            mode = os.lstat(directory).st_mode
        except (FileNotFoundError, NotADirectoryError):
            raise ExperimentNotFound(f"no experiment `{exp_id}`") from None
        except OSError as exc:
            reason = f"the experiment folder cannot be read ({exc.strerror})"
            raise DamagedManifestError(exp_id, reason) from None
        if stat.S_ISLNK(mode):  # never followed: it may lead out of the store
            raise DamagedManifestError(exp_id, "the experiment folder is a symlink")
        if not stat.S_ISDIR(mode):
            raise ExperimentNotFound(f"no experiment `{exp_id}`")
        try:
            raw = read_regular(directory / MANIFEST, MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            raise DamagedManifestError(exp_id, "experiment.json is missing") from None
        except UnreadableFile as exc:
            raise DamagedManifestError(exp_id, f"experiment.json {exc.reason}") from None
        return parse_manifest(exp_id, raw)

    @contextlib.contextmanager
    def locked(self, exp_id: str) -> Iterator[None]:
        directory = self.exp_dir(exp_id)
        if not directory.is_dir():
            raise ExperimentNotFound(f"no experiment `{exp_id}`")
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(file_lock(directory / LOCK))
            except FileNotFoundError:
                if directory.is_dir():
                    raise
                # Removed between the check and the lock (Store.remove renames it away).
                raise ExperimentNotFound(f"no experiment `{exp_id}`") from None
            except OSError as exc:  # a read-only store: one line, not a traceback
                raise _write_error(exc, directory) from None
            if not directory.is_dir():
                # Removed while we waited: the lock we hold is the renamed-away folder's.
                raise ExperimentNotFound(f"no experiment `{exp_id}`")
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
            path = self.exp_dir(exp_id) / MANIFEST
            self._write(lambda: atomic_write(path, dump_manifest(record)), path)
            # Indexed under the lock: rows of one experiment land in the order its manifests
            # were written, each with the version of the manifest it describes.
            self._index_record(record)
        return record

    # -- run management ------------------------------------------------------------------
    def set_tags(self, exp_id: str, tags: builtins.list[str]) -> ExperimentRecord:
        """Replace the experiment's tags (order kept, duplicates dropped); checked first,
        so a bad tag changes nothing."""
        clean = check_tags(tags)

        def mutate(record: ExperimentRecord) -> bool:
            if record.tags == clean:
                return False
            record.tags = clean
            return True

        record = self.update(exp_id, mutate)
        self.append_event(exp_id, {"kind": "tags", "tags": clean})
        return record

    def set_note(self, exp_id: str, note: str) -> ExperimentRecord:
        """Replace the experiment's note ("" removes it)."""
        clean = check_note(note)

        def mutate(record: ExperimentRecord) -> bool:
            if record.note == clean:
                return False
            record.note = clean
            return True

        record = self.update(exp_id, mutate)
        self.append_event(exp_id, {"kind": "note"})  # the text is in the manifest
        return record

    def set_archived(self, exp_id: str, archived: bool) -> ExperimentRecord:
        """Hide the experiment from the default listings (or show it again).

        Archiving changes nothing else: a live run keeps running and is still watched."""
        if not isinstance(archived, bool):
            raise StoreError("archived must be true or false")

        def mutate(record: ExperimentRecord) -> bool:
            if record.archived == archived:
                return False
            record.archived = archived
            return True

        record = self.update(exp_id, mutate)
        self.append_event(exp_id, {"kind": "archived" if archived else "unarchived"})
        return record

    def remove(self, exp_id: str) -> None:
        """Delete a finished experiment: its folder (logs, task files) and its index row.

        Never a live one (:class:`LiveRunError`), nor one whose manifest cannot be read
        (nothing then says it has ended). Atomic for readers: under the store lock and the
        experiment's lock, the folder is renamed to a hidden ``.deleting-<id>`` (one
        rename: listed whole or not at all, and no writer can add to it afterwards), its
        row dropped, then the hidden folder removed; a crash in between leaves only that
        folder, which the stale-file sweep removes.
        """
        import shutil

        directory = self.exp_dir(exp_id)
        if not _is_real_dir(directory):
            raise ExperimentNotFound(f"no experiment `{exp_id}`")
        self._ensure_home()
        doomed = self.experiments_dir / f".deleting-{exp_id}"
        try:
            with self._folder_change(), self.locked(exp_id):
                record = self.load(exp_id)  # DamagedManifestError: refused
                live = [j.name for j in record.jobs if not j.state.is_terminal]
                if live:
                    raise LiveRunError(
                        f"experiment {exp_id} is live ({record.state.value}: "
                        f"{', '.join(live)}); cancel it first, or refresh it with "
                        "`nemorun-tui status`"
                    )
                os.rename(directory, doomed)
                fsync_dir(self.experiments_dir)
                self.index.drop(exp_id)
        except OSError as exc:
            raise _write_error(exc, directory) from None
        shutil.rmtree(doomed, ignore_errors=True)

    def _write(self, action: Callable[[], T], path: Path) -> T:
        """Run a write; on a full disk, give up the reserve once and try again.

        The reserve is what keeps an experiment from staying UNSUBMITTED for ever when the
        disk fills between recording it and recording its jobs' fate.
        """
        try:
            return action()
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise _write_error(exc, path) from None
            reserve = self.home / RESERVE
            if not reserve.exists():
                raise _write_error(exc, path) from None
            with contextlib.suppress(OSError):
                reserve.unlink()
        try:
            return action()
        except OSError as exc:
            raise _write_error(exc, path) from None

    def append_event(self, exp_id: str, event: Mapping[str, Any]) -> None:
        payload = {"t": time.time(), **event}
        path = self.exp_dir(exp_id) / EVENTS
        line = json.dumps(payload, sort_keys=True)
        try:
            self._write(lambda: append_line(path, line), path)
        except StoreWriteError:
            if not path.parent.is_dir():  # removed since the caller's update: not a disk fault
                raise ExperimentNotFound(f"no experiment `{exp_id}`") from None
            raise

    def events(self, exp_id: str) -> list[dict[str, Any]]:
        """Events in order. A line that cannot be read (torn by a killed writer, bad bytes,
        not an event) becomes ``{"kind": "damaged", ...}`` with its line number; a file that
        cannot be read at all becomes one such entry."""
        path = self.exp_dir(exp_id) / EVENTS
        try:
            raw = read_regular(path, MAX_EVENTS_BYTES)
        except FileNotFoundError:
            return []
        except UnreadableFile as exc:
            return [_damaged_event(0, f"{EVENTS} {exc.reason}")]
        out: list[dict[str, Any]] = []
        lines = raw.split(b"\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except RecursionError:
                event = None
            except ValueError:  # JSONDecodeError and UnicodeDecodeError
                if number == len(lines):
                    continue  # a torn last line: the writer was killed mid-line
                event = None
            if not isinstance(event, dict) or not _plausible_times(event):
                out.append(_damaged_event(number, "not a readable event"))
                continue
            out.append(event)
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
                if job.started_at is None and report.started_at is not None:
                    job.started_at = report.started_at  # when it started, not when seen
                    dirty = True
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

    def read_job_file(self, exp_id: str, job: str, name: str) -> bytes:
        """A job file's bytes; ``FileNotFoundError`` when absent, :class:`DamagedFileError`
        when it is not a regular file of bounded size."""
        path = self.job_dir(exp_id, job) / name
        try:
            return read_regular(path, MAX_JOB_FILE_BYTES)
        except UnreadableFile as exc:
            raise DamagedFileError(f"{_short(exp_id)}/{job}/{name} {exc.reason}") from None

    def write_job_file(self, exp_id: str, job: str, name: str, data: bytes | str) -> None:
        """Replace one file in a job's folder atomically (e.g. ``artifacts.json``, recorded
        while the job runs); the name must be a plain file name."""
        problem = name_problem(name)
        if problem:
            raise StoreError(f"invalid job file name: {problem}")
        path = self.job_dir(exp_id, job) / name
        if not path.parent.is_dir():
            raise ExperimentNotFound(f"no job `{_short(job)}` in {_short(exp_id)}")
        self._write(lambda: atomic_write(path, data, durable=True), path)

    def read_job_json(self, exp_id: str, job: str, name: str) -> Any:
        """A job file parsed as JSON; damage (bad bytes, truncated) is one-line
        :class:`DamagedFileError`."""
        raw = self.read_job_file(exp_id, job, name)
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            detail = _short(str(exc) or type(exc).__name__, 100)
            raise DamagedFileError(
                f"{_short(exp_id)}/{job}/{name} is not valid JSON ({detail})"
            ) from None

    def list(
        self, *, limit: int | None = None, archived: bool | None = None
    ) -> list[ExperimentSummary]:
        """Every experiment (or the newest ``limit``), newest first; damaged ones included.

        ``archived``: None lists all, False only the unarchived (the default listings),
        True only the archived ones."""
        sql = "ORDER BY created_at DESC, id DESC"
        params: tuple[int, ...] = ()
        if archived is not None:
            sql = f"WHERE archived = {int(archived)} {sql}"
        if limit is not None:
            sql += " LIMIT ?"
            params = (max(0, limit),)

        def listing() -> list[Row]:
            self.index.sync()
            return self.index.summary_rows(sql, params)

        return [ExperimentSummary(*summary_values(r)) for r in self.index.guarded(listing)]

    def list_if_changed(
        self, since: str | None
    ) -> tuple[str | None, builtins.list[ExperimentSummary] | None]:
        """``(generation, rows)`` after the cheap check; rows is None when no row changed
        since the generation ``since`` (a poller then skips materializing every row)."""

        def check() -> tuple[str | None, list[Row] | None]:
            self.index.sync()
            gen = self.index.rows_gen()
            if since is not None and gen == since:
                return gen, None
            return gen, self.index.summary_rows("ORDER BY created_at DESC, id DESC")

        gen, rows = self.index.guarded(check)
        if rows is None:
            return gen, None
        return gen, [ExperimentSummary(*summary_values(r)) for r in rows]

    def rendered_listing(
        self, kind: str, render: Callable[[builtins.list[ExperimentSummary]], str]
    ) -> str:
        """``render(self.list())``, kept in the index until a row changes.

        The rendered text is a derived cache like the index itself, keyed by the rows'
        generation (bumped by every change of a row), so any write, or any change a listing
        finds, renders it again.
        """

        def rendering() -> str:
            self.index.sync()
            return self.index.rendered(
                kind, lambda rows: render([ExperimentSummary(*summary_values(r)) for r in rows])
            )

        return str(self.index.guarded(rendering))

    def resolve(self, ref: str) -> str:
        """An id from an exact id, a unique id prefix, or a title (the latest wins)."""
        ref = ref.strip()
        if not ref:
            raise ExperimentNotFound("empty experiment reference")
        if len(ref) > MAX_REF_CHARS:
            raise ExperimentNotFound(f"experiment reference is too long ({len(ref)} characters)")
        if name_problem(ref) is None and _is_real_dir(self.experiments_dir / ref):
            return ref

        def lookup() -> tuple[list[Row], list[Row]]:
            self.index.sync(verify=False)  # once for both: ids and titles never change
            # A range on the primary key (LIKE would scan every row).
            by_id = self.index.summary_rows(
                "WHERE id >= ? AND id < ? ORDER BY id LIMIT 6", (ref, ref + "\U0010ffff")
            )
            by_title = self.index.summary_rows(
                "WHERE title = ? ORDER BY created_at DESC, id DESC LIMIT 1", (ref,)
            )
            return by_id, by_title

        by_id, by_title = self.index.guarded(lookup)
        prefixed = [r[0] for r in by_id if r[0].startswith(ref)]
        if len(prefixed) == 1:
            return str(prefixed[0])
        if by_title:
            return str(by_title[0][0])
        if len(prefixed) > 1:
            shown = ", ".join(prefixed[:5])
            more = " and more" if len(prefixed) > 5 else ""
            raise AmbiguousExperiment(
                f"`{ref}` matches several experiments ({shown}{more}); give more of the id"
            )
        raise ExperimentNotFound(
            f"no experiment matches `{_short(ref)}` (by id, id prefix or title);"
            " see `nemorun-tui ls`"
        )

    # -- the index (a cache) ---------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        return self.home / INDEX_FILE

    def close(self) -> None:
        self.index.close()

    def forget_connection(self) -> None:
        """Drop the index connection without closing it: the thread that owned it is gone
        (sqlite connections belong to their thread). The next call opens a new one."""
        self.index.forget()

    def _index_record(self, record: ExperimentRecord) -> None:
        version = manifest_version(str(self.experiments_dir), record.id)
        self.index.put(row_of(record, version))

    def _row_from_disk(self, exp_id: str, version: str) -> Row:
        try:
            return row_of(self.load(exp_id), version)
        except DamagedManifestError as exc:
            return damaged_row(exp_id, exc.reason, _dir_ctime(self.exp_dir(exp_id)), version)
        except ExperimentNotFound:
            return damaged_row(exp_id, "the folder vanished while listing", 0.0, version)

    def rebuild_index(self) -> None:
        """Drop the cache (whatever state it is in) and rebuild it from every manifest."""
        self.index.guarded(self.index.rebuild)

    def verify(self) -> None:
        """Check every manifest against the index (what a background verification runs)."""
        self.index.guarded(lambda: self.index.sync(full=True))

    def index_rows(self) -> builtins.list[Row]:
        """The index content without versions (for checking that a rebuild matches)."""

        def rows() -> list[Row]:
            self.index.sync(full=True)
            return self.index.summary_rows("ORDER BY id")

        return list(self.index.guarded(rows))


def check_tags(tags: object) -> builtins.list[str]:
    """Tags as stored: text, trimmed, short, printable, no commas (``tag:a,b`` filters
    split on them), order kept, duplicates dropped. :class:`StoreError` names a bad one."""
    if isinstance(tags, str) or not isinstance(tags, builtins.list | tuple):
        raise StoreError("tags must be a list of text")
    out: builtins.list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise StoreError(f"a tag must be text, not {type(tag).__name__}")
        tag = tag.strip()
        shown = _short(ascii(tag)[1:-1], 40)
        if not tag:
            raise StoreError("a tag must not be empty")
        if len(tag) > MAX_TAG_CHARS:
            raise StoreError(f"tag `{shown}` is longer than {MAX_TAG_CHARS} characters")
        if not tag.isprintable() or "," in tag or any(c.isspace() for c in tag):
            raise StoreError(f"tag `{shown}` has a comma, a space or a control character")
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise StoreError(f"at most {MAX_TAGS} tags per experiment ({len(out)} given)")
    return out


def check_note(note: object) -> str:
    """A note as stored: text of at most :data:`MAX_NOTE_CHARS`, lines and tabs allowed,
    no other control characters (it is shown in listings and details)."""
    if not isinstance(note, str):
        raise StoreError("a note must be text")
    note = note.strip()
    if len(note) > MAX_NOTE_CHARS:
        raise StoreError(f"a note is at most {MAX_NOTE_CHARS} characters ({len(note)} given)")
    if any(not (c.isprintable() or c in "\n\t") for c in note):
        raise StoreError("a note must not contain control characters (other than newlines)")
    return note


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _dir_ctime(path: Path) -> float:
    try:
        return os.lstat(path).st_ctime
    except OSError:
        return 0.0


def _plausible_times(event: dict[str, Any]) -> bool:
    for key in ("t", "observed_at"):
        value = event.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not 0 <= value <= 253_402_300_799:
            return False
    return True


def _damaged_event(number: int, reason: str) -> dict[str, Any]:
    return {"kind": "damaged", "t": None, "line": number, "reason": reason}


def _make_reserve(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, RESERVE_BYTES)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def _write_error(exc: OSError, path: Path) -> StoreWriteError:
    what = exc.strerror or type(exc).__name__
    return StoreWriteError(f"cannot write to the store at {path}: {what}")
