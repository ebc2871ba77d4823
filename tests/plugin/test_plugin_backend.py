"""A backend that exists only as a separately installed package, found by its entry point.

The package (``echo_backend_pkg``) is pip-installed into a folder of its own; processes see it
through ``PYTHONPATH`` alone. Nothing in nemorun-tui names it: launching, and then polling,
cancelling and relaunching its stored runs from fresh processes, must all work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

PACKAGE = Path(__file__).with_name("echo_backend_pkg")
CLI = [sys.executable, "-m", "nemorun_tui.cli"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(PACKAGE),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert any(p.name.startswith("nrt_echo_backend") for p in target.iterdir())
    return target


@pytest.fixture
def env(site: Path, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "config.toml"
    config.write_text('[executors.ec]\nbackend = "echo"\ngreeting = "bonjour"\n')
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(Path.cwd())]),
        "NEMORUN_TUI_HOME": str(tmp_path / "home"),
        "NEMORUN_TUI_CONFIG": str(config),
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def status(env: dict[str, str], exp_id: str) -> dict:  # type: ignore[type-arg]
    result = cli(env, "status", exp_id, "--json")
    assert result.stdout, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def wait_state(env: dict[str, str], exp_id: str, want: str) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 30
    while True:
        data = status(env, exp_id)
        if data["state"] == want or time.monotonic() > deadline:
            return data
        time.sleep(0.2)


def test_the_plugin_is_not_importable_without_its_site(env: dict[str, str]) -> None:
    """Guard for the tests below: only PYTHONPATH brings the plugin in."""
    bare = {**env, "PYTHONPATH": str(Path.cwd())}
    result = cli(bare, "run", "--script", "true", "--executor", "ec")
    assert result.returncode == 2
    assert "unknown backend 'echo'" in result.stderr


def test_a_backend_from_an_entry_point_launches_and_its_runs_live_on(env: dict[str, str]) -> None:
    run = cli(env, "run", "--script", "echo from-the-plugin", "--executor", "ec")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "from-the-plugin\n"
    (first,) = json.loads(cli(env, "ls", "--json").stdout)
    assert first["executors"] == ["echo/ec"]

    # A fresh process rebuilds the plugin's own profile type from the store.
    data = status(env, first["id"])
    assert data["state"] == "SUCCEEDED" and data["jobs"][0]["source"] == "echo"
    stderr = cli(env, "logs", first["id"], "--stderr")
    assert stderr.stdout == "bonjour\n"  # the plugin's own field, round-tripped

    # Detached, then polled and cancelled by other processes.
    detached = cli(env, "run", "--script", "sleep 60", "--executor", "ec", "--detach")
    assert detached.returncode == 0, detached.stderr
    long_id = detached.stdout.strip()
    assert wait_state(env, long_id, "RUNNING")["state"] == "RUNNING"
    cancel = cli(env, "cancel", long_id)
    assert cancel.returncode == 0, cancel.stderr
    assert wait_state(env, long_id, "CANCELLED")["state"] == "CANCELLED"

    # Relaunch from a fresh process: same plugin profile, parent recorded.
    again = cli(env, "relaunch", first["id"])
    assert again.returncode == 0, again.stderr
    assert again.stdout == "from-the-plugin\n"
    rows = json.loads(cli(env, "ls", "--json").stdout)
    child = next(r for r in rows if r["parent"] == first["id"])
    assert child["state"] == "SUCCEEDED" and child["executors"] == ["echo/ec"]
