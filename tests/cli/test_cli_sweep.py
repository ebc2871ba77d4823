"""`run -m` and `relaunch --failed` end to end through the CLI, on the local backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "nemorun_tui.cli"]

WORKSPACE = textwrap.dedent(
    """
    from core.config import Partial
    from core.recipes import recipe

    def point(x: int = 0, tag: str = "", fail_on: list[int] | None = None) -> None:
        print(f"x={x} tag={tag}")
        if x in (fail_on or []):
            raise SystemExit(4)

    @recipe
    def pt() -> Partial:
        return Partial(point)
    """
)


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    ws = tmp_path / "ws.py"
    ws.write_text(WORKSPACE)
    env = {
        **os.environ,
        "NEMORUN_TUI_HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "--workspace", str(ws), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


def test_sweep_grid_runs_one_job_per_point(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = cli("run", "-q", "-m", "pt", "x=1,2", "tag='a,b',c")
    assert out.returncode == 0, out.stderr
    status = json.loads(cli("status", "pt", "--json").stdout)
    assert [j["name"] for j in status["jobs"]] == ["x=1,tag=a,b", "x=1,tag=c", "x=2,tag=a,b",
                                                   "x=2,tag=c"]  # fmt: skip
    assert "sweep" in status["tags"]
    assert cli("logs", "pt", "x=2,tag=a,b").stdout == "x=2 tag=a,b\n"


def test_zip_pairs_the_lists(cli) -> None:  # type: ignore[no-untyped-def]
    out = cli("run", "-q", "-m", "--zip", "pt", "x=1,2,3", "tag=a,b,c")
    assert out.returncode == 0, out.stderr
    status = json.loads(cli("status", "pt", "--json").stdout)
    assert [j["name"] for j in status["jobs"]] == ["x=1,tag=a", "x=2,tag=b", "x=3,tag=c"]


def test_a_bad_point_is_refused_before_anything_is_written(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = cli("run", "-m", "pt", "x=1,2,three")
    assert out.returncode == 2
    assert "sweep point 2 (x=three)" in out.stderr and "expects int" in out.stderr
    experiments = tmp_path / "home" / "experiments"
    assert not experiments.exists() or not any(experiments.iterdir())


def test_relaunch_failed_runs_only_the_failed_points(cli) -> None:  # type: ignore[no-untyped-def]
    first = cli("run", "-q", "-m", "pt", "x=range(0,5)", "fail_on=[1,3]")
    assert first.returncode == 1  # two points failed
    parent = json.loads(cli("status", "pt", "--json").stdout)
    states = {j["name"]: j["state"] for j in parent["jobs"]}
    assert states == {"x=0": "SUCCEEDED", "x=1": "FAILED", "x=2": "SUCCEEDED",
                      "x=3": "FAILED", "x=4": "SUCCEEDED"}  # fmt: skip
    again = cli("relaunch", "-q", "--failed", parent["id"], "fail_on=[]")
    assert again.returncode == 0, again.stderr
    child = json.loads(cli("status", "pt", "--json").stdout)
    assert child["parent"] == parent["id"]
    assert [(j["name"], j["state"]) for j in child["jobs"]] == [
        ("x=1", "SUCCEEDED"),
        ("x=3", "SUCCEEDED"),
    ]
    assert cli("logs", child["id"], "x=3").stdout == "x=3 tag=\n"
    nothing = cli("relaunch", "--failed", child["id"])
    assert nothing.returncode == 2 and "no failed or cancelled" in nothing.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "-m", "pt"), "at least one KEY=VALUES"),
        (("run", "-m", "--script", "echo hi"), "cannot be combined with --script"),
        (("run", "-m", "--throttle", "0", "pt", "x=1,2"), "--throttle takes"),
        (("run", "-m", "pt", "x=range(0,0)"), "range() is empty"),
        (("run", "-m", "--zip", "pt", "x=1,2", "tag=a,b,c"), "equally long"),
    ],
)
def test_bad_sweeps_are_usage_errors(cli, args: tuple[str, ...], message: str) -> None:  # type: ignore[no-untyped-def]
    out = cli(*args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_override_files_and_to_yaml(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "o.json").write_text('{"x": 7, "tag": "from, json"}')
    (tmp_path / "o.toml").write_text('tag = "from toml"\n')
    shown = cli("run", "--to-yaml", "pt", f"@{tmp_path / 'o.json'}")
    assert shown.returncode == 0, shown.stderr
    assert "x: 7" in shown.stdout and "tag: from, json" in shown.stdout
    assert not (tmp_path / "home" / "experiments").exists()  # printed, nothing recorded
    out = cli("run", "-q", "pt", f"@{tmp_path / 'o.json'}", f"@{tmp_path / 'o.toml'}")
    assert out.returncode == 0, out.stderr
    assert cli("logs", "pt").stdout == "x=7 tag=from toml\n"  # the later file wins
    points = cli("run", "--to-yaml", "-m", "pt", "x=1,2")
    assert points.returncode == 0 and "x=1:" in points.stdout and "x=2:" in points.stdout
    bad = cli("run", "pt", f"@{tmp_path / 'missing.yaml'}")
    assert bad.returncode == 2 and "cannot read overrides file" in bad.stderr
