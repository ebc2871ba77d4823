"""Detail's parent diff covers code as well as config (commit range from provenance)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from core.config import Script
from core.engine import Engine, Plan
from core.engine.executors import LocalExecutor
from core.packaging import GitArchivePackager
from core.store import Store
from nemorun_tui.widgets.detail_pane import load_detail


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


async def test_detail_of_a_repackaged_relaunch_shows_the_commit_range(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "T")
    (repo / "a.txt").write_text("one\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    first_commit = git(repo, "rev-parse", "HEAD")

    engine = Engine(Store(tmp_path / "home"))
    plan = Plan(title="code")
    executor = LocalExecutor(packager=GitArchivePackager(basepath=str(repo)))
    plan.add(Script(inline="cat a.txt"), executor, name="cat")
    parent = await engine.wait((await engine.launch(plan)).id)

    (repo / "a.txt").write_text("two\n")
    git(repo, "commit", "-q", "-am", "two")
    second_commit = git(repo, "rev-parse", "HEAD")
    child = await engine.launch(engine.relaunch_plan(parent.id, repackage=True))
    await engine.wait(child.id)

    detail = load_detail(engine, child.id)
    lines = " ".join(detail.jobs[0].code_diff)
    assert first_commit[:7] in lines and second_commit[:7] in lines, lines

    same = await engine.launch(engine.relaunch_plan(child.id))  # reuses the archive
    await engine.wait(same.id)
    assert load_detail(engine, same.id).jobs[0].code_diff == []
