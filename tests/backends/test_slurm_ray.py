"""Ray on Slurm on the real single-node CI cluster: head only, entrypoint runs, cancel tears down.

Needs Slurm (``.ci/services/slurm.sh``) and the Ray venv (``.ci/services/ray.sh``; its
interpreter starts the in-allocation head). Each test starts one more Ray head (18-25 s to
come up on this 2-core machine) and must leave none of its processes behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import time
import uuid
from pathlib import Path

import pytest
from ci_services import (
    ray_available,
    ray_service,
    slurm_available,
    sshd_available,
    sshd_service,
)
from services import require_service

from backends.ray.slurm_ray import SlurmRayBackend
from core.engine.executors import LocalTunnel, SSHTunnel, profile_from_dict
from core.engine.executors_ray import SlurmRayExecutor
from core.engine.protocol import Handle, JobSpec
from core.engine.states import JobState, StatusReport

pytestmark = [pytest.mark.slurm, pytest.mark.ray, pytest.mark.slow]


def cluster_pids(slurm_job_id: str) -> list[int]:
    """Processes of that job's Ray cluster (every one carries NEMORUN_RAY_CLUSTER=<id>)."""
    needle = f"NEMORUN_RAY_CLUSTER={slurm_job_id}".encode() + b"\0"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


