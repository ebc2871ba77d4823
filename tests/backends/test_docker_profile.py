"""The Docker profile as users write it: ``run.DockerExecutor(...)`` and config.toml tables.

No engine needed: these check names, validation and that nothing imports the docker SDK
before a docker job is actually dry-run or submitted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import nemorun_tui as run
from core.engine import registry
from core.engine.executors import profile_class, profile_from_dict
from core.engine.executors_docker import DockerExecutor, docker_host
from core.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_run_docker_executor_has_nemo_run_field_names() -> None:
    ex = run.DockerExecutor(
        container_image="nvcr.io/nvidia/pytorch:24.01-py3",
        num_gpus=-1,
        runtime="nvidia",
        shm_size="16g",
        ulimits=["memlock=-1", "stack=67108864"],
        ipc_mode="host",
        network="host",
        volumes=["/data:/data:ro"],
        env_vars={"A": "1"},
        privileged=True,
        additional_kwargs={"cpu_shares": 512},
    )
    assert isinstance(ex, DockerExecutor) and ex.backend == "docker"
    assert profile_class("docker") is DockerExecutor
    assert profile_from_dict(ex.to_dict()) == ex


def test_config_toml_docker_profile(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[executors.box]\nbackend = "docker"\ncontainer_image = "busybox"\n'
        'base_url = "unix:///tmp/x.sock"\ncleanup = "keep-failed"\nvolumes = ["/d:/d"]\n'
    )
    ex = load_settings(config).profile("box")
    assert isinstance(ex, DockerExecutor)
    assert (ex.container_image, ex.cleanup, ex.volumes) == ("busybox", "keep-failed", ["/d:/d"])
    assert ex.target() == "unix:///tmp/x.sock"

    config.write_text('[executors.box]\nbackend = "docker"\ncontainer_image = "b"\ncleanup = "x"\n')
    with pytest.raises(SettingsError, match="cleanup must be one of"):
        load_settings(config).profile("box")
    config.write_text('[executors.box]\nbackend = "docker"\ncontainer_imag = "b"\n')
    with pytest.raises(SettingsError, match="did you mean `container_image`"):
        load_settings(config).profile("box")


def test_config_toml_docker_launcher_table(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[executors.ddp]\nbackend = "docker"\ncontainer_image = "pytorch"\nntasks_per_node = 4\n'
        '[executors.ddp.launcher]\nkind = "ft"\nrank_heartbeat_timeout = 60\n'
    )
    ex = load_settings(config).profile("ddp")
    assert isinstance(ex, DockerExecutor) and isinstance(ex.launcher, run.FaultTolerance)
    assert (ex.ntasks_per_node, ex.launcher.rank_heartbeat_timeout) == (4, 60)
    assert profile_from_dict(ex.to_dict()) == ex  # stored with the run, rebuilt for a relaunch
    config.write_text(
        '[executors.ddp]\nbackend = "docker"\ncontainer_image = "p"\nlauncher = "mpi"\n'
    )
    with pytest.raises(SettingsError, match="unknown launcher 'mpi'"):
        load_settings(config).profile("ddp")


def test_target_is_base_url_else_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.5:2375/")
    assert DockerExecutor(container_image="x").target() == "tcp://10.0.0.5:2375"
    assert DockerExecutor(container_image="x", base_url="unix:///s").target() == "unix:///s"
    monkeypatch.delenv("DOCKER_HOST")
    assert docker_host(None) == "unix:///var/run/docker.sock"


def test_backend_is_registered_and_the_sdk_loads_only_on_use() -> None:
    assert "docker" in registry.backend_names()
    code = (
        "import sys, nemorun_tui as run\n"
        "from core.engine import registry\n"
        "cls = registry.backend_class('docker')\n"
        "b = cls.from_profile(run.DockerExecutor(container_image='x'))\n"
        "print('docker' in sys.modules, 'requests' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]
