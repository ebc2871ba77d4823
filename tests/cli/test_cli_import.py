"""`nemorun-tui import-nemo-run` end to end, then the imported runs used like our own:
listed, their logs printed, relaunched (local and on the real Slurm cluster)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ci_services import slurm_available
from nemo_fixtures import copy_home, exp_id, expected, nemo_log_lines
from services import require_service

CLI = [sys.executable, "-m", "nemorun_tui.cli"]


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    source = copy_home(tmp_path / "nemo-home")
    env = {
        **os.environ,
        "NEMORUN_TUI_HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "NEMORUN_HOME": str(source),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env=env, capture_output=True, text=True, timeout=180, check=False
        )

    return run


def test_import_list_logs_and_relaunch_local(cli) -> None:  # type: ignore[no-untyped-def]
    out = cli("import-nemo-run", "--json")  # no DIR: $NEMORUN_HOME, as NeMo Run itself reads
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert sorted(summary["imported"]) == sorted(expected())
    assert summary["found"] == len(expected())
    rows = {r["id"]: r for r in json.loads(cli("ls", "--json").stdout)}
    assert set(rows) == set(expected())
    assert all("nemo-run" in r["tags"] for r in rows.values())
    scripts = exp_id("local-scripts")
    assert rows[scripts]["state"] == "FAILED"
    assert cli("logs", scripts, "hello").stdout.splitlines() == nemo_log_lines(scripts, "hello")[:1]
    assert cli("logs", scripts, "hello", "--stderr").stdout == "to-stderr\n"

    partial = exp_id("local-partial")
    again = cli("relaunch", "-q", partial)
    assert again.returncode == 0, again.stderr
    child = json.loads(cli("status", "local-partial", "--json").stdout)
    assert child["parent"] == partial and child["state"] == "SUCCEEDED"
    assert cli("logs", child["id"]).stdout.splitlines() == nemo_log_lines(partial, "train")

    twice = cli("import-nemo-run", "--json")
    assert json.loads(twice.stdout)["imported"] == []


def test_relaunch_an_imported_slurm_experiment(cli) -> None:  # type: ignore[no-untyped-def]
    ok, why = slurm_available()
    require_service(ok, why)
    assert cli("import-nemo-run").returncode == 0
    parent = exp_id("slurm-local")
    out = cli("relaunch", "-q", "--failed", parent)
    assert out.returncode == 1  # the `fail` job fails again, on purpose (exit 2)
    child = json.loads(cli("status", "slurm-local", "--json").stdout)
    assert child["parent"] == parent
    (job,) = child["jobs"]
    assert (job["name"], job["backend"], job["state"], job["exit_code"]) == (
        "fail", "slurm", "FAILED", 2,
    )  # fmt: skip
    assert cli("logs", child["id"]).stdout.splitlines() == nemo_log_lines(parent, "fail")


def test_missing_source_is_a_usage_error(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = cli("import-nemo-run", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "no NeMo Run store" in out.stderr
