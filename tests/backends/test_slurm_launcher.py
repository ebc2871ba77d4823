"""Slurm + launchers without a cluster: the rendered launch lines, the rendezvous block run
by bash against a stand-in ``scontrol``, and the package check before sbatch."""

from __future__ import annotations

import importlib.util
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from backends.slurm import SlurmBackend
from backends.slurm.script import render
from core.engine.executors import LocalTunnel, SlurmExecutor
from core.engine.protocol import BackendError, JobSpec
from core.launchers import FaultTolerance, Torchrun
from core.transport.local import local_transport


def spec(executor: SlurmExecutor, job_dir: Path, argv: list[str] | None = None) -> JobSpec:
    return JobSpec(
        experiment_id="exp-1",
        job_name="train",
        run_tag="nrt-exp-1-train",
        argv=argv or [sys.executable, "/code/train.py", "$(id)", "a b"],
        executor=executor,
        job_dir=str(job_dir),
        workdir=str(job_dir),
    )


def launch_block(script: str) -> str:
    start = script.index("# --- rendezvous")
    end = script.index("nemorun_rc=$?")
    return script[start:end]


def test_srun_starts_one_launcher_per_node_with_the_ranks_per_node(tmp_path: Path) -> None:
    ex = SlurmExecutor(nodes=3, ntasks_per_node=4, cpus_per_task=2, launcher="torchrun")
    script = render(ex, spec(ex, tmp_path)).script
    assert "#SBATCH --nodes=3" in script and "#SBATCH --ntasks-per-node=4" in script
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    words = srun.split()
    assert words[1:5] == ["--nodes=3", "--ntasks=3", "--ntasks-per-node=1", "--cpus-per-task=8"]
    assert f"{sys.executable} -m torch.distributed.run --nnodes=3 --nproc-per-node=4" in srun
    assert srun.count('"--rdzv-endpoint=$NEMORUN_RDZV_ENDPOINT"') == 1
    # The user's words are quoted: nothing of theirs is expanded by the batch shell.
    assert srun.endswith("/code/train.py '$(id)' 'a b'")


def test_a_user_argument_that_looks_like_the_endpoint_stays_literal(tmp_path: Path) -> None:
    ex = SlurmExecutor(launcher="torchrun")
    hostile = [sys.executable, "x.py", "--rdzv-endpoint=NEMORUN_RDZV_ENDPOINT_PLACEHOLDER"]
    srun = next(
        line
        for line in render(ex, spec(ex, tmp_path, hostile)).script.splitlines()
        if line.startswith("srun ")
    )
    assert srun.count("$NEMORUN_RDZV_ENDPOINT") == 1
    assert srun.endswith("x.py --rdzv-endpoint=NEMORUN_RDZV_ENDPOINT_PLACEHOLDER")


def fake_scontrol(bin_dir: Path, first: str, addr: str | None) -> None:
    bin_dir.mkdir()
    node = f"NodeName={first} Arch=x86_64 CoresPerSocket=1 NodeAddr={addr} NodeHostName={first}"
    body = f"""#!/bin/sh
case "$1 $2" in
  "show hostnames") printf '%s\\n' {first} other1 other2 ;;
  "show node") {"echo '" + node + "'" if addr else "exit 1"} ;;
esac
"""
    path = bin_dir / "scontrol"
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize("addr", ["10.1.2.3", None])
def test_the_endpoint_is_the_first_hosts_address_and_a_free_port(
    tmp_path: Path, addr: str | None
) -> None:
    ex = SlurmExecutor(nodes=3, launcher="torchrun")
    block = launch_block(render(ex, spec(ex, tmp_path)).script)
    block = block[: block.index("srun ")]  # everything but the launch itself
    fake_scontrol(tmp_path / "bin", "gpu-a17", addr)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    env["SLURM_JOB_NODELIST"] = "gpu-a[17,18,20]"
    out = subprocess.run(
        [
            "bash",
            "-c",
            block + 'echo "$NEMORUN_RDZV_ENDPOINT|$TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"',
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    endpoint, prefix = out.split("|")
    host, port = endpoint.rsplit(":", 1)
    assert host == (addr or "gpu-a17")
    assert 0 < int(port) < 65536
    assert prefix == "[rank${rank}]:"


def test_a_fixed_port_is_used_as_is(tmp_path: Path) -> None:
    ex = SlurmExecutor(launcher=Torchrun(rdzv_port=29411))
    assert "NEMORUN_RDZV_PORT=29411\n" in render(ex, spec(ex, tmp_path)).script


async def test_ft_without_its_package_is_refused_before_sbatch(tmp_path: Path) -> None:
    if importlib.util.find_spec("nvidia_resiliency_ext") is not None:
        pytest.skip("nvidia-resiliency-ext is installed here")
    ex = SlurmExecutor(
        launcher=FaultTolerance(), tunnel=LocalTunnel(job_dir=str(tmp_path / "jobs"))
    )
    backend = SlurmBackend(ex, transport=local_transport())
    with pytest.raises(BackendError, match=re.escape("`nvidia_resiliency_ext`")):
        await backend.submit(spec(ex, tmp_path))
    assert backend.stats["sbatch"] == 0
