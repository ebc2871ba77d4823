"""The corruption matrix, store level: every damage kind, each in one experiment's folder.

A damaged experiment is listed as DAMAGED with its reason, never fatal and never hanging a
listing; the other experiments list and load as before. (The CLI and app halves of the
matrix are tests/cli/test_store_damage_cli.py and tests/app/test_store_damage_app.py.)
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from store_damage import DAMAGES, JOB

from core.engine.protocol import Handle
from core.engine.states import JobState
from core.store import (
    DamagedFileError,
    DamagedManifestError,
    ExperimentNotFound,
    ExperimentRecord,
    JobRecord,
    Store,
    StoreError,
    StoreWriteError,
)
from core.store import index as index_module

EXECUTOR = json.dumps({"backend": "local"})


def _record(store: Store, title: str) -> ExperimentRecord:
    record = ExperimentRecord(
        id=store.new_id(title),
        title=title,
        created_at=time.time(),
        jobs=[
            JobRecord(
                name=JOB,
                kind="script",
                backend="local",
                handle=Handle("local", "local", "/nonexistent"),
                state=JobState.SUCCEEDED,
                ended_at=time.time(),
            )
        ],
    )
    files = {JOB: {"task.json": '{"inline": "true"}', "executor.json": EXECUTOR}}
    return store.create(record, files)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Store, str, str]:
    store = Store(tmp_path / "home")
    good = _record(store, "good")
    victim = _record(store, "victim")
    store.list()  # the index exists and is current before the damage
    return store, good.id, victim.id


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("name", "where", "apply"), DAMAGES, ids=[d[0] for d in DAMAGES])
def test_one_damaged_experiment_never_breaks_the_store(
    pair: tuple[Store, str, str], name: str, where: str, apply: object
) -> None:
    store, good, victim = pair
    apply(store.exp_dir(victim), store.home)  # type: ignore[operator]
    for reader in (store, Store(store.home)):  # this process's index and a fresh one
        started = time.monotonic()
        rows = {r.id: r for r in reader.list()}
        assert time.monotonic() - started < 10
        assert rows[good].state == "SUCCEEDED" and rows[good].damaged is None
        assert reader.load(good).title == "good"
        if where == "manifest":
            assert rows[victim].state == "DAMAGED" and rows[victim].damaged, rows[victim]
            with pytest.raises(DamagedManifestError) as caught:
                reader.load(victim)
            assert "\n" not in str(caught.value) and len(str(caught.value)) < 400
        else:
            assert rows[victim].damaged is None
            assert isinstance(reader.events(victim), list)
        assert reader.resolve("good") == good
    if name.startswith("index-"):
        Store(store.home).rebuild_index()
        assert index_module.schema_ok(sqlite3.connect(store.index_path))


def test_a_fifo_manifest_is_damaged_without_blocking(pair: tuple[Store, str, str]) -> None:
    store, _, victim = pair
    manifest = store.exp_dir(victim) / "experiment.json"
    manifest.unlink()
    os.mkfifo(manifest)
    with pytest.raises(DamagedManifestError, match="not a regular file"):
        store.load(victim)


def test_an_oversized_manifest_is_damaged_not_read(pair: tuple[Store, str, str]) -> None:
    store, _, victim = pair
    with (store.exp_dir(victim) / "experiment.json").open("r+b") as fh:
        fh.truncate(1 << 30)
    with pytest.raises(DamagedManifestError, match="too large"):
        store.load(victim)


def test_bad_event_lines_are_marked_and_the_rest_kept(pair: tuple[Store, str, str]) -> None:
    store, _, victim = pair
    path = store.exp_dir(victim) / "events.jsonl"
    good_line = path.read_bytes()
    path.write_bytes(good_line + b"\xff\xfe\n" + b'{"t": "soon"}\n' + b'{"kind": "x", "t": 1}\n')
    events = store.events(victim)
    assert [e["kind"] for e in events] == ["created", "damaged", "damaged", "x"]
    assert [e["line"] for e in events if e["kind"] == "damaged"] == [2, 3]


def test_damaged_job_files_raise_one_line_errors(pair: tuple[Store, str, str]) -> None:
    store, _, victim = pair
    path = store.job_dir(victim, JOB) / "executor.json"
    path.write_bytes(b'{"backend": "lo')
    with pytest.raises(DamagedFileError, match="executor.json is not valid JSON"):
        store.read_job_json(victim, JOB, "executor.json")
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(DamagedFileError, match="not a regular file"):
        store.read_job_file(victim, JOB, "executor.json")


@pytest.mark.parametrize("job", ["../../x", "a/b", "..", ".x", "a\x00b", "", "j" * 300])
def test_job_dir_refuses_names_that_are_not_one_folder(tmp_path: Path, job: str) -> None:
    store = Store(tmp_path)
    with pytest.raises(StoreError):
        store.job_dir("exp", job)


@pytest.mark.parametrize("exp", ["../x", "..", ".", ".staging-x", "a\x00", "e" * 300])
def test_exp_dir_refuses_names_that_are_not_one_folder(tmp_path: Path, exp: str) -> None:
    with pytest.raises(ExperimentNotFound):
        Store(tmp_path).exp_dir(exp)


def test_job_dir_refuses_a_symlink_that_leads_outside(pair: tuple[Store, str, str]) -> None:
    store, _, victim = pair
    outside = store.home.parent / "elsewhere"
    outside.mkdir()
    jobs = store.exp_dir(victim) / "jobs"
    os.rename(jobs, outside / "jobs")
    jobs.symlink_to(outside / "jobs")
    with pytest.raises(StoreError, match="outside the store"):
        store.job_dir(victim, JOB)


def test_a_manifest_naming_a_job_outside_is_damaged_and_creates_nothing(
    pair: tuple[Store, str, str],
) -> None:
    store, _, victim = pair
    path = store.exp_dir(victim) / "experiment.json"
    data = json.loads(path.read_text())
    data["jobs"][0]["name"] = "../../x"
    path.write_text(json.dumps(data))
    with pytest.raises(DamagedManifestError, match="job name"):
        store.load(victim)
    record = ExperimentRecord(
        id="made-by-hand",
        title="t",
        created_at=time.time(),
        jobs=[JobRecord(name="../../x", kind="script", backend="local")],
    )
    with pytest.raises(StoreError, match="invalid job name"):
        store.create(record)
    assert not (store.home.parent / "x").exists()


def test_over_long_references_are_one_line_not_found(pair: tuple[Store, str, str]) -> None:
    store, _, _ = pair
    with pytest.raises(ExperimentNotFound, match="too long"):
        store.resolve("x" * 10_000)
    with pytest.raises(ExperimentNotFound, match="no experiment matches"):
        store.resolve("y" * 300)


def test_an_index_with_the_right_version_but_wrong_tables_is_replaced(
    pair: tuple[Store, str, str],
) -> None:
    store, good, victim = pair
    store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store.index_path}{suffix}").unlink(missing_ok=True)
    db = sqlite3.connect(store.index_path)
    db.execute("CREATE TABLE experiments (id TEXT)")
    db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    db.execute(f"PRAGMA user_version={index_module.INDEX_VERSION}")
    db.commit()
    db.close()
    assert index_module.cached_listing(str(store.home), "table") is None
    assert sorted(r.id for r in Store(store.home).list()) == sorted([good, victim])


def test_an_index_that_fails_on_query_is_rebuilt(
    pair: tuple[Store, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Damage the open cannot see (a table dropped under a live connection) is repaired."""
    store, good, _ = pair
    other = sqlite3.connect(store.index_path)
    other.execute("DROP TABLE experiments")
    other.commit()
    other.close()
    assert good in {r.id for r in store.list()}


