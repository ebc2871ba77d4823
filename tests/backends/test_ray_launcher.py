"""A launcher on the Ray backend: the one-node launch line, and real ranks on the CI head.

The head (``.ci/services/ray.sh``) runs on this machine with its own venv, which has no
torch: a launcher job with the cluster's default ``python`` must fail with the clear
message, and one given this test venv's interpreter (CPU torch, gloo) must all-reduce.
Every real job is bounded (``asyncio.wait_for``) and launches at most two ranks.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ci_services import ray_available, ray_service
from rank_scripts import ALL_REDUCE, SLEEPER
from ray_support import make_spec, ray_backend, wait_state
from services import require_service

import nemorun_tui as run
from backends.ray import RayBackend, submission
from core.config import Script
from core.engine import Engine, Plan, registry
from core.engine.executor_overrides import ExecutorOverrideError, apply_executor_overrides
from core.engine.executors import profile_from_dict
from core.engine.executors_ray import RayExecutor
from core.engine.protocol import BackendError
from core.engine.states import JobState
from core.launchers import FaultTolerance, Torchrun
from core.settings import load_settings
from core.store import Store

BOUND = 180.0


def entry_spec(sub: submission.Submission) -> dict[str, object]:
    """The wrapper's JSON argument, as the cluster receives it."""
    spec: dict[str, object] = json.loads(shlex.split(sub.body["entrypoint"])[-1])
    return spec


# --------------------------------------------------------------------------- profile


def test_launcher_from_python_config_toml_and_overrides(tmp_path: Path) -> None:
    assert isinstance(RayExecutor(launcher="torchrun").launcher, Torchrun)
    ex = run.RayExecutor(launcher=run.FaultTolerance(rank_heartbeat_timeout=30), nproc_per_node=2)
    assert isinstance(ex.launcher, FaultTolerance) and ex.nproc_per_node == 2
    assert profile_from_dict(ex.to_dict()) == ex  # stored and read back
    assert RayExecutor().launcher is None

    path = tmp_path / "config.toml"
    path.write_text(
        '[executors.r1]\nbackend = "ray"\nlauncher = "ft"\nnproc_per_node = 4\n'
        '[executors.r2]\nbackend = "ray"\n'
        '[executors.r2.launcher]\n__type__ = "Torchrun"\nmax_restarts = 2\n'
    )
    settings = load_settings(path)
    r1, r2 = settings.profile("r1"), settings.profile("r2")
    assert isinstance(r1, RayExecutor) and isinstance(r1.launcher, FaultTolerance)
    assert r1.nproc_per_node == 4
    assert isinstance(r2, RayExecutor) and r2.launcher == Torchrun(max_restarts=2)

    changed = apply_executor_overrides(
        RayExecutor(), ["executor.launcher=torchrun", "executor.nproc_per_node=2"]
    )
    assert isinstance(changed.launcher, Torchrun) and changed.nproc_per_node == 2
    back = apply_executor_overrides(changed, ["executor.launcher=none"])
    assert back.launcher is None


def test_bad_launcher_values_are_refused_at_load() -> None:
    with pytest.raises(ValueError, match="unknown launcher"):
        RayExecutor(launcher="mpirun")
    with pytest.raises(ValueError, match="nproc_per_node"):
        RayExecutor(launcher="torchrun", nproc_per_node=0)
    with pytest.raises(ValueError, match="rdzv_port"):
        RayExecutor(launcher=Torchrun(rdzv_port=70000))
    with pytest.raises(ExecutorOverrideError, match="unknown launcher"):
        apply_executor_overrides(RayExecutor(), ["executor.launcher=horovod"])


# --------------------------------------------------------------------------- submission


def test_the_entrypoint_runs_the_one_node_launch_line(tmp_path: Path) -> None:
    ex = RayExecutor(launcher="torchrun", nproc_per_node=2, python="/opt/venv/bin/python")
    job = make_spec(ex, tmp_path, [sys.executable, "train.py", "--lr", "0.1"])

    spec = entry_spec(submission.build(ex, job))

    assert spec["argv"] == [
        "/opt/venv/bin/python",
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc-per-node=2",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=127.0.0.1:0",
        f"--rdzv-id={job.run_tag}",
        "--max-restarts=0",
        "--tee=3",
        "train.py",
        "--lr",
        "0.1",
    ]
    env = spec["env"]
    assert isinstance(env, dict)
    assert env["TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"] == "[rank${rank}]:"
    require = spec["require"]
    assert isinstance(require, dict) and require["module"] == "torch"
    assert "torchrun needs the Python package `torch`" in require["message"]
    assert "on the Ray cluster" in require["message"]


