"""Fixtures for the results tests: the real CI sshd, and transports that count their reads
(see tests/results_helpers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from ci_services import SSHDService, sshd_available, sshd_service
from results_helpers import Counting
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
