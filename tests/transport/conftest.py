"""Fixtures for transport tests: the real CI sshd, and an in-process asyncssh server.

The real sshd is started by ``.ci/services/sshd.sh`` (files under ``$NEMORUN_CI_DIR/sshd``,
default ``/tmp/nemorun-ci/sshd``). Without it the tests that need it skip, except under
``CI=true`` where a missing service is a failure. The in-process server (asyncssh's own) lets a
test do what a real sshd won't on request: ask a keyboard-interactive question, count channels,
or drop a connection at a chosen moment.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ci_services import SSHDService, sshd_available, sshd_service
from services import require_service


@pytest.fixture
def sshd() -> SSHDService:
    ok, why = sshd_available()
    require_service(ok, why)
    return sshd_service()


@dataclass
class InProcessServer:
    """A running asyncssh server on 127.0.0.1 plus the client-side files to reach it."""

    port: int
    client_key: str
    known_hosts: str
    connections: list[Any] = field(default_factory=list)
    sessions_open: int = 0
    sessions_peak: int = 0
    kbdint_answers: list[list[str]] = field(default_factory=list)
    server: Any = None
    procs: list[Any] = field(default_factory=list)

    async def stop(self) -> None:
        """Close the server and reap every command it started (none outlives the test)."""
        self.server.close()
        await self.server.wait_closed()
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()

    def drop_all(self) -> None:
        """Close every client connection from the server side, abruptly."""
        for conn in list(self.connections):
            conn.abort()
        self.connections.clear()


async def start_inprocess_server(
    tmp_path: Path, *, kbdint: bool = False, host_key_path: str | None = None
) -> InProcessServer:
    import asyncssh

    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = tmp_path / "client_key"
    client_key.write_private_key(str(key_file))
    os.chmod(key_file, 0o600)
    authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
    state = InProcessServer(port=0, client_key=str(key_file), known_hosts="")

    class Server(asyncssh.SSHServer):
        def connection_made(self, conn: Any) -> None:
            state.connections.append(conn)

        def connection_lost(self, exc: Exception | None) -> None:
            pass

        def begin_auth(self, username: str) -> bool:
            return True

        def public_key_auth_supported(self) -> bool:
            return not kbdint

        def validate_public_key(self, username: str, key: Any) -> bool:
            return authorized.validate(key, "127.0.0.1", "127.0.0.1") is not None

        def kbdint_auth_supported(self) -> bool:
            return kbdint

        def get_kbdint_challenge(self, username: str, lang: str, submethods: str) -> Any:
            return ("2FA", "Enter the code from your token", "", [("Verification code: ", False)])

        def validate_kbdint_response(self, username: str, responses: list[str]) -> bool:
            state.kbdint_answers.append(list(responses))
            return list(responses) == ["424242"]

    async def handle_process(process: Any) -> None:
        # Count concurrent sessions like sshd's MaxSessions would; run argv via a real shell.
        import asyncio

        state.sessions_open += 1
        state.sessions_peak = max(state.sessions_peak, state.sessions_open)
        try:
            proc = await asyncio.create_subprocess_shell(
                process.command or "true",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            state.procs.append(proc)
            data = await process.stdin.read()
            out, err = await proc.communicate(data)
            process.stdout.write(out)
            process.stderr.write(err)
            process.exit(proc.returncode or 0)
        finally:
            state.sessions_open -= 1

    server = await asyncssh.create_server(
        Server,
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        process_factory=handle_process,
        sftp_factory=True,
        encoding=None,
        allow_scp=False,
    )
    port = server.sockets[0].getsockname()[1]
    state.port = port
    state.server = server
    known = tmp_path / "known_hosts"
    key_line = host_key.export_public_key().decode().strip()
    known.write_text(f"[127.0.0.1]:{port} {key_line}\n")
    state.known_hosts = str(known)
    return state


@pytest.fixture
async def ssh_server(tmp_path: Path) -> AsyncIterator[InProcessServer]:
    server = await start_inprocess_server(tmp_path)
    yield server
    await server.stop()


@pytest.fixture
async def kbdint_server(tmp_path: Path) -> AsyncIterator[InProcessServer]:
    server = await start_inprocess_server(tmp_path, kbdint=True)
    yield server
    await server.stop()