def test_default_python_a_launchers_own_ranks_and_the_ft_launcher(tmp_path: Path) -> None:
    # No python on the profile: the cluster's `python`, for the launcher and the ranks.
    ex = RayExecutor(launcher=Torchrun(nproc_per_node=3, rdzv_port=29555))
    job = make_spec(ex, tmp_path, [sys.executable, "-m", "pkg.train"])
    argv = entry_spec(submission.build(ex, job))["argv"]
    assert isinstance(argv, list)
    assert argv[:3] == ["python", "-m", "torch.distributed.run"]
    assert "--nproc-per-node=3" in argv and "--rdzv-endpoint=127.0.0.1:29555" in argv
    assert argv[-2:] == ["-m", "pkg.train"]

    # Not a Python command: run as is under the launcher.
    ft = RayExecutor(launcher=FaultTolerance(rank_heartbeat_timeout=60), python="/v/bin/python")
    spec = entry_spec(submission.build(ft, make_spec(ft, tmp_path, ["bash", "run.sh"])))
    argv = spec["argv"]
    assert isinstance(argv, list)
    assert argv[0] == "/v/bin/ft_launcher" and "--nproc-per-node=1" in argv
    assert "--ft-rank-heartbeat-timeout=60" in argv and "--max-restarts=3" in argv
    assert argv[-3:] == ["--no-python", "bash", "run.sh"]
    require = spec["require"]
    assert isinstance(require, dict) and require["module"] == "nvidia_resiliency_ext"
    assert "nvidia-resiliency-ext" in require["message"]


def test_without_a_launcher_the_command_is_unchanged_and_one_process(tmp_path: Path) -> None:
    ex = RayExecutor()
    spec = entry_spec(submission.build(ex, make_spec(ex, tmp_path, ["bash", "run.sh"])))
    assert spec["argv"] == ["bash", "run.sh"] and "require" not in spec
    env = spec["env"]
    assert isinstance(env, dict) and "TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE" not in env

    several = RayExecutor(nproc_per_node=2)
    with pytest.raises(BackendError, match="nproc_per_node=2 needs a launcher"):
        submission.build(several, make_spec(several, tmp_path, ["bash", "run.sh"]))


async def test_dryrun_shows_the_exact_launch_line(tmp_path: Path) -> None:
    ex = RayExecutor(address="http://127.0.0.1:1", launcher="torchrun", nproc_per_node=2)
    job = make_spec(ex, tmp_path, [sys.executable, "train.py"])
    backend = RayBackend(ex)
    try:
        dry = await backend.dryrun(job)
        built = entry_spec(submission.build(ex, job))["argv"]
        assert isinstance(built, list)
        assert dry.artifacts["command"] == shlex.join(built)
        assert dry.artifacts["command"].startswith("python -m torch.distributed.run --nnodes=1")
        request = json.loads(dry.artifacts["request.json"])
        assert json.loads(shlex.split(request["entrypoint"])[-1])["argv"] == built

        several = RayExecutor(address="http://127.0.0.1:1", nproc_per_node=2)
        with pytest.raises(BackendError, match="needs a launcher"):
            await RayBackend(several).dryrun(make_spec(several, tmp_path, ["true"]))
    finally:
        await backend.close()


# --------------------------------------------------------------------------- real head


def need_torch() -> None:
    require_service(
        importlib.util.find_spec("torch") is not None,
        "torch is not installed in the test venv (pip install torch==2.13.0: the CPU wheel)",
    )


def head_has(module: str) -> bool:
    """Whether the head's own ``python`` can import ``module`` (it should not have torch)."""
    code = f"import importlib.util,sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    found = subprocess.run([ray_service().python, "-c", code], timeout=60, check=False)
    return found.returncode == 0


