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
