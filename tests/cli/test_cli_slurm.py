"""The CLI with a Slurm-over-SSH profile from config.toml, against the real CI cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ci_services import slurm_available, sshd_available, sshd_service
from services import require_service

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
CLI = [sys.executable, "-m", "nemorun_tui.cli"]


def test_run_status_logs_relaunch_through_a_slurm_ssh_profile(tmp_path: Path) -> None:
    for ok, why in (slurm_available(), sshd_available()):
        require_service(ok, why)
    s = sshd_service()
    config = tmp_path / "config" / "nemorun-tui" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        "[executors.cluster]\n"
        'backend = "slurm"\n'
        f'host = "{s.alias}"\n'
        f'ssh_config = "{s.ssh_config}"\n'
        f'job_dir = "{tmp_path / "cluster-jobs"}"\n'
        "poll_rate = 5.0\n"
    )
    env = {
        **os.environ,
        "NEMORUN_TUI_HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env=env, capture_output=True, text=True, timeout=180, check=False
        )

    dry = cli("run", "--executor", "cluster", "--script", "echo 'it works'", "--dryrun")
    assert dry.returncode == 0, dry.stderr
    assert "#SBATCH" in dry.stdout and "sbatch --parsable" in dry.stdout

    first = cli("run", "--executor", "cluster", "--script", "echo from slurm", "--name", "onslurm")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "from slurm\n"
    assert "[squeue]" in first.stderr or "[sacct]" in first.stderr  # states carry their source

    status = json.loads(cli("status", "onslurm", "--json").stdout)
    (job,) = status["jobs"]
    assert (status["state"], job["backend"], job["exit_code"]) == ("SUCCEEDED", "slurm", 0)
    assert job["handle"]["target"].startswith("ssh://")
    assert cli("logs", "onslurm").stdout == "from slurm\n"

    again = cli("relaunch", "onslurm", "inline=echo relaunched; exit 5")
    assert again.returncode == 1, again.stderr
    assert again.stdout == "relaunched\n"
    rows = json.loads(cli("ls", "--json").stdout)
    assert rows[0]["parent"] == status["id"] and rows[0]["state"] == "FAILED"