@pytest.fixture(params=["login-node", "ssh"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> SlurmRayBackend:
    """On the login node, and from a laptop over SSH (status then comes from the job dir's
    ray-status.json through the SSH transport: no route to the compute node is needed)."""
    require_service(*slurm_available())
    require_service(*ray_available())
    tunnel: LocalTunnel | SSHTunnel = LocalTunnel()
    if request.param == "ssh":
        require_service(*sshd_available())
        s = sshd_service()
        tunnel = SSHTunnel(host=s.alias, ssh_config=s.ssh_config, job_dir=str(tmp_path / "r"))
    executor = SlurmRayExecutor(
        tunnel=tunnel,
        ray_python=ray_service().python,
        object_store_memory=100_000_000,
        num_cpus=1,
        poll_rate=5.0,
        head_start_timeout=150.0,
        time="00:10:00",  # an allocation orphaned by a killed test run ends by itself
    )
    return SlurmRayBackend.from_profile(executor)


def spec(backend: SlurmRayBackend, tmp_path: Path, argv: list[str], **kw: object) -> JobSpec:
    tag = f"nrt-slurmray-{uuid.uuid4().hex[:8]}"
    return JobSpec(
        experiment_id=f"slurmray-{os.getpid()}",
        job_name="main",
        run_tag=tag,
        argv=argv,
        executor=backend.executor,
        job_dir=str(tmp_path / "job"),
        workdir=str(tmp_path),
        **kw,  # type: ignore[arg-type]
    )


async def wait_for(
    backend: SlurmRayBackend, handle: Handle, want: set[JobState], timeout: float = 180.0
) -> list[StatusReport]:
    seen: list[StatusReport] = []
    deadline = time.monotonic() + timeout
    while True:
        report = (await backend.poll([handle]))[handle]
        seen.append(report)
        if report.state in want:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{handle} never reached {want}; last {report}")
        await asyncio.sleep(0.5)


async def test_head_only_cluster_runs_the_entrypoint_and_goes_away(
    backend: SlurmRayBackend, tmp_path: Path
) -> None:
    code = (
        "import os, sys, ray; ray.init(); "
        "print('nodes', len(ray.nodes()), os.environ['NEMORUN_JOB_NAME'], os.environ['TOKEN']); "
        "print('to stderr', file=sys.stderr); sys.exit(5)"
    )
    job = spec(backend, tmp_path, ["python", "-c", code], secret_env={"TOKEN": "t0ken"})
    dry = await backend.dryrun(job)
    assert "t0ken" not in dry.summary + "".join(dry.artifacts.values())

    handle = await backend.submit(job)
    seen = await wait_for(backend, handle, {JobState.SUCCEEDED, JobState.FAILED})
    try:
        final = seen[-1]
        assert final.state is JobState.FAILED and final.exit_code == 5, final
        assert "exit code 5" in (final.reason or "") and f"Slurm job {handle.job_id}" in (
            final.reason or ""
        )
        reasons = " | ".join(r.reason or "" for r in seen)
        assert "starting the Ray cluster" in reasons or "allocation" in reasons
        out = b"".join([c async for c in backend.logs(handle)])
        assert out == b"nodes 1 main t0ken\n"
        err = b"".join([c async for c in backend.logs(handle, stream="stderr")])
        assert err.endswith(b"\nto stderr\n")  # after ray.init()'s own log line
        assert b"nodes 1" not in err
        config = Path(backend._dirs[handle.job_id]) / "ray-config.json"
        assert "t0ken" not in config.read_text()
        assert cluster_pids(handle.job_id) == []
    finally:
        await backend.cancel(handle)
        await backend.close()


@pytest.mark.parametrize("backend", ["login-node"], indirect=True)
async def test_cancel_stops_the_ray_job_and_tears_the_cluster_down(
    backend: SlurmRayBackend, tmp_path: Path
) -> None:
    marker = tmp_path / "late"
    script = f"echo started; sleep 5; echo late > {marker}; sleep 120"
    handle = await backend.submit(spec(backend, tmp_path, ["bash", "-c", script]))
    try:
        await wait_for(backend, handle, {JobState.RUNNING})
        async with asyncio.timeout(60):
            while b"started" not in b"".join([c async for c in backend.logs(handle)]):
                await asyncio.sleep(0.5)
        assert cluster_pids(handle.job_id), "no Ray process of this cluster was seen running"

        await backend.cancel(handle)
        seen = await wait_for(
            backend, handle, {JobState.CANCELLED, JobState.FAILED, JobState.SUCCEEDED}, 60
        )

        assert seen[-1].state is JobState.CANCELLED, seen[-1]
        deadline = time.monotonic() + 10
        while cluster_pids(handle.job_id) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert cluster_pids(handle.job_id) == [], "Ray processes outlived the cancelled job"
        await asyncio.sleep(5)
        assert not marker.exists(), "the entrypoint kept running after cancel"
    finally:
        await backend.cancel(handle)
        await backend.close()


async def test_dryrun_requests_every_node_once_and_runs_the_bootstrap_once(
    tmp_path: Path,
) -> None:
    """Pure: ``nodes`` reaches sbatch (the last --nodes wins) without srun on every node."""
    executor = SlurmRayExecutor(ray_python="/shared/ray/bin/python", nodes=3, partition="gpu")
    backend = SlurmRayBackend.from_profile(executor)
    job = spec(backend, tmp_path, ["python", "train.py", "--lr=$(boom)"], secret_env={"K": "v4l"})

    dry = await backend.dryrun(job)

    script = dry.artifacts["sbatch.sh"]
    nodes = [line for line in script.splitlines() if line.startswith("#SBATCH --nodes=")]
    assert nodes[-1] == "#SBATCH --nodes=3"
    command = script.strip().splitlines()
    bootstrap_line = next(line for line in command if "nemorun-slurm-ray.py" in line)
    assert bootstrap_line.startswith("/shared/ray/bin/python ") and "srun" not in bootstrap_line
    config = json.loads(dry.artifacts["ray-config.json"])
    assert config["secret_names"] == ["K"] and "v4l" not in json.dumps(config)
    # Ray runs the entrypoint with a shell: it must read back the argv unchanged.
    words = shlex.split(config["body"]["entrypoint"])
    assert words[:2] == ["/shared/ray/bin/python", "-c"]
    assert json.loads(words[-1])["argv"] == ["python", "train.py", "--lr=$(boom)"]
    assert profile_from_dict(executor.to_dict()) == executor
