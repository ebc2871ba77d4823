"""Symlinks while packaging: never followed out of the root, one policy on every backend.

Policy: a packaged symlink must point inside the packaged tree. One pointing outside (or
to an absolute path) is refused while collecting, with the link named, before anything is
recorded or submitted, for local and Slurm alike. Inside links are packaged as links and
behave the same after either extraction. The Slurm tests use the real CI cluster (skipped
without it, failing under CI=true).
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import os
import tarfile
import time
import uuid
from pathlib import Path

import pytest
from ci_services import slurm_available
from services import require_service

from backends.slurm import SlurmBackend
from core.config import Script
from core.engine import Engine, Plan
from core.engine.executors import LocalExecutor, LocalTunnel, SlurmExecutor
from core.engine.protocol import BackendError, JobSpec
from core.engine.states import JobState
from core.packaging import GitArchivePackager, PackagingError, PatternPackager, list_archive
from core.packaging import pattern as pattern_mod
from core.packaging.base import UnsafeEntryError
from core.packaging.pattern import match_files
from core.store import Store

# ------------------------------------------------------------------ the pattern packager


@pytest.fixture
def tree(tmp_path: Path, h) -> Path:
    """``root`` inside ``tmp_path/a/b``; outside it, a tree that must never be walked."""
    root = tmp_path / "a" / "b" / "root"
    h.write(root / "train.py", "print(1)\n")
    h.write(root / "pkg/mod.py", "X = 1\n")
    for i in range(50):
        h.write(tmp_path / "a" / "elsewhere" / f"f{i}.py", "outside\n")
    return root


def test_directory_symlink_up_the_tree_is_not_walked(tree: Path) -> None:
    os.symlink("../..", tree / "up")
    found, unmatched = match_files(tree, ["**/*.py", "up/*", "up/elsewhere/f1.py"])
    assert sorted(found) == ["pkg/mod.py", "train.py"]
    assert unmatched == ["up/*", "up/elsewhere/f1.py"]  # nothing matches through a link
    with pytest.raises(UnsafeEntryError, match=r"refusing to package 'up': symlink to '\.\./\.\.'"):
        PatternPackager(include_pattern="**", relative_path=str(tree)).package(tree.parent / "o")


def test_symlink_cycles_end_and_are_packaged_as_links(tree: Path, tmp_path: Path) -> None:
    os.symlink(".", tree / "loop")
    os.symlink("..", tree / "pkg" / "back")
    os.symlink("pkg", tree / "lib")
    started = time.monotonic()
    result = PatternPackager(include_pattern="**", relative_path=str(tree)).package(tmp_path / "o")
    assert time.monotonic() - started < 5
    names = set(list_archive(result.archive))
    assert {"train.py", "pkg/mod.py", "loop", "pkg/back", "lib"} <= names
    assert not any(n.startswith(("loop/", "lib/", "pkg/back/")) for n in names)


def test_matcher_agrees_with_glob_when_there_are_no_symlinks(tmp_path: Path, h) -> None:
    root = tmp_path / "r"
    for rel in (
        "a.py",
        ".hidden.py",
        "src/b.py",
        "src/.c.py",
        "src/deep/d.yaml",
        ".cfg/x.yaml",
        "docs/readme.md",
        "docs/img/logo.png",
        "src/deep/e.py",
    ):
        h.write(root / rel, rel)
    patterns = [
        "*.py",
        "**/*.py",
        "src/**",
        "**",
        "src/*/*.yaml",
        ".*",
        ".cfg/*",
        "**/*.yaml",
        "docs",
        "src/?.py",
        "src/[ab].py",
        "nothing/*",
        "./src/b.py",
        "src/../a.py",
    ]
    for pattern in patterns:
        found, _ = match_files(root, [pattern])
        expected: set[str] = set()
        for hit in glob.glob(pattern, root_dir=root, recursive=True):
            rel = os.path.normpath(hit)
            if os.path.isdir(root / rel):
                for dirpath, _dirs, files in os.walk(root / rel):
                    expected |= {os.path.relpath(os.path.join(dirpath, f), root) for f in files}
            else:
                expected.add(rel)
        assert set(found) == expected, pattern


def test_walk_is_bounded(tree: Path, monkeypatch) -> None:
    monkeypatch.setattr(pattern_mod, "MAX_VISITED", 2)
    with pytest.raises(PackagingError, match="more than 2 entries"):
        match_files(tree, ["**"])


def test_tracked_directory_replaced_by_an_outside_link_is_not_read(tmp_path: Path, h) -> None:
    repo = h.init_repo(tmp_path / "repo", {"d/f.txt": "tracked\n", "x.txt": "x\n"})
    h.write(tmp_path / "secret" / "f.txt", "SECRET\n")
    (repo / "d" / "f.txt").unlink()
    (repo / "d").rmdir()
    os.symlink(str(tmp_path / "secret"), repo / "d")
    packed = GitArchivePackager(basepath=str(repo), uncommitted="include").package(tmp_path / "o")
    assert "d/f.txt" not in list_archive(packed.archive)


# -------------------------------------------------------- one policy for every backend


def repo_with_link(tmp_path: Path, h, target: str) -> Path:
    repo = h.init_repo(tmp_path / "repo", {"data/real.txt": "through the link\n"})
    os.symlink(target, repo / "link.txt")
    h.git(repo, "add", "-A")
    h.git(repo, "commit", "-q", "-m", "link")
    return repo


def slurm_executor(tmp_path: Path, packager: GitArchivePackager) -> SlurmExecutor:
    ok, why = slurm_available()
    require_service(ok, why)
    return SlurmExecutor(
        tunnel=LocalTunnel(job_dir=str(tmp_path / "cluster-jobs")), poll_rate=5.0, packager=packager
    )


@pytest.mark.parametrize("backend", ["local", "slurm"])
@pytest.mark.parametrize("target", ["../../outside.txt", "/etc/hostname"])
async def test_outside_link_is_refused_before_anything_is_recorded(
    tmp_path: Path, h, backend: str, target: str
) -> None:
    repo = repo_with_link(tmp_path, h, target)
    packager = GitArchivePackager(basepath=str(repo))
    executor = (
        LocalExecutor(packager=packager)
        if backend == "local"
        else (slurm_executor(tmp_path, packager))
    )
    engine = Engine(Store(tmp_path / "home"))
    plan = Plan(title="outside-link")
    plan.add(Script(inline="cat link.txt"), executor, name="cat")
    with pytest.raises(UnsafeEntryError) as raised:
        await engine.launch(plan)
    assert raised.value.path == "link.txt"
    what = f"the absolute path {target!r}" if target.startswith("/") else repr(target)
    assert f"refusing to package 'link.txt': symlink to {what}" in str(raised.value)
    assert engine.store.list() == []
    assert not (tmp_path / "cluster-jobs").exists()
    with pytest.raises(UnsafeEntryError):  # the launch dialog sees it before any work
        packager.preflight()


@pytest.mark.slurm
async def test_inside_link_runs_the_same_locally_and_on_slurm(tmp_path: Path, h) -> None:
    repo = repo_with_link(tmp_path, h, "data/real.txt")
    packager = GitArchivePackager(basepath=str(repo))
    engine = Engine(Store(tmp_path / "home"))
    outputs = {}
    for name, executor in (
        ("local", LocalExecutor(packager=packager)),
        ("slurm", slurm_executor(tmp_path, packager)),
    ):
        plan = Plan(title=f"inside-link-{name}")
        plan.add(Script(inline="cat link.txt; test -L link.txt && echo is-a-link"), executor)
        record = await engine.wait((await engine.launch(plan)).id, max_interval=0.5)
        assert record.state is JobState.SUCCEEDED, record.jobs[0].reason
        outputs[name] = b"".join([c async for c in engine.logs(record.id)])
    assert outputs["local"] == outputs["slurm"] == b"through the link\nis-a-link\n"
    from core.engine import registry

    await registry.close_all()


@pytest.mark.slurm
async def test_slurm_refuses_a_crafted_archive_before_tar_or_sbatch(tmp_path: Path) -> None:
    """An archive that skipped the packager (a tampered cache) meets the same checks."""
    executor = slurm_executor(tmp_path, GitArchivePackager())
    outside = tmp_path / "outside"
    outside.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("s")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tar.addfile(link)
        pwned = tarfile.TarInfo("s/pwned")
        pwned.size = 2
        tar.addfile(pwned, io.BytesIO(b"x\n"))
    data = gzip.compress(buf.getvalue())
    sha = hashlib.sha256(data).hexdigest()
    archive = tmp_path / "packages" / f"{sha}.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(data)
    exp = f"crafted-{uuid.uuid4().hex[:8]}"
    spec = JobSpec(
        experiment_id=exp,
        job_name="j",
        run_tag=f"nrt-{exp}-j",
        argv=["true"],
        executor=executor,
        job_dir=str(tmp_path / "store" / "j"),
        workdir=str(tmp_path),
        archive=str(archive),
        archive_sha256=sha,
    )
    backend = SlurmBackend(executor)
    try:
        with pytest.raises(BackendError, match="refusing to extract"):
            await backend.submit(spec)
        job_dir = tmp_path / "cluster-jobs" / exp / "j"
        assert sorted(os.listdir(job_dir)) == []  # no code/, no script, no submit marker
        assert os.listdir(outside) == []
        assert await backend.lookup_tag(spec.run_tag) is None  # never sbatch-ed
    finally:
        await backend.close()
