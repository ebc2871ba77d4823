"""Test and bench support: where the CI services (``.ci/services/{slurm,sshd,podman}.sh``)
keep their files.

Tests, the contract suite and ``bench/bench_slurm.py`` find the real cluster and sshd here.
Everything lives under ``$NEMORUN_CI_DIR`` (default ``/tmp/nemorun-ci``):

* ``sshd/id_ed25519``   client key accepted for ``root`` on 127.0.0.1:2222
* ``sshd/known_hosts``  the server's host key, pinned
* ``sshd/ssh_config``   ``Host nemorun-ci`` alias carrying all of the above
* ``sshd/sshd.pid``, ``sshd/sshd.log``  the running sshd and its log
* ``slurm/``            Slurm state, logs and pid files
* ``podman/podman.sock`` podman's Docker-compatible API (images ``localhost/busybox:ci``,
  ``localhost/python:ci``), ``podman/service.log``
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def ci_dir() -> Path:
    return Path(os.environ.get("NEMORUN_CI_DIR", "/tmp/nemorun-ci"))


@dataclass(frozen=True)
class SSHDService:
    """The CI sshd: how to reach it and where its files are."""

    host: str
    port: int
    user: str
    identity: str
    known_hosts: str
    ssh_config: str
    alias: str
    pid_file: str
    log_file: str

    def pid(self) -> int | None:
        try:
            return int(Path(self.pid_file).read_text().strip())
        except (OSError, ValueError):
            return None


def sshd_service() -> SSHDService:
    d = ci_dir() / "sshd"
    return SSHDService(
        host="127.0.0.1",
        port=int(os.environ.get("NEMORUN_CI_SSH_PORT", "2222")),
        user="root",
        identity=str(d / "id_ed25519"),
        known_hosts=str(d / "known_hosts"),
        ssh_config=str(d / "ssh_config"),
        alias="nemorun-ci",
        pid_file=str(d / "sshd.pid"),
        log_file=str(d / "sshd.log"),
    )


def sshd_available() -> tuple[bool, str]:
    """(up?, why not) — the key files exist and the port accepts TCP connections."""
    s = sshd_service()
    for path in (s.identity, s.known_hosts, s.ssh_config):
        if not Path(path).exists():
            return False, f"CI sshd not set up ({path} missing; run .ci/services/sshd.sh)"
    # A test restarts the shared sshd on purpose (tests/transport): its port is closed for
    # a moment, so a refused connection is tried again for a few seconds before it counts.
    deadline = time.monotonic() + 3.0
    while True:
        try:
            with socket.create_connection((s.host, s.port), timeout=2):
                return True, ""
        except OSError as exc:
            if time.monotonic() > deadline:
                return (
                    False,
                    f"CI sshd not reachable on {s.host}:{s.port} ({exc}; run .ci/services/sshd.sh)",
                )
            time.sleep(0.1)


def slurm_available() -> tuple[bool, str]:
    """(up?, why not) — sbatch exists and the controller answers with an idle/mixed node."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        return False, "Slurm client not installed (run .ci/services/slurm.sh)"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"sinfo failed: {exc}"
    states = out.stdout.split()
    if out.returncode != 0 or not any(
        s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing") for s in states
    ):
        return (
            False,
            f"Slurm not running ({(out.stderr or out.stdout).strip()}; run .ci/services/slurm.sh)",
        )
    return True, ""


# --------------------------------------------------------------------------- podman (docker API)
#: Images .ci/services/podman.sh builds locally (no registry is reachable in CI).
BUSYBOX_IMAGE = "localhost/busybox:ci"
PYTHON_IMAGE = "localhost/python:ci"


def podman_socket() -> Path:
    """The Docker-compatible API socket of ``.ci/services/podman.sh``'s podman service."""
    return ci_dir() / "podman" / "podman.sock"


def docker_url() -> str:
    """``unix://`` URL of that socket, for ``DockerExecutor(base_url=...)``."""
    return f"unix://{podman_socket()}"


def docker_available() -> tuple[bool, str]:
    """(up?, why not) — the socket answers ``/_ping`` and both CI images exist."""
    sock = podman_socket()
    if not sock.exists():
        return False, f"podman Docker API not running ({sock} missing; run .ci/services/podman.sh)"
    try:
        import docker
    except ImportError:
        return False, "the docker SDK is not installed (pip install -e '.[docker]')"
    try:
        api = docker.APIClient(base_url=docker_url(), version="1.41", timeout=10)
        api.ping()
        for image in (BUSYBOX_IMAGE, PYTHON_IMAGE):
            api.inspect_image(image)
        api.close()
    except Exception as exc:
        return False, f"podman Docker API at {sock} not usable ({exc}; run .ci/services/podman.sh)"
    return True, ""


# --------------------------------------------------------------------------- ray
# .ci/services/ray.sh writes ``ray/address`` (the head's dashboard URL) and ``ray/python`` (the
# interpreter of the Ray venv, which Ray on Slurm starts its nodes with).


@dataclass(frozen=True)
class RayService:
    """The CI Ray head: its Jobs API address and the Ray venv's interpreter."""

    address: str
    python: str

    @property
    def ray(self) -> str:
        """The ``ray`` script of that venv."""
        return str(Path(self.python).with_name("ray"))


def ray_service() -> RayService:
    d = ci_dir() / "ray"

    def read(name: str, default: str) -> str:
        try:
            return (d / name).read_text().strip() or default
        except OSError:
            return default

    return RayService(
        address=read("address", "http://127.0.0.1:8265"),
        python=read("python", str(d / "venv" / "bin" / "python")),
    )


def ray_available() -> tuple[bool, str]:
    """(up?, why not) — the head answers ``/api/version`` and the Ray venv exists."""
    import json
    import urllib.request

    s = ray_service()
    try:
        with urllib.request.urlopen(s.address + "/api/version", timeout=5) as resp:
            json.loads(resp.read())
    except (OSError, ValueError) as exc:
        return False, f"CI Ray head not reachable at {s.address} ({exc}; run .ci/services/ray.sh)"
    if not Path(s.python).exists():
        return False, f"Ray venv missing ({s.python}; run .ci/services/ray.sh)"
    return True, ""
