"""On the real Slurm cluster: an unguarded script submits exactly one job per launch call.

Bounded even if the guard fails: the script caps its own imports, the launcher runs under a
hard timeout, and every Slurm job whose name carries this test's unique title is cancelled
afterwards.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from ci_services import slurm_available
from launch_scripts import experiment_count, lines, run_bounded, unguarded_script
from services import require_service

from core.engine import Engine
from core.store import Store

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _slurm_jobs_named(token: str) -> list[str]:
    """Ids of every job (queued or in accounting) whose name contains ``token``."""
    ids: set[str] = set()
    for argv in (
        ["squeue", "-h", "-t", "all", "-o", "%i|%j"],
        ["sacct", "-n", "-P", "-X", "-S", "now-1hour", "-o", "JobID,JobName"],
    ):
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        ids.update(line.split("|", 1)[0] for line in out.splitlines() if token in line)
    return sorted(ids)


async def test_unguarded_script_submits_one_slurm_job_per_launch(tmp_path: Path) -> None:
    ok, why = slurm_available()
    require_service(ok, why)
    token = f"selfl{uuid.uuid4().hex[:8]}"
    jobs = tmp_path / "cluster-jobs"
    executor = f"run.SlurmExecutor(tunnel=run.LocalTunnel(job_dir={str(jobs)!r}), poll_rate=5.0)"
    script = unguarded_script(tmp_path, executor, token)
    try:
        result = run_bounded(script, timeout=150)
    finally:
        ids = _slurm_jobs_named(token)
        if ids:
            subprocess.run(["scancel", *ids], check=False)
    assert result.returncode == 0, result.stderr
    assert "launched SUCCEEDED" in result.stdout
    assert lines(tmp_path / "runs") == ["train depth=1", "train depth=1"]
    assert experiment_count(tmp_path / "home") == 2
    assert len(ids) == 2, ids  # one sbatch per top-level launch call, none from the jobs
    engine = Engine(Store(tmp_path / "home"))
    for summary in engine.store.list():
        record = engine.store.load(summary.id)
        assert record.state.value == "SUCCEEDED"
        err = b"".join([c async for c in engine.logs(record.id, stream="stderr")]).decode()
        assert err.count("SelfLaunchWarning") == 1, err
        assert 'if __name__ == "__main__":' in err
