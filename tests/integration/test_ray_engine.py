"""Launch and relaunch through the engine on the real Ray head (``.ci/services/ray.sh``).

The packaged code becomes the job's ``working_dir`` (uploaded once per content hash: a
relaunch of unchanged code uploads nothing); a Python task travels inside the request.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from ci_services import ray_available, ray_service
from services import require_service

from core.config import Partial, Script
from core.engine import Engine, Plan, registry
from core.engine.executors_ray import RayExecutor
from core.engine.launch_events import Uploading
from core.engine.states import JobState
from core.packaging import GitArchivePackager
from core.store import Store

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def make_repo(root: Path, token: str) -> Path:
    repo = root / "repo"
    repo.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.email", "t@example.com"],
        ["config", "user.name", "T"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    # Unique content: a package this head has never seen, so the first launch uploads it
    # (the CI head lives across runs, and tmp_path's name repeats from run to run).
    (repo / "hello.txt").write_text(f"code from the archive {token}\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "c"], check=True)
    return repo


async def test_packaged_script_and_python_task_run_on_ray_and_relaunch(tmp_path: Path) -> None:
    require_service(*ray_available())
    token = uuid.uuid4().hex
    repo = make_repo(tmp_path, token)
    executor = RayExecutor(
        address=ray_service().address,
        packager=GitArchivePackager(basepath=str(repo)),
        log_interval=0.2,
    )
    engine = Engine(Store(tmp_path / "home"))
    uploaded: list[tuple[int, int]] = []

    def on_event(event: object) -> None:
        if isinstance(event, Uploading):
            uploaded.append((event.done, event.total))

    plan = Plan(title="ray-pkg")
    plan.add(Script(inline="cat hello.txt; echo $NEMORUN_JOB_NAME"), executor, name="cat")
    made = tmp_path / "made-by-the-task"
    plan.add(Partial(os.makedirs, name=str(made), exist_ok=True), executor, name="task")
    try:
        first = await engine.wait(
            (await engine.launch(plan, on_event=on_event)).id, max_interval=0.5
        )
        assert first.state is JobState.SUCCEEDED, [j.reason for j in first.jobs]
        by_name = {j.name: j for j in first.jobs}
        out = b"".join([c async for c in engine.logs(first.id, "cat")])
        assert out == f"code from the archive {token}\ncat\n".encode()
        assert made.is_dir(), "the Python task did not run"
        assert by_name["cat"].exit_code == 0
        assert max((d for d, _ in uploaded), default=0) > 0  # the archive went up once

        uploaded.clear()
        relaunch = engine.relaunch_plan(first.id)
        second = await engine.wait(
            (await engine.launch(relaunch, on_event=on_event)).id, max_interval=0.5
        )
        assert second.state is JobState.SUCCEEDED
        assert second.parent == first.id
        assert max((d for d, _ in uploaded), default=0) == 0  # the cluster has it already
    finally:
        await registry.close_all()
