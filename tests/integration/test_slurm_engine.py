"""Launch, relaunch and packaged code through the engine on the real Slurm cluster.

Runs on the "login node" (LocalTunnel) and "from a laptop" (SSHTunnel to the CI sshd). The
packaged code reaches the job verified by hash; a relaunch of unchanged code uploads nothing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ci_services import slurm_available, sshd_available, sshd_service
from services import require_service

from core.config import Script
from core.engine import Engine, Plan
from core.engine.executors import LocalTunnel, SlurmExecutor, SSHTunnel
from core.engine.launch_events import Uploading
from core.engine.states import JobState
from core.packaging import GitArchivePackager
from core.store import Store

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.email", "t@example.com"],
        ["config", "user.name", "T"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    (repo / "hello.txt").write_text("code from the archive\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "c"], check=True)
    return repo


@pytest.mark.parametrize("via", ["local", "ssh"])
async def test_packaged_code_runs_on_slurm_and_relaunch_uploads_nothing(
    tmp_path: Path, via: str
) -> None:
    ok, why = slurm_available()
    require_service(ok, why)
    jobs = str(tmp_path / "cluster-jobs")
    if via == "ssh":
        ok, why = sshd_available()
        require_service(ok, why)
        s = sshd_service()
        tunnel: LocalTunnel | SSHTunnel = SSHTunnel(
            host=s.alias, ssh_config=s.ssh_config, job_dir=jobs
        )
    else:
        tunnel = LocalTunnel(job_dir=jobs)
    repo = make_repo(tmp_path)
    executor = SlurmExecutor(
        tunnel=tunnel, poll_rate=5.0, packager=GitArchivePackager(basepath=str(repo))
    )
    engine = Engine(Store(tmp_path / "home"))
    uploaded: list[tuple[int, int]] = []

    def on_event(event: object) -> None:
        if isinstance(event, Uploading):
            uploaded.append((event.done, event.total))

    plan = Plan(title=f"slurm-pkg-{via}")
    plan.add(Script(inline="cat hello.txt"), executor, name="cat")
    first = await engine.wait((await engine.launch(plan, on_event=on_event)).id, max_interval=0.5)
    assert first.state is JobState.SUCCEEDED, first.jobs[0].reason
    out = b"".join([c async for c in engine.logs(first.id)])
    assert out == b"code from the archive\n"
    sent_first = max((d for d, _ in uploaded), default=0)
    if via == "ssh":
        assert sent_first > 0  # the archive crossed the wire once

    uploaded.clear()
    relaunch = engine.relaunch_plan(first.id)
    assert relaunch.jobs[0].package is not None and relaunch.jobs[0].package.reused
    second = await engine.wait(
        (await engine.launch(relaunch, on_event=on_event)).id, max_interval=0.5
    )
    assert second.state is JobState.SUCCEEDED
    assert second.parent == first.id
    assert max((d for d, _ in uploaded), default=0) == 0  # unchanged code: nothing sent
    from core.engine import registry

    await registry.close_all()
