"""Importing stores that NeMo Run 0.11.1 wrote itself (tests/fixtures/nemorun_stores).

States and logs are compared with what `nemo experiment status` and `nemo experiment logs`
reported when the stores were made (expected.json), not with values written here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
from ci_services import slurm_available, sshd_available, sshd_service
from nemo_fixtures import copy_home, exp_id, expected, nemo_log_lines, restore_remote
from services import require_service

from core.engine import Engine
from core.engine.states import JobState
from core.importers.fiddle_json import FiddleJSONError, decode_text
from core.importers.nemo_run import NEMO_TAG, import_store
from core.store import Store


def run_import(home: Path, store: Store, **kwargs: object) -> object:
    return asyncio.run(import_store(store, home, **kwargs))  # type: ignore[arg-type]


def snapshot(root: Path) -> dict[str, tuple[int, float, str]]:
    out = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        out[str(path.relative_to(root))] = (info.st_mode, info.st_mtime, digest)
    return out


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return copy_home(tmp_path / "nemo-home")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "home")


def lines(store: Store, exp: str, job: str) -> list[str]:
    logs = store.job_dir(exp, job) / "logs"
    text = "".join(
        (logs / f"{s}.log").read_text()
        for s in ("stdout", "stderr")
        if (logs / f"{s}.log").exists()
    )
    return text.splitlines()


@pytest.mark.parametrize("title", ["local-scripts", "local-partial", "slurm-local"])
def test_states_and_logs_match_nemo_runs_own_view(source: Path, store: Store, title: str) -> None:
    run_import(source, store, only={exp_id(title)})
    exp = exp_id(title)
    record = store.load(exp)
    assert record.title == title and NEMO_TAG in record.tags
    # The id carries NeMo Run's creation time in ns: that is the creation time kept.
    assert record.created_at == pytest.approx(int(exp.rsplit("_", 1)[1]) / 1e9)
    for name, seen in expected()[exp]["jobs"].items():
        job = record.job(name)
        assert job.state.value == seen["state"], (name, job.reason)
        assert sorted(lines(store, exp, name)) == sorted(nemo_log_lines(exp, name))
    assert {j.name for j in record.jobs} == set(expected()[exp]["jobs"])


def test_ssh_tunnel_logs_are_read_over_ssh(source: Path, store: Store) -> None:
    ok, why = sshd_available()
    require_service(ok, why)
    restore_remote()
    exp = exp_id("slurm-ssh")
    run_import(source, store, only={exp}, known_hosts=sshd_service().known_hosts)
    record = store.load(exp)
    for name, seen in expected()[exp]["jobs"].items():
        job = record.job(name)
        assert job.state.value == seen["state"]
        assert job.handle is not None and job.handle.target == "ssh://root@127.0.0.1:2222"
        assert lines(store, exp, name) == nemo_log_lines(exp, name)
        # Nothing of the SSH job's output exists in the local NeMo Run folder: it came over SSH.
        local = source / "experiments" / "slurm-ssh" / exp / name
        assert not list(local.glob("log-*"))


def test_the_source_is_only_read(source: Path, store: Store) -> None:
    before = snapshot(source)
    run_import(source, store)
    run_import(source, store)
    assert snapshot(source) == before


def test_tasks_are_decoded_without_importing_user_code(source: Path, store: Store) -> None:
    assert "nr_tasks" not in sys.modules
    exp = exp_id("local-partial")
    run_import(source, store, only={exp})
    assert "nr_tasks" not in sys.modules and "nemo_run" not in sys.modules
    document = json.loads(store.read_job_file(exp, "train", "task.json"))
    task = document["task"]
    assert (document["kind"], task["fn"]) == (
        "partial",
        {"module": "nr_tasks", "qualname": "train"},
    )
    assert task["args"]["steps"] == 2
    assert task["args"]["optim"]["fn"]["qualname"] == "Optim"
    assert task["args"]["optim"]["args"] == {"lr": 0.25}
    executor = json.loads(store.read_job_file(exp, "train", "executor.json"))
    assert executor["backend"] == "local" and "PYTHONPATH" in executor["env_vars"]


def test_an_executor_we_do_not_import_is_shown_unknown(source: Path, store: Store) -> None:
    exp = exp_id("docker-unknown")
    assert "UNSUBMITTED" in expected()[exp]["status_text"]
    run_import(source, store, only={exp})
    (job,) = store.load(exp).jobs
    assert job.state is JobState.UNKNOWN and job.handle is None
    assert "DockerExecutor is not imported" in (job.reason or "")
    # Its task still came over (a Script), so it is visible in Detail.
    assert json.loads(store.read_job_file(exp, job.name, "task.json"))["kind"] == "script"


def test_damaged_parts_are_listed_and_the_rest_imported(source: Path, store: Store) -> None:
    broken_tasks = source / "experiments" / "local-scripts" / exp_id("local-scripts") / "_TASKS"
    broken_tasks.write_text('[["not base64 at all!", 1]')  # truncated JSON
    broken_config = source / "experiments" / "slurm-local" / exp_id("slurm-local") / "_CONFIG"
    broken_config.write_bytes(b"eJwrSS0u0c1OzSvJzEnVSy9KTAEAK")  # cut-off zlib stream
    result = run_import(source, store)
    damaged = dict(result.damaged)  # type: ignore[attr-defined]
    assert any("_TASKS unreadable" in r for r in damaged.values())
    assert any("_CONFIG unreadable" in r for r in damaged.values())
    (placeholder,) = store.load(exp_id("local-scripts")).jobs
    assert placeholder.state is JobState.UNKNOWN and "_TASKS unreadable" in (
        placeholder.reason or ""
    )
    # A damaged _CONFIG loses only the title source; jobs and states still come over.
    slurm = store.load(exp_id("slurm-local"))
    assert slurm.title == "slurm-local" and slurm.job("hello").state is JobState.SUCCEEDED
    assert len(store.list()) == len(expected())


def test_fiddle_reader_bounds_hostile_documents() -> None:
    import base64
    import zlib

    def pack(doc: object) -> str:
        return base64.urlsafe_b64encode(zlib.compress(json.dumps(doc).encode())).decode()

    a_list = {"type": "pyref", "module": "builtins", "name": "list"}
    itself = [["Index(index=0)", {"type": "ref", "key": "a"}]]
    cycle = {
        "root": {"type": "ref", "key": "a"},
        "objects": {"a": {"type": a_list, "items": itself}},
    }
    with pytest.raises(FiddleJSONError, match="contains itself"):
        decode_text(pack(cycle))
    with pytest.raises(FiddleJSONError, match="missing object"):
        decode_text(pack({"root": {"type": "ref", "key": "zz"}, "objects": {}}))
    with pytest.raises(FiddleJSONError, match="larger than"):
        decode_text(base64.urlsafe_b64encode(zlib.compress(b" " * (65 * 1024 * 1024))).decode())


def test_import_twice_adds_nothing(source: Path, store: Store) -> None:
    first = run_import(source, store)
    again = run_import(source, store)
    assert len(first.imported) == len(expected())  # type: ignore[attr-defined]
    assert again.imported == [] and sorted(again.already) == sorted(expected())  # type: ignore[attr-defined]


def test_a_recorded_slurm_job_id_is_polled_like_ours(source: Path, store: Store) -> None:
    ok, why = slurm_available()
    require_service(ok, why)
    exp = exp_id("slurm-local")
    # Without the exit line the job's state is not on disk: the scheduler must be asked.
    for log in (source / "experiments" / "slurm-local" / exp / "hello").glob("sbatch_*"):
        os.remove(log)
    run_import(source, store, only={exp})
    job = store.load(exp).job("hello")
    assert job.state is JobState.SUBMITTED and job.handle is not None
    engine = Engine(store)
    asyncio.run(engine.refresh([exp]))
    polled = store.load(exp).job("hello")
    assert polled.source is not None and polled.source.startswith(("squeue", "sacct"))
    # Where Slurm still knows the job (this machine), its state is NeMo Run's; on a fresh
    # cluster the id is unknown and says so, never a guessed success.
    assert polled.state.value in (expected()[exp]["jobs"]["hello"]["state"], "UNKNOWN")


def test_detail_shows_every_imported_run_without_importing_its_code(
    source: Path, store: Store
) -> None:
    from nemorun_tui.widgets.detail_pane import load_detail

    run_import(source, store)
    engine = Engine(store)
    for exp in expected():
        detail = load_detail(engine, exp)
        assert [j.name for j in detail.jobs] == [j.name for j in store.load(exp).jobs]
    partial = load_detail(engine, exp_id("local-partial"))
    (train,) = partial.jobs
    assert train.config_error is None and train.config is not None
    assert train.config.get("optim.lr") == "0.25" and "nr_tasks" not in sys.modules
    docker = load_detail(engine, exp_id("docker-unknown")).jobs[0]
    assert docker.executor_error is not None  # not imported: shown as such, not a crash