@pytest.mark.ray
async def test_a_launcher_job_without_torch_on_the_cluster_fails_clearly(tmp_path: Path) -> None:
    require_service(*ray_available())
    if head_has("torch"):
        pytest.skip("the Ray head's venv has torch: nothing is missing to report")
    marker = tmp_path / "ran"
    async with ray_backend(launcher="torchrun") as backend:
        job = make_spec(
            backend.executor, tmp_path, ["bash", "-c", f"touch {shlex.quote(str(marker))}"]
        )
        handle = await backend.submit(job)
        report = await wait_state(
            backend, handle, {JobState.FAILED, JobState.SUCCEEDED}, timeout=BOUND
        )
        err = b"".join([c async for c in backend.logs(handle, stream="stderr")]).decode()

    assert report.state is JobState.FAILED and report.exit_code == 127, report
    assert err == (
        "nemorun: not run: torchrun needs the Python package `torch`, which the job's "
        "interpreter cannot import on the Ray cluster; install torch (pip install torch) "
        "there, or set launcher=None\n"
    )
    assert not marker.exists(), "the command ran although the launcher could not"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    yield Engine(Store(tmp_path / "home"))
    await registry.close_all()


async def launch_ranks(engine: Engine, tmp_path: Path, text: str, nproc: int) -> str:
    """Launch ``text`` as ``nproc`` ranks on the head; the experiment id."""
    path = tmp_path / f"ranks{nproc}.py"
    path.write_text(text)
    executor = RayExecutor(
        address=ray_service().address,
        launcher="torchrun",
        nproc_per_node=nproc,
        python=sys.executable,  # the head shares this machine: this venv has CPU torch
        log_interval=0.2,
    )
    plan = Plan(title=f"ray-ddp-{nproc}")
    plan.add(Script(path=str(path), entrypoint="python"), executor, name="ranks")
    record = await engine.launch(plan)
    return record.id


async def run_ranks(engine: Engine, tmp_path: Path, nproc: int) -> str:
    """Run the all-reduce as ``nproc`` ranks on the head, bounded; the experiment id."""
    exp_id = await launch_ranks(engine, tmp_path, ALL_REDUCE, nproc)
    try:
        await asyncio.wait_for(engine.wait(exp_id, max_interval=0.2), BOUND)
    except BaseException:
        await asyncio.wait_for(engine.cancel(exp_id), 60)
        raise
    return exp_id


@pytest.mark.ray
async def test_two_ranks_all_reduce_on_the_ray_head(engine: Engine, tmp_path: Path) -> None:
    require_service(*ray_available())
    need_torch()
    exp_id = await run_ranks(engine, tmp_path, 2)

    job = engine.store.load(exp_id).jobs[0]
    assert job.state is JobState.SUCCEEDED, job.reason
    whole = b"".join([c async for c in engine.logs(exp_id)]).decode()
    for rank in (0, 1):
        assert f"[rank{rank}]:rank={rank} world=2 sum=3 env_rank={rank}\n" in whole, whole
        only = b"".join([c async for c in engine.logs(exp_id, rank=rank)]).decode()
        assert only == f"rank={rank} world=2 sum=3 env_rank={rank}\n", only


@pytest.mark.ray
async def test_cancel_stops_every_rank_on_the_ray_head(engine: Engine, tmp_path: Path) -> None:
    require_service(*ray_available())
    need_torch()
    exp_id = await launch_ranks(engine, tmp_path, SLEEPER, 2)
    try:
        pids: dict[int, int] = {}
        deadline = time.monotonic() + BOUND
        while len(pids) < 2:
            assert time.monotonic() < deadline, "the ranks never started"
            await engine.refresh([exp_id])
            whole = b"".join([c async for c in engine.logs(exp_id)]).decode()
            for rank, pid in re.findall(r"\[rank(\d)\]:pid=(\d+)", whole):
                pids[int(rank)] = int(pid)
            await asyncio.sleep(0.3)
        for pid in pids.values():
            os.kill(pid, 0)  # alive before the cancel (the head shares this machine)
    finally:
        cancelled = await asyncio.wait_for(engine.cancel(exp_id), 60)
    assert cancelled == ["ranks"]
    done = await asyncio.wait_for(engine.wait(exp_id, max_interval=0.2), BOUND)
    assert done.jobs[0].state is JobState.CANCELLED, done.jobs[0].reason
    deadline = time.monotonic() + 30  # Ray stops with SIGTERM, then SIGKILL
    alive = set(pids.values())
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if _alive(pid)}
        await asyncio.sleep(0.2)
    assert not alive, f"ranks {sorted(alive)} outlived the cancelled Ray job"


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it is not)."""
    try:
        os.kill(pid, 0)
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
    except (ProcessLookupError, FileNotFoundError):
        return False
