"""Upload and extraction over the real OpenSSH sshd CI starts (``.ci/services/sshd.sh``).

Skipped with a reason when that sshd is not running, except under ``CI=true`` where a
missing service is a failure (CI is supposed to have started it).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from core.packaging import GitArchivePackager, extract_archive, upload_archive

pytestmark = pytest.mark.sshd

CI_DIR = Path(os.environ.get("NEMORUN_CI_DIR", "/tmp/nemorun-ci")) / "sshd"
PORT = int(os.environ.get("NEMORUN_CI_SSH_PORT", "2222"))


def _sshd_config() -> Path:
    config = CI_DIR / "ssh_config"
    problem = None
    if not config.exists():
        problem = f"{config} missing"
    else:
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
        except OSError as exc:
            problem = f"nothing listens on 127.0.0.1:{PORT} ({exc})"
    if problem:
        reason = f"real sshd not available: {problem}; start it with .ci/services/sshd.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return config


@pytest.fixture
async def ssh():
    ssh_transport = pytest.importorskip("core.transport.ssh")
    transport = ssh_transport.SSHTransport("nemorun-ci", ssh_config=str(_sshd_config()))
    puts: list[str] = []
    real_put = transport.put

    async def counting_put(local: Path, remote: str, **kwargs) -> None:
        puts.append(remote)
        await real_put(local, remote, **kwargs)

    transport.put = counting_put  # type: ignore[method-assign]
    transport.puts = puts  # type: ignore[attr-defined]
    yield transport
    await transport.close()


async def test_upload_over_sshd_is_content_addressed(ssh, repo: Path, tmp_path: Path) -> None:
    packed = GitArchivePackager(basepath=str(repo)).package(tmp_path / "local")
    remote_cache = str(tmp_path / "cluster" / "archives")  # same host: an absolute path works

    first = await upload_archive(ssh, packed.archive, packed.sha256, remote_cache)
    assert (first.bytes_sent, first.skipped) == (packed.size, False)
    assert len(ssh.puts) == 1
    assert await ssh.read(first.remote_path) == packed.archive.read_bytes()

    second = await upload_archive(ssh, packed.archive, packed.sha256, remote_cache)
    assert (second.bytes_sent, second.skipped) == (0, True)
    assert len(ssh.puts) == 1, "an unchanged archive must not be sent again"

    # Same size, different bytes: only the remote hash can tell.
    data = bytearray(await ssh.read(first.remote_path))
    data[len(data) // 2] ^= 0xFF
    await ssh.write(first.remote_path, bytes(data), mode=0o644)
    third = await upload_archive(ssh, packed.archive, packed.sha256, remote_cache)
    assert (third.skipped, third.replaced_corrupt, third.bytes_sent) == (False, True, packed.size)
    assert len(ssh.puts) == 2
    assert await ssh.read(first.remote_path) == packed.archive.read_bytes()

    dest = str(tmp_path / "cluster" / "job" / "code")
    await extract_archive(ssh, first.remote_path, dest, packed.sha256, local_archive=packed.archive)
    assert (await ssh.read(f"{dest}/pkg/model.py")) == b"LAYERS = 2\n"
    listing = await ssh.run(["ls", "-A", str(tmp_path / "cluster" / "archives")])
    assert listing.stdout.decode().split() == [f"{packed.sha256}.tar.gz"]
