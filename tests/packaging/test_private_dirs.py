"""The package cache and the Slurm job-dir parents stay private whatever the umask.

Decision tested here: every directory the app *creates* (the package cache and its index,
the cluster's job-dir root when missing, ``<root>/<experiment>/<job>``, ``.packages``, the
code dir) is exactly 0700 and archives are 0600; the package cache is tightened back to
0700 if it exists wider (it is the app's); a directory the user made (an existing
``job_dir`` root such as a group's scratch dir) is never chmod-ed.
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ci_services import slurm_available, sshd_available, sshd_service
from services import require_service

from backends.slurm import SlurmBackend
from core.config import Script
from core.engine import Engine, Plan
from core.engine.executors import LocalExecutor, LocalTunnel, SlurmExecutor
from core.engine.protocol import JobSpec
from core.fsutil import makedirs_exact
from core.packaging import GitArchivePackager
from core.store import Store
from core.transport.local import LocalTransport

UMASKS = [0o000, 0o022]


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.parametrize("mask", UMASKS)
async def test_package_cache_is_private(tmp_path: Path, h, mask: int) -> None:
    repo = h.init_repo(tmp_path / "repo")
    engine = Engine(Store(tmp_path / "home"))
    plan = Plan(title="p")
    plan.add(Script(inline="true"), LocalExecutor(packager=GitArchivePackager(basepath=str(repo))))
    with umask(mask):
        await engine.package(plan)
    cache = engine.package_cache
    assert mode(cache) == 0o700
    assert mode(cache / ".index") == 0o700
    archives = list(cache.glob("*.tar.gz"))
    assert len(archives) == 1 and mode(archives[0]) == 0o600
    assert all(mode(p) == 0o600 for p in (cache / ".index").iterdir())


async def test_a_wider_package_cache_is_tightened(tmp_path: Path, h) -> None:
    repo = h.init_repo(tmp_path / "repo")
    engine = Engine(Store(tmp_path / "home"))
    engine.package_cache.mkdir(parents=True)
    os.chmod(engine.package_cache, 0o777)
    plan = Plan(title="p")
    plan.add(Script(inline="true"), LocalExecutor(packager=GitArchivePackager(basepath=str(repo))))
    await engine.package(plan)
    assert mode(engine.package_cache) == 0o700


@pytest.mark.parametrize("mask", UMASKS)
async def test_local_transport_creates_every_level_exactly(tmp_path: Path, mask: int) -> None:
    user_dir = tmp_path / "scratch"
    user_dir.mkdir()
    os.chmod(user_dir, 0o775)  # a group scratch dir the user made: not ours to change
    with umask(mask):
        await LocalTransport().makedirs(str(user_dir / "a" / "b" / "c"))
        makedirs_exact(tmp_path / "x" / "y", 0o750)
    assert mode(user_dir) == 0o775
    assert [mode(user_dir / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3
    assert [mode(tmp_path / p) for p in ("x", "x/y")] == [0o750] * 2


@pytest.mark.sshd
async def test_ssh_transport_creates_private_levels(tmp_path: Path) -> None:
    ok, why = sshd_available()
    require_service(ok, why)
    from core.transport.ssh import SSHTransport

    s = sshd_service()
    transport = SSHTransport(s.alias, ssh_config=s.ssh_config)
    try:
        await transport.makedirs(str(tmp_path / "r" / "a" / "b"))
    finally:
        await transport.close()
    assert [mode(tmp_path / p) for p in ("r", "r/a", "r/a/b")] == [0o700] * 3


@pytest.mark.slurm
@pytest.mark.parametrize("mask", UMASKS)
@pytest.mark.parametrize("root_exists", [False, True])
async def test_slurm_job_dir_parents_are_private(
    tmp_path: Path, h, mask: int, root_exists: bool
) -> None:
    """A real submit on the login-node path: every level it creates is 0700."""
    ok, why = slurm_available()
    require_service(ok, why)
    root = tmp_path / "cluster" / "jobs"
    if root_exists:
        root.mkdir(parents=True)
        os.chmod(root, 0o755)
    repo = h.init_repo(tmp_path / "repo", {"hello.txt": "hi\n"})
    packed = GitArchivePackager(basepath=str(repo)).package(tmp_path / "home" / "packages")
    executor = SlurmExecutor(tunnel=LocalTunnel(job_dir=str(root)), poll_rate=5.0)
    exp = f"perm-{uuid.uuid4().hex[:8]}"
    spec = JobSpec(
        experiment_id=exp,
        job_name="j",
        run_tag=f"nrt-{exp}-j",
        argv=["cat", "hello.txt"],
        executor=executor,
        job_dir=str(tmp_path / "store" / "j"),
        workdir=str(tmp_path),
        archive=str(packed.archive),
        archive_sha256=packed.sha256,
    )
    backend = SlurmBackend(executor)
    try:
        with umask(mask):
            await backend.submit(spec)
    finally:
        with contextlib.suppress(Exception):
            await backend.cancel_experiment(exp)
        await backend.close()
    created = [root / exp, root / exp / "j", root / exp / "j" / "code"]
    if not root_exists:
        created = [tmp_path / "cluster", root, *created]
    assert {str(p): mode(p) for p in created} == {str(p): 0o700 for p in created}
    if root_exists:
        assert mode(root) == 0o755  # the user's directory, left as they made it
    assert (root / exp / "j" / "code" / "hello.txt").read_text() == "hi\n"
