"""Packaging through the engine: provenance recorded, code extracted, archives reused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from core.config import Script
from core.engine import Engine, Plan
from core.engine.executors import LocalExecutor
from core.engine.states import JobState
from core.packaging import (
    GitArchivePackager,
    Provenance,
    UncommittedChangesError,
    diff_provenance,
)
from core.store import Store


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "T")
    (repo / "hello.txt").write_text("committed\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    return repo


async def launch_cat(engine: Engine, packager: GitArchivePackager) -> str:
    plan = Plan(title="pkg")
    plan.add(Script(inline="cat hello.txt"), LocalExecutor(packager=packager), name="cat")
    record = await engine.launch(plan)
    record = await engine.wait(record.id)
    assert record.state is JobState.SUCCEEDED, record.jobs[0].reason
    return record.id


async def read_log(engine: Engine, exp_id: str) -> bytes:
    return b"".join([c async for c in engine.logs(exp_id)])


async def test_job_runs_the_packaged_commit_and_records_provenance(
    tmp_path: Path, repo: Path
) -> None:
    engine = Engine(Store(tmp_path / "home"))
    (repo / "hello.txt").write_text("dirty edit\n")  # uncommitted: warn policy
    plan = Plan(title="pkg")
    plan.add(
        Script(inline="cat hello.txt"),
        LocalExecutor(packager=GitArchivePackager(basepath=str(repo))),
    )
    warnings = await engine.package(plan)
    assert warnings and "hello.txt" in " ".join(warnings)
    record = await engine.launch(plan)
    record = await engine.wait(record.id)
    assert await read_log(engine, record.id) == b"committed\n"
    prov = engine.provenance_of(record.id, record.jobs[0].name)
    assert prov is not None
    assert prov["git_commit"] == git(repo, "rev-parse", "HEAD")
    assert "dirty edit" in prov["dirty_diff"]
    assert (engine.package_cache / f"{prov['archive_sha256']}.tar.gz").is_file()


async def test_relaunch_reuses_the_archive_unless_repackaging(tmp_path: Path, repo: Path) -> None:
    engine = Engine(Store(tmp_path / "home"))
    first = await launch_cat(engine, GitArchivePackager(basepath=str(repo)))
    (repo / "hello.txt").write_text("second commit\n")
    git(repo, "commit", "-q", "-am", "second")
    reuse = engine.relaunch_plan(first)
    assert reuse.jobs[0].package is not None and reuse.jobs[0].package.reused
    child = await engine.wait((await engine.launch(reuse)).id)
    assert await read_log(engine, child.id) == b"committed\n"  # the parent's code, not HEAD
    fresh = engine.relaunch_plan(first, repackage=True)
    newer = await engine.wait((await engine.launch(fresh)).id)
    assert await read_log(engine, newer.id) == b"second commit\n"
    old_prov = engine.provenance_of(first, "cat")
    new_prov = engine.provenance_of(newer.id, "cat")
    assert old_prov and new_prov
    lines = diff_provenance(Provenance.from_dict(old_prov), Provenance.from_dict(new_prov))
    assert any(old_prov["git_commit"][:7] in line for line in lines), lines


async def test_refusing_policy_writes_nothing(tmp_path: Path, repo: Path) -> None:
    engine = Engine(Store(tmp_path / "home"))
    (repo / "hello.txt").write_text("dirty\n")
    plan = Plan(title="strict")
    plan.add(
        Script(inline="true"),
        LocalExecutor(packager=GitArchivePackager(basepath=str(repo), uncommitted="refuse")),
    )
    with pytest.raises(UncommittedChangesError):
        await engine.launch(plan)
    assert engine.store.list() == []
