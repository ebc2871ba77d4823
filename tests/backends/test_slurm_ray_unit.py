"""SlurmRayBackend.prepare without a cluster: profile fields it cannot honour are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.ray.slurm_ray import SlurmRayBackend
from core.engine.executors_ray import SlurmRayExecutor
from core.engine.protocol import BackendError, JobSpec


def _spec(ex: SlurmRayExecutor, tmp_path: Path) -> JobSpec:
    return JobSpec(
        experiment_id="exp-1",
        job_name="main",
        run_tag="nrt-unit-1",
        argv=["python", "-c", "print(1)"],
        executor=ex,
        job_dir=str(tmp_path / "exp-1" / "main"),
        workdir=str(tmp_path),
    )


def test_prepare_runs_the_bootstrap_as_the_sbatch_command(tmp_path: Path) -> None:
    ex = SlurmRayExecutor(ray_python="/opt/ray/bin/python", job_dir=str(tmp_path / "remote"))
    prepared = SlurmRayBackend.from_profile(ex).prepare(_spec(ex, tmp_path))
    assert prepared.outer.argv[0] == "/opt/ray/bin/python"
    assert prepared.outer.argv[1].endswith("nemorun-slurm-ray.py")


def test_prepare_refuses_a_launcher_it_would_wrap_around_the_bootstrap(tmp_path: Path) -> None:
    ex = SlurmRayExecutor(
        ray_python="/opt/ray/bin/python", job_dir=str(tmp_path / "remote"), launcher="torchrun"
    )
    with pytest.raises(BackendError, match="launcher"):
        SlurmRayBackend.from_profile(ex).prepare(_spec(ex, tmp_path))


async def test_a_sweep_is_one_ray_cluster_per_point_never_a_bare_array(tmp_path: Path) -> None:
    """The Slurm array runs points.sh, which would start each entrypoint with no Ray cluster."""
    from core.config import Script
    from core.engine import Engine
    from core.engine.executors import LocalTunnel
    from core.engine.sweep_plan import task_sweep_plan
    from core.engine.sweep_submit import array_jobs
    from core.store import Store
    from core.sweep import parse_param

    ex = SlurmRayExecutor(
        ray_python="/opt/ray/bin/python", tunnel=LocalTunnel(job_dir=str(tmp_path / "jobs"))
    )
    plan = task_sweep_plan(
        Script(inline="true"), [parse_param("inline='echo a','echo b'")], ex, title="s"
    )
    assert array_jobs(plan) is None
    dries = await Engine(Store(tmp_path / "home")).dryrun(plan)
    assert len(dries) == 2
    assert all(d.backend == "slurm_ray" and "ray-config.json" in d.artifacts for d in dries)
