"""A 100-point sweep on the real Slurm cluster is ONE array job: sbatch is called once.

sbatch is counted by a shim first on PATH that logs its arguments and runs the real one;
the CLI runs as a subprocess with that PATH, so every sbatch it makes goes through it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ci_services import slurm_available
from services import require_service

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
CLI = [sys.executable, "-m", "nemorun_tui.cli"]

WORKSPACE = textwrap.dedent(
    """
    from core.config import Partial
    from core.recipes import recipe

    def point(x: int = 0, fail_on: list[int] | None = None) -> None:
        import os
        print(f"x={x} job={os.environ['NEMORUN_JOB_NAME']}")
        if x in (fail_on or []):
            raise SystemExit(3)

    @recipe
    def pt() -> Partial:
        return Partial(point)
    """
)


def test_hundred_point_sweep_is_one_sbatch_and_failed_points_relaunch(tmp_path: Path) -> None:
    ok, why = slurm_available()
    require_service(ok, why)
    real = shutil.which("sbatch")
    assert real is not None
    shim = tmp_path / "shim"
    shim.mkdir()
    calls = tmp_path / "sbatch-calls"
    (shim / "sbatch").write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\nexec {real} "$@"\n', encoding="utf-8"
    )
    (shim / "sbatch").chmod(0o755)
    ws = tmp_path / "ws.py"
    ws.write_text(WORKSPACE)
    config = tmp_path / "config" / "nemorun-tui" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        '[executors.cluster]\nbackend = "slurm"\n'
        f'job_dir = "{tmp_path / "cluster-jobs"}"\npoll_rate = 5.0\n'
    )
    env = {
        **os.environ,
        "PATH": f"{shim}:{os.environ['PATH']}",
        "NEMORUN_TUI_HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "--workspace", str(ws), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    first = cli(
        "run", "-q", "-m", "--executor", "cluster", "--throttle", "25",
        "pt", "x=range(0,100)", "fail_on=[7,42]",
    )  # fmt: skip
    assert first.returncode == 1, first.stderr  # two points fail on purpose
    lines = calls.read_text().splitlines()
    assert len(lines) == 1, lines  # ONE sbatch for 100 points
    assert "--hold" in lines[0] and "_array" in lines[0]
    script = Path(lines[0].split()[-1]).read_text()
    assert "#SBATCH --array=0-99%25" in script

    status = json.loads(cli("status", "pt", "--json").stdout)
    jobs = status["jobs"]
    assert len(jobs) == 100
    array_ids = {j["handle"]["job_id"].split("_")[0] for j in jobs}
    assert len(array_ids) == 1
    assert [j["handle"]["job_id"].split("_")[1] for j in jobs] == [str(i) for i in range(100)]
    failed = sorted(j["name"] for j in jobs if j["state"] == "FAILED")
    assert failed == ["x=42", "x=7"]
    assert all(j["state"] == "SUCCEEDED" for j in jobs if j["name"] not in failed)
    assert {j["exit_code"] for j in jobs if j["name"] in failed} == {3}
    assert cli("logs", "pt", "x=42").stdout == "x=42 job=x=42\n"
    assert cli("logs", "pt", "x=99").stdout == "x=99 job=x=99\n"

    again = cli("relaunch", "-q", "--failed", status["id"], "fail_on=[]")
    assert again.returncode == 0, again.stderr
    assert len(calls.read_text().splitlines()) == 2  # the two failed points: one more array
    child = json.loads(cli("status", "pt", "--json").stdout)
    assert child["parent"] == status["id"]
    assert [(j["name"], j["state"]) for j in child["jobs"]] == [
        ("x=7", "SUCCEEDED"),
        ("x=42", "SUCCEEDED"),
    ]
    assert cli("logs", child["id"], "x=7").stdout == "x=7 job=x=7\n"


def test_cancelling_a_sweep_array_is_one_scancel(tmp_path: Path) -> None:
    ok, why = slurm_available()
    require_service(ok, why)
    shim = tmp_path / "shim"
    shim.mkdir()
    calls = tmp_path / "calls"
    for tool in ("sbatch", "scancel"):
        real = shutil.which(tool)
        assert real is not None
        (shim / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\nexec {real} "$@"\n')
        (shim / tool).chmod(0o755)
    ws = tmp_path / "ws.py"
    ws.write_text(
        "from core.config import Script\nfrom core.recipes import recipe\n\n"
        "@recipe\ndef nap() -> Script:\n    return Script(inline='sleep 60')\n"
    )
    config = tmp_path / "config" / "nemorun-tui" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        '[executors.cluster]\nbackend = "slurm"\n'
        f'job_dir = "{tmp_path / "cluster-jobs"}"\npoll_rate = 5.0\n'
    )
    env = {
        **os.environ,
        "PATH": f"{shim}:{os.environ['PATH']}",
        "NEMORUN_TUI_HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "--workspace", str(ws), *args],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    started = cli(
        "run", "-q", "-m", "--detach", "--executor", "cluster", "--throttle", "2",
        "nap", "inline='sleep 60','sleep 61','sleep 62','sleep 63','sleep 64','sleep 65'",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    exp = started.stdout.strip()
    assert cli("cancel", exp).returncode == 0
    scancels = [c for c in calls.read_text().splitlines() if c.startswith("scancel")]
    assert len(scancels) == 1 and scancels[0].count("_") == 6  # six task ids, one call
    deadline = time.monotonic() + 120
    while True:
        status = json.loads(cli("status", exp, "--json").stdout)
        states = {j["state"] for j in status["jobs"]}
        if states == {"CANCELLED"} or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert states == {"CANCELLED"}
