"""What a Slurm job produced, read from a laptop: over the SSH tunnel to the CI sshd.

The job writes metrics and a checkpoint into ``NEMORUN_JOB_DIR`` on the cluster, then fails
with a traceback; metrics, artifacts, fetch and the cause all arrive through the backend's
``job_outputs`` and the shared SSH connection (the cluster's job dir is not the store's).
"""

from __future__ import annotations

import hashlib
import sys
import textwrap
from pathlib import Path

import pytest
from ci_services import slurm_available, sshd_available, sshd_service
from services import require_service

from core.config import Script
from core.engine import Engine, Plan, registry
from core.engine.executors import SlurmExecutor, SSHTunnel
from core.engine.states import JobState
from core.results.fetch import fetch, source_path
from core.results.jobs import artifacts, read_metrics
from core.results.locate import locate
from core.results.triage import triage
from core.store import Store

pytestmark = [pytest.mark.slurm, pytest.mark.sshd, pytest.mark.slow]

JOB = textwrap.dedent(
    """
    import json, os
    out = os.environ["NEMORUN_JOB_DIR"]
    with open(os.path.join(out, "metrics.jsonl"), "w") as fh:
        for step in range(5):
            fh.write(json.dumps({"step": step, "loss": 2.0 - step * 0.25}) + "\\n")
    os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
    with open(os.path.join(out, "checkpoints", "step=4.ckpt"), "wb") as fh:
        fh.write(os.urandom(300_000))
    def save():
        raise OSError("disk quota exceeded on /scratch")
    save()
    """
)


async def test_metrics_artifacts_fetch_and_cause_over_ssh(tmp_path: Path) -> None:
    for ok, why in (slurm_available(), sshd_available()):
        require_service(ok, why)
    s = sshd_service()
    cluster = tmp_path / "cluster-jobs"
    script = tmp_path / "job.py"
    script.write_text(JOB)
    executor = SlurmExecutor(
        tunnel=SSHTunnel(host=s.alias, ssh_config=s.ssh_config, job_dir=str(cluster)),
        poll_rate=5.0,
    )
    engine = Engine(Store(tmp_path / "home"))
    plan = Plan(title="results-over-ssh")
    plan.add(Script(inline=f"{sys.executable} {script}"), executor, name="train")
    try:
        record = await engine.wait((await engine.launch(plan)).id, max_interval=0.5)
        assert record.state is JobState.FAILED
        outputs = await locate(engine, record.id, "train")
        assert outputs.remote and outputs.job_dir.startswith(str(cluster))
        snap = await read_metrics(engine, record.id, "train")
        assert snap.series["loss"].values.tolist() == [2.0, 1.75, 1.5, 1.25, 1.0]
        listing = await artifacts(engine, record.id, "train")
        ckpt = listing.find("checkpoints/step=4.ckpt")
        assert ckpt is not None and ckpt.checkpoint and ckpt.size == 300_000
        local_ckpt = Path(outputs.job_dir) / "checkpoints" / "step=4.ckpt"  # same machine
        assert ckpt.sha256 == hashlib.sha256(local_ckpt.read_bytes()).hexdigest()
        names = [a.path for a in listing.artifacts]
        assert not any(n.startswith(("slurm-", "sbatch-")) for n in names)
        dest = tmp_path / "fetched.ckpt"
        got = await fetch(outputs, source_path(outputs, ckpt.path), dest)
        assert got.sha256 == ckpt.sha256 and dest.read_bytes() == local_ckpt.read_bytes()
        cause = await triage(engine, record.id, "train")
        assert cause is not None and cause.kind == "python-exception"
        assert cause.exception is not None
        assert cause.exception["type"] == "OSError"
        assert cause.exception["file"] == str(script) and cause.stream == "stderr"
    finally:
        await registry.close_all()
