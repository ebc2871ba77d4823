"""Run management in the store: tags, notes, archive and delete (never a live run)."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from core.engine.states import JobState, StatusReport
from core.store import (
    DamagedManifestError,
    ExperimentNotFound,
    ExperimentRecord,
    JobRecord,
    LiveRunError,
    Store,
    StoreError,
)


def make(store: Store, title: str = "train", state: JobState = JobState.SUCCEEDED) -> str:
    record = ExperimentRecord(
        id=store.new_id(title),
        title=title,
        created_at=time.time(),
        jobs=[JobRecord(name="a", kind="script", backend="local")],
    )
    store.create(record, {"a": {"task.json": "{}"}})
    if state is not JobState.UNSUBMITTED:
        store.record_statuses(record.id, {"a": StatusReport(state=state, source="test")})
    return record.id


def test_tags_replace_dedupe_and_reach_the_index(tmp_path: Path) -> None:
    store = Store(tmp_path)
    exp = make(store)
    store.set_tags(exp, ["sweep", " lr ", "sweep"])
    assert store.load(exp).tags == ["sweep", "lr"]
    assert store.list()[0].tags == ("sweep", "lr")
    store.set_tags(exp, [])
    assert store.load(exp).tags == []
    assert store.list()[0].tags == ()
    assert [e["kind"] for e in store.events(exp)][-2:] == ["tags", "tags"]


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        (["a,b"], "comma"),
        (["a b"], "space"),
        (["\x1b[31m"], "control"),
        ([""], "empty"),
        (["x" * 65], "longer than 64"),
        ("ab", "list of text"),
        ([1], "must be text"),
    ],
)
def test_bad_tags_change_nothing(tmp_path: Path, tags: object, message: str) -> None:
    store = Store(tmp_path)
    exp = make(store)
    store.set_tags(exp, ["keep"])
    with pytest.raises(StoreError, match=message):
        store.set_tags(exp, tags)  # type: ignore[arg-type]
    assert store.load(exp).tags == ["keep"]


def test_note_is_stored_listed_and_cleared(tmp_path: Path) -> None:
    store = Store(tmp_path)
    exp = make(store)
    store.set_note(exp, "  lr too high?\nretry with 1e-4  ")
    assert store.load(exp).note == "lr too high?\nretry with 1e-4"
    assert store.list()[0].note == "lr too high?\nretry with 1e-4"
    store.set_note(exp, "")
    assert store.load(exp).note == ""
    with pytest.raises(StoreError, match="control"):
        store.set_note(exp, "bell\x07")
    with pytest.raises(StoreError, match="at most 4096"):
        store.set_note(exp, "x" * 4097)


def test_archive_hides_from_the_default_listing_only(tmp_path: Path) -> None:
    store = Store(tmp_path)
    kept, hidden = make(store, "kept"), make(store, "hidden")
    store.set_archived(hidden, True)
    assert [r.id for r in store.list(archived=False)] == [kept]
    assert [r.id for r in store.list(archived=True)] == [hidden]
    assert {r.id for r in store.list()} == {kept, hidden}
    assert store.list(archived=True)[0].archived is True
    store.set_archived(hidden, False)
    assert {r.id for r in store.list(archived=False)} == {kept, hidden}
    # The manifest is the truth: a rebuilt index agrees.
    store.set_archived(hidden, True)
    store.rebuild_index()
    assert [r.id for r in store.list(archived=True)] == [hidden]


def test_old_manifests_without_the_new_fields_still_load(tmp_path: Path) -> None:
    store = Store(tmp_path)
    exp = make(store)
    path = store.exp_dir(exp) / "experiment.json"
    data = json.loads(path.read_text())
    for key in ("note", "archived", "workdir"):
        data.pop(key)
    path.write_text(json.dumps(data))
    record = store.load(exp)
    assert (record.note, record.archived, record.workdir) == ("", False, None)


def test_a_wrong_archived_type_is_damage_not_a_crash(tmp_path: Path) -> None:
    store = Store(tmp_path)
    exp = make(store)
    path = store.exp_dir(exp) / "experiment.json"
    data = json.loads(path.read_text())
    data["archived"] = "yes"
    path.write_text(json.dumps(data))
    with pytest.raises(DamagedManifestError, match="archived"):
        store.load(exp)
    assert store.list()[0].damaged


def test_remove_deletes_folder_and_row(tmp_path: Path) -> None:
    store = Store(tmp_path)
    gone, kept = make(store, "gone"), make(store, "kept")
    store.remove(gone)
    assert [r.id for r in store.list()] == [kept]
    assert not store.exp_dir(gone).exists()
    assert [p.name for p in store.experiments_dir.iterdir()] == [kept]
    with pytest.raises(ExperimentNotFound):
        store.load(gone)
    with pytest.raises(ExperimentNotFound):
        store.remove(gone)  # "not found" is not success
    # The index agrees with a full rebuild (nothing left over, nothing missing).
    before = store.index_rows()
    store.rebuild_index()
    assert store.index_rows() == before


@pytest.mark.parametrize("state", [JobState.RUNNING, JobState.PENDING, JobState.UNSUBMITTED])
def test_remove_refuses_a_live_run(tmp_path: Path, state: JobState) -> None:
    store = Store(tmp_path)
    exp = make(store, state=state)
    with pytest.raises(LiveRunError, match="live"):
        store.remove(exp)
    assert store.load(exp).id == exp
    assert [r.id for r in store.list()] == [exp]


def test_remove_refuses_a_damaged_manifest(tmp_path: Path) -> None:
    store = Store(tmp_path)
    exp = make(store)
    (store.exp_dir(exp) / "experiment.json").write_text("{")
    with pytest.raises(DamagedManifestError):
        store.remove(exp)
    assert store.exp_dir(exp).is_dir()


def _update_in_child(home: str, exp: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = Store(home)
    try:
        store.set_note(exp, "late")
        queue.put("written")
    except StoreError as exc:
        queue.put(type(exc).__name__)


def test_a_writer_racing_a_remove_never_resurrects_it(tmp_path: Path) -> None:
    store = Store(tmp_path)
    exp = make(store)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with store.locked(exp):  # the child waits on the lock, as a real writer would
        child = ctx.Process(target=_update_in_child, args=(str(tmp_path), exp, queue))
        child.start()
        time.sleep(0.5)
    store.remove(exp)
    child.join(timeout=30)
    # Either it wrote first (and the remove then deleted it whole) or it found nothing.
    assert queue.get(timeout=5) in ("written", "ExperimentNotFound")
    assert not store.exp_dir(exp).exists()
    assert store.list() == []