def test_read_only_store_lists_and_loads_without_writing(
    pair: tuple[Store, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every write fails as on a read-only mount (EROFS); reads still answer. The real
    read-only bind mount is exercised in tests/cli/test_store_damage_cli.py."""
    store, good, victim = pair
    store.close()
    real_chmod, real_connect = os.chmod, sqlite3.connect

    def erofs(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    def ro_connect(database: str, *args: object, **kwargs: object) -> sqlite3.Connection:
        if str(database).startswith("file:") or database == ":memory:":
            return real_connect(database, *args, **kwargs)  # type: ignore[arg-type]
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(os, "chmod", erofs)
    monkeypatch.setattr(os, "utime", erofs)
    monkeypatch.setattr(sqlite3, "connect", ro_connect)
    reader = Store(store.home)
    assert {r.id for r in reader.list()} == {good, victim}
    assert reader.resolve("victim") == victim and reader.load(good).title == "good"
    assert reader.index.in_memory
    del real_chmod


def test_a_write_on_a_full_disk_is_one_line_and_uses_the_reserve(
    pair: tuple[Store, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first ENOSPC gives up the reserve and the write lands; with no reserve left the
    error is one StoreWriteError line. (The real full tmpfs: test_store_damage_cli.py.)"""
    store, good, _ = pair
    reserve = store.home / ".reserve"
    assert reserve.exists()
    real_write = os.write
    calls = {"n": 0}

    def full_once(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if reserve.exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_once)
    store.update(good, lambda r: setattr(r, "title", "renamed"))
    assert not reserve.exists() and store.load(good).title == "renamed"

    def always_full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", always_full)
    with pytest.raises(StoreWriteError, match="No space left on device") as caught:
        store.update(good, lambda r: setattr(r, "title", "again"))
    assert "\n" not in str(caught.value)
    assert store.load(good).title == "renamed"  # the old manifest stands
