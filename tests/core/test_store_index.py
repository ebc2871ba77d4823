"""The index: one column table, kept exact by writers, checked cheaply by readers (issue 9)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.engine.states import JobState, StatusReport
from core.store import ExperimentRecord, ExperimentSummary, JobRecord, Store
from core.store import index as index_module


def _make(store: Store, title: str) -> ExperimentRecord:
    record = ExperimentRecord(
        id=store.new_id(title),
        title=title,
        created_at=time.time(),
        jobs=[JobRecord(name="a", kind="script", backend="local")],
    )
    return store.create(record, {"a": {"task.json": "{}"}})


def test_one_column_table_matches_the_summary_fields() -> None:
    fields = [f.name for f in dataclasses.fields(ExperimentSummary)]
    assert fields == index_module.SUMMARY_COLUMNS
    assert index_module.INSERT.count("?") == len(index_module.COLUMNS)


def test_the_ls_fast_path_imports_no_records() -> None:
    code = (
        "import sys, core.store.index; "
        "print(sorted(m for m in sys.modules if m in "
        "('core.store.records', 'core.store.files', 'dataclasses', 'inspect')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_writers_keep_the_index_exact_without_a_full_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)
    first = _make(store, "one")
    store.list()  # current from here on

    def no_full_scan(_: str) -> dict[str, str]:
        raise AssertionError("a listing scanned every manifest")

    monkeypatch.setattr(index_module, "scan_manifests", no_full_scan)
    second = _make(store, "two")
    other_process = Store(tmp_path)
    third = _make(other_process, "three")
    store.record_statuses(first.id, {"a": StatusReport(JobState.RUNNING, source="t")})
    rows = {r.id: r.state for r in Store(tmp_path).list()}
    assert rows == {first.id: "RUNNING", second.id: "UNSUBMITTED", third.id: "UNSUBMITTED"}
    assert Store(tmp_path).resolve("three") == third.id


def test_a_folder_added_or_removed_by_hand_shows_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path)
    rec = _make(store, "one")
    store.list()
    (store.experiments_dir / "made-by-hand").mkdir()
    rows = {r.id: r for r in store.list()}
    assert rows["made-by-hand"].damaged == "experiment.json is missing"
    import shutil

    shutil.rmtree(store.exp_dir(rec.id))
    assert [r.id for r in store.list()] == ["made-by-hand"]


def test_a_hand_edit_inside_a_folder_shows_within_n_over_slice_listings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bounded verification: each listing checks VERIFY_SLICE manifests, rotating."""
    monkeypatch.setattr(index_module, "VERIFY_SLICE", 2)
    store = Store(tmp_path)
    records = [_make(store, f"exp{i}") for i in range(6)]
    store.list()
    victim = records[3]
    manifest = store.exp_dir(victim.id) / "experiment.json"
    manifest.write_text(manifest.read_text()[:20])
    seen = []
    for _ in range(3):  # 6 rows / 2 per listing
        seen.append({r.id: r.damaged for r in store.list()}[victim.id])
    assert seen[-1] is not None and "not valid JSON" in seen[-1]
    # The fast path agrees (and rebuild/verify would have shown it at once).
    manifest.write_text(json.dumps(victim.to_dict() | {"title": "fixed"}))
    store.verify()
    assert {r.id: r.title for r in store.list()}[victim.id] == "fixed"


def test_list_if_changed_skips_when_no_row_changed(tmp_path: Path) -> None:
    store = Store(tmp_path)
    rec = _make(store, "one")
    gen, rows = store.list_if_changed(None)
    assert rows is not None and [r.id for r in rows] == [rec.id]
    assert store.list_if_changed(gen) == (gen, None)
    store.record_statuses(rec.id, {"a": StatusReport(JobState.RUNNING, source="t")})
    new_gen, rows = store.list_if_changed(gen)
    assert new_gen != gen and rows is not None and rows[0].state == "RUNNING"


def test_a_missed_index_write_makes_the_next_listing_reconcile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)
    _make(store, "one")
    store.list()
    monkeypatch.setattr(store.index, "put", lambda row: store.index.mark_stale() or False)
    second = _make(store, "two")  # the row is not written; the token is not carried over
    monkeypatch.undo()
    assert second.id in {r.id for r in Store(tmp_path).list()}
