"""The experiment store: atomic, private, concurrent, honest about damage."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import time
from pathlib import Path

import pytest

from core.engine.protocol import Handle
from core.engine.states import JobState, StatusReport
from core.store import (
    AmbiguousExperiment,
    DamagedManifestError,
    ExperimentNotFound,
    ExperimentRecord,
    JobRecord,
    Store,
)


def make_record(
    store: Store, title: str = "train", jobs: tuple[str, ...] = ("a",)
) -> ExperimentRecord:
    record = ExperimentRecord(
        id=store.new_id(title),
        title=title,
        created_at=time.time(),
        jobs=[JobRecord(name=j, kind="script", backend="local") for j in jobs],
    )
    return store.create(record, {j: {"task.json": "{}"} for j in jobs})


def test_create_then_load_round_trips(tmp_path: Path) -> None:
    store = Store(tmp_path)
    rec = make_record(store, jobs=("a", "b"))
    loaded = store.load(rec.id)
    assert loaded.to_dict() == rec.to_dict()
    assert store.read_job_file(rec.id, "b", "task.json") == b"{}"
    assert [e["kind"] for e in store.events(rec.id)] == ["created"]


def test_store_is_private_to_its_user(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    rec = make_record(store)
    for path in [store.home, *store.home.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        else:
            assert mode & 0o077 == 0, (path, oct(mode))
    assert store.exp_dir(rec.id).is_dir()


def test_no_temp_files_left_after_writes(tmp_path: Path) -> None:
    store = Store(tmp_path)
    rec = make_record(store)
    store.update(rec.id, lambda r: r.tags.append("x") and None)
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp") or ".staging-" in p.name]
    assert leftovers == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b'{"schema_version": 1, "id": "x", "tit', "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"id": "x"}', "schema_version"),
        (b'{"schema_version": 1, "title": "t", "created_at": 1}', "missing field"),
        (b'{"schema_version": 99, "id": "x", "title": "t", "created_at": 1}', "newer"),
        (b'{"schema_version": 1, "id": "x", "title": "t", "created_at": 1, "jobs": [1]}', "int"),
        (b'{"schema_version": 1, "id": "x", "title": "t", "created_at": 1, "jobs": "ab"}', "str"),
    ],
)
def test_damaged_manifest_is_listed_with_reason(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    store = Store(tmp_path)
    good = make_record(store, "good")
    bad = make_record(store, "bad")
    (store.exp_dir(bad.id) / "experiment.json").write_bytes(content)
    rows = {r.id: r for r in store.list()}
    assert rows[good.id].damaged is None and rows[good.id].state == "UNSUBMITTED"
    assert rows[bad.id].state == "DAMAGED"
    assert reason in (rows[bad.id].damaged or "")
    with pytest.raises(DamagedManifestError, match=reason):
        store.load(bad.id)


def test_missing_manifest_in_existing_folder_is_damaged(tmp_path: Path) -> None:
    store = Store(tmp_path)
    rec = make_record(store)
    (store.exp_dir(rec.id) / "experiment.json").unlink()
    (row,) = store.list()
    assert row.damaged and "missing" in row.damaged


def test_resolve_by_id_prefix_and_title(tmp_path: Path) -> None:
    store = Store(tmp_path)
    first = make_record(store, "alpha")
    time.sleep(0.01)
    second = make_record(store, "alpha")
    other = make_record(store, "beta")
    assert store.resolve(first.id) == first.id
    assert store.resolve(other.id[:6]) == other.id
    assert store.resolve("alpha") == second.id  # the latest with that title
    with pytest.raises(AmbiguousExperiment, match="matches several"):
        store.resolve("alpha-")
    with pytest.raises(ExperimentNotFound, match="no experiment matches `nope`"):
        store.resolve("nope")
    with pytest.raises(ExperimentNotFound):
        store.resolve("../etc")


def test_record_statuses_writes_transitions_and_events(tmp_path: Path) -> None:
    store = Store(tmp_path)
    rec = make_record(store, jobs=("a",))
    running = StatusReport(JobState.RUNNING, source="test")
    assert [c.new for c in store.record_statuses(rec.id, {"a": running})] == [JobState.RUNNING]
    assert store.record_statuses(rec.id, {"a": running}) == []  # no change, no event
    done = StatusReport(JobState.FAILED, source="test", exit_code=3, reason="boom")
    (change,) = store.record_statuses(rec.id, {"a": done})
    assert (change.old, change.new) == (JobState.RUNNING, JobState.FAILED)
    job = store.load(rec.id).job("a")
    assert (job.state, job.exit_code, job.reason) == (JobState.FAILED, 3, "boom")
    assert job.ended_at == done.observed_at
    # a finished job never comes back to life
    assert store.record_statuses(rec.id, {"a": running}) == []
    assert store.load(rec.id).job("a").state is JobState.FAILED
    kinds = [(e["kind"], e.get("to")) for e in store.events(rec.id)]
    assert kinds == [("created", None), ("state", "RUNNING"), ("state", "FAILED")]
    assert store.list()[0].state == "FAILED"


def test_index_is_a_rebuildable_cache(tmp_path: Path) -> None:
    store = Store(tmp_path)
    recs = [make_record(store, f"t{i}") for i in range(5)]
    store.update(recs[0].id, lambda r: setattr(r.jobs[0], "handle", Handle("local", "local", "x")))
    before = store.index_rows()
    store.close()
    os.unlink(store.index_path)
    fresh = Store(tmp_path)
    assert fresh.index_rows() == before
    (fresh.index_path).write_bytes(b"this is not sqlite")
    fresh.close()
    assert Store(tmp_path).index_rows() == before


def test_listing_sees_changes_made_by_another_process(tmp_path: Path) -> None:
    a, b = Store(tmp_path), Store(tmp_path)
    rec = make_record(a)
    assert b.list()[0].state == "UNSUBMITTED"
    a.record_statuses(rec.id, {"a": StatusReport(JobState.RUNNING, source="t")})
    assert b.list()[0].state == "RUNNING"
    import shutil

    shutil.rmtree(a.exp_dir(rec.id))
    assert b.list() == []


def test_concurrent_updates_lose_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    rec = make_record(store)
    children = []
    for worker in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                s = Store(tmp_path)
                for i in range(25):
                    s.update(rec.id, lambda r, w=worker, n=i: r.tags.append(f"{w}-{n}") and None)
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    tags = store.load(rec.id).tags
    assert sorted(tags) == sorted(f"{w}-{n}" for w in range(4) for n in range(25))


def _writer_loop(home: Path, seed: int) -> None:  # pragma: no cover - runs in children
    rnd = random.Random(seed)
    store = Store(home)
    while True:
        rows = [r for r in store.list() if not r.damaged]
        if rows and rnd.random() < 0.6:
            target = rnd.choice(rows).id
            state = rnd.choice([JobState.PENDING, JobState.RUNNING, JobState.SUBMITTED])
            store.record_statuses(target, {"a": StatusReport(state, source=f"w{seed}")})
            store.update(target, lambda r: r.tags.append("x" * rnd.randint(1, 300)) and None)
        else:
            make_record(store, rnd.choice(["alpha", "beta", "gamma"]), jobs=("a", "b"))


@pytest.mark.slow
def test_store_survives_sigkill_of_a_concurrent_writer(tmp_path: Path) -> None:
    """Two writers; one is SIGKILLed at random points ≥200 times. Nothing is torn."""
    kills = int(os.environ.get("NRT_KILLS", "220"))
    rnd = random.Random(1234)

    def spawn(seed: int) -> int:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                _writer_loop(tmp_path, seed)
            finally:
                os._exit(0)
        return pid

    steady = spawn(10_000)
    try:
        for i in range(kills):
            victim = spawn(i)
            time.sleep(rnd.uniform(0.001, 0.03))
            os.kill(victim, signal.SIGKILL)
            os.waitpid(victim, 0)
    finally:
        os.kill(steady, signal.SIGKILL)
        os.waitpid(steady, 0)

    store = Store(tmp_path)
    rows = store.list()
    assert len(rows) > 10
    assert [r.id for r in rows if r.damaged] == []
    for row in rows:
        record = store.load(row.id)
        assert record.schema_version == 1
        for line in (store.exp_dir(row.id) / "events.jsonl").read_text().splitlines():
            json.loads(line)
    before = store.index_rows()
    store.close()
    os.unlink(store.index_path)
    assert Store(tmp_path).index_rows() == before


def test_rendered_listing_is_cached_until_any_manifest_changes(tmp_path: Path) -> None:
    store = Store(tmp_path)
    rec = make_record(store, "one")
    calls: list[int] = []

    def render(rows: list) -> str:  # type: ignore[type-arg]
        calls.append(len(rows))
        return "|".join(f"{r.id}={r.state}" for r in rows)

    first = store.rendered_listing("t", render)
    assert store.rendered_listing("t", render) == first and calls == [1]  # served from cache
    store.record_statuses(rec.id, {"a": StatusReport(JobState.RUNNING, source="t")})
    assert "RUNNING" in store.rendered_listing("t", render) and calls == [1, 1]
    other = make_record(store, "two")
    assert other.id in Store(tmp_path).rendered_listing("t", render) and calls[-1] == 2
    manifest = store.exp_dir(rec.id) / "experiment.json"
    manifest.write_text(manifest.read_text()[:30])  # hand damage, same second
    assert f"{rec.id}=DAMAGED" in store.rendered_listing("t", render)


def test_many_processes_opening_a_new_index_at_once_all_succeed(tmp_path: Path) -> None:
    """Creating the index schema races between processes; none may break the others."""
    make_record(Store(tmp_path / "seed"), "x")  # warm imports before forking
    for round_ in range(5):
        home = tmp_path / f"home{round_}"
        seeded = Store(home)
        make_record(seeded, "exp")
        seeded.close()
        for leftover in home.glob("index.sqlite*"):
            leftover.unlink()
        children = []
        for _ in range(6):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                code = 1
                try:
                    rows = Store(home).list()
                    code = 0 if len(rows) == 1 and not rows[0].damaged else 3
                finally:
                    os._exit(code)
            children.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
        assert codes == [0] * 6
        assert [r.title for r in Store(home).list()] == ["exp"]


def test_listing_cache_sees_renamed_folders_and_is_shared_between_processes(
    tmp_path: Path,
) -> None:
    """A rename by hand (which keeps the manifest's stamp) shows at once, and the kept
    rendering is shared between processes (a per-process key would make every `ls` a miss)."""
    import subprocess
    import sys

    store = Store(tmp_path)
    rec = make_record(store, "one")
    render_ids = lambda rows: ",".join(r.id for r in rows)  # noqa: E731
    assert store.rendered_listing("ids", render_ids) == rec.id

    os.rename(store.exp_dir(rec.id), store.experiments_dir / "renamed-by-hand")
    assert store.rendered_listing("ids", render_ids) == "renamed-by-hand"
    (moved,) = store.list()
    assert moved.damaged and "belongs to" in moved.damaged, moved
    (store.experiments_dir / "no-manifest").mkdir()
    assert "no-manifest" in store.rendered_listing("ids", render_ids)

    # Another process (any hash seed) is served the same rendering straight from the index.
    probe = (
        "import sys; from core.store.index import cached_listing; "
        "print(cached_listing(sys.argv[1], 'ids'))"
    )
    prints = {
        subprocess.run(
            [sys.executable, "-c", probe, str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(prints) == 1 and "no-manifest" in prints.pop(), prints


def test_a_slow_writer_never_files_older_content_under_the_newest_stamp(tmp_path: Path) -> None:
    """Two updates of one experiment overlap; the first is slow to index. The listing must
    end with the last write's content (it used to keep the first, under the newest stamp,
    and the listing cache then served it for good)."""
    import threading

    rec = make_record(Store(tmp_path), "one")
    slow, fast = Store(tmp_path), Store(tmp_path)
    original = slow._index_record

    def late_index(record: ExperimentRecord) -> None:  # the slow writer indexes late
        time.sleep(0.3)
        original(record)

    slow._index_record = late_index  # type: ignore[method-assign]

    def rename(store: Store, title: str) -> None:
        store.update(rec.id, lambda r: setattr(r, "title", title))

    first = threading.Thread(target=rename, args=(slow, "first"))
    first.start()
    time.sleep(0.1)
    rename(fast, "second")
    first.join()

    assert Store(tmp_path).load(rec.id).title == "second"
    (row,) = Store(tmp_path).list()
    assert row.title == "second"


def test_a_jobs_duration_is_its_run_and_none_before_it_starts() -> None:
    from core.store.records import JobRecord

    job = JobRecord(name="j", kind="script", backend="slurm", state=JobState.PENDING)
    job.submitted_at = 100.0
    assert job.duration is None and job.queued is None  # queued, not run yet
    job.state, job.started_at, job.ended_at = JobState.SUCCEEDED, 160.0, 190.0
    assert (job.duration, job.queued) == (30.0, 60.0)
    job.started_at = None  # a backend that never said when it started
    assert job.duration == 90.0
    assert JobRecord.from_dict({**job.to_dict(), "started_at": 160.0}).duration == 30.0
