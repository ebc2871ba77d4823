"""Leftovers of crashed writers are swept at the next launch: only our names, only old ones,
never through a symlink."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from core.config import Script
from core.engine import Engine, Plan, stale_files
from core.engine.executors import LocalExecutor
from core.store import Store

OLD = time.time() - 2 * stale_files.STALE_SECONDS


def _age(path: Path) -> Path:
    os.utime(path, (OLD, OLD), follow_symlinks=False)
    return path


def _file(path: Path, old: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    return _age(path) if old else path


def test_only_our_old_names_are_removed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    exps = home / "experiments"
    outside = tmp_path / "outside"
    _file(outside / "precious.txt")
    _file(exps / ".staging-a-1" / "jobs" / "j" / "task.json")
    _age(exps / ".staging-a-1")
    _file(exps / ".deleting-b-2" / "experiment.json")
    _age(exps / ".deleting-b-2")
    fresh = _file(exps / ".staging-live" / "experiment.json", old=False).parent
    (exps / ".staging-link").symlink_to(outside)
    _age(exps / ".staging-link")
    tmp_manifest = _file(exps / ".index.sqlite.12.345.abc123.tmp")
    user_file = _file(exps / "notes.tmp")
    pack_tmp = _file(home / "packages" / ".pack-77-0123abcd.tar.gz.tmp")
    archive = _file(home / "packages" / ("0" * 64 + ".tar.gz"))
    index_tmp = _file(home / "packages" / "index" / ".key.77.deadbeef.tmp")

    removed = stale_files.sweep_home(home)

    assert sorted(Path(p).name for p in removed) == sorted(
        [".staging-a-1", ".deleting-b-2", tmp_manifest.name, pack_tmp.name, index_tmp.name]
    )
    assert fresh.is_dir() and user_file.exists() and archive.exists()
    assert (exps / ".staging-link").is_symlink() and (outside / "precious.txt").exists()


def test_experiment_sweep_cleans_job_dirs(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    left = _file(exp / "jobs" / "train" / ".result.json.4242.1234567.tmp")
    keep = _file(exp / "jobs" / "train" / "result.json")
    manifest_tmp = _file(exp / ".experiment.json.1.2.ff.tmp")
    young = _file(exp / ".experiment.json.1.2.aa.tmp", old=False)
    assert sorted(stale_files.sweep_experiment(exp)) == sorted([str(left), str(manifest_tmp)])
    assert keep.exists() and young.exists()


async def test_next_launch_sweeps_a_crashed_create(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stale_files, "_last_sweep", {})
    store = Store(tmp_path / "home")
    engine = Engine(store)
    crashed = store.experiments_dir / ".staging-crashed-20260101-000000-abcd"
    _file(crashed / "jobs" / "a" / "task.json")
    _age(crashed)
    plan = Plan(title="after-crash")
    plan.add(Script(inline="true"), LocalExecutor())
    record = await engine.launch(plan)
    assert not crashed.exists()
    assert [s.id for s in store.list()] == [record.id]
