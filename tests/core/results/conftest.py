"""Fixtures for the results tests: the real CI sshd, and transports that count their reads
(see tests/results_helpers.py)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from ci_services import SSHDService, sshd_available, sshd_service
from results_helpers import Counting, PrivateSSHD
from services import require_service


@pytest.fixture
def sshd() -> SSHDService:
    ok, why = sshd_available()
    require_service(ok, why)
    return sshd_service()


@pytest.fixture(params=["local", "ssh"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Counting]:
    """The local transport, and SSH to the real sshd (same machine, same paths, as root)."""
    if request.param == "local":
        from core.transport.local import LocalTransport

        yield Counting(LocalTransport())
        return
    ok, why = sshd_available()
    require_service(ok, why)
    from core.transport.ssh import SSHTransport

    s = sshd_service()
    inner = SSHTransport(s.alias, ssh_config=s.ssh_config)
    try:
        yield Counting(inner)
    finally:
        await inner.close()


@pytest.fixture
def private_sshd(tmp_path: Path) -> Iterator[PrivateSSHD]:
    ok, why = sshd_available()
    require_service(ok, why)
    ci = sshd_service()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    d = tmp_path / "private-sshd"
    d.mkdir()
    config = Path(ci.ssh_config).with_name("sshd_config").read_text()
    config = config.replace("Port 2222", f"Port {port}").replace(
        f"PidFile {Path(ci.pid_file)}", f"PidFile {d / 'sshd.pid'}"
    )
    (d / "sshd_config").write_text(config)
    keys = Path(ci.known_hosts).read_text().replace(f"]:{ci.port} ", f"]:{port} ")
    (d / "known_hosts").write_text(keys)
    client = Path(ci.ssh_config).read_text()
    client = client.replace(f"Port {ci.port}", f"Port {port}").replace(
        ci.known_hosts, str(d / "known_hosts")
    )
    (d / "ssh_config").write_text(client)
    log = d / "sshd.log"
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(d / "sshd_config"), "-E", str(log)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"private sshd did not start: {log.read_text()[-500:]}")
                time.sleep(0.05)
        yield PrivateSSHD(ci.alias, d / "ssh_config", proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
