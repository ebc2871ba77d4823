"""Shared by the Ray tests: the CI head as a backend, job specs, and a proxy that can be cut."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from ci_services import ray_available, ray_service
from services import require_service

from backends.ray import RayBackend
from core.engine.executors_ray import RayExecutor
from core.engine.protocol import Handle, JobSpec
from core.engine.states import JobState, StatusReport

_counter = itertools.count()


def head_address() -> str:
    require_service(*ray_available())
    return ray_service().address


def make_spec(
    executor: RayExecutor, tmp_path: Path, argv: list[str], name: str = "job", **kw: object
) -> JobSpec:
    n = next(_counter)
    tag = f"nrt-raytest-{os.getpid()}-{uuid.uuid4().hex[:6]}-{name}-{n}"
    job_dir = tmp_path / "jobs" / f"{n:03d}-{name}"
    return JobSpec(
        experiment_id=f"raytest-{os.getpid()}",
        job_name=name,
        run_tag=tag,
        argv=argv,
        executor=executor,
        job_dir=str(job_dir),
        workdir=str(tmp_path),
        **kw,  # type: ignore[arg-type]
    )


async def wait_state(
    backend: RayBackend, handle: Handle, want: set[JobState], timeout: float = 60.0
) -> StatusReport:
    deadline = time.monotonic() + timeout
    while True:
        report = (await backend.poll([handle]))[handle]
        if report.state in want:
            return report
        if time.monotonic() > deadline:
            raise AssertionError(f"{handle} never reached {want}; last {report}")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def ray_backend(address: str | None = None, **kw: object) -> AsyncIterator[RayBackend]:
    """A backend on the CI head (or ``address``); every job it submitted is stopped after."""
    executor = RayExecutor(address=address or head_address(), log_interval=0.2, **kw)  # type: ignore[arg-type]
    backend = RayBackend(executor)
    submitted: list[Handle] = []
    real_submit = backend.submit

    async def submit(job: JobSpec) -> Handle:
        handle = await real_submit(job)
        submitted.append(handle)
        return handle

    backend.submit = submit  # type: ignore[method-assign]
    try:
        yield backend
    finally:
        with contextlib.suppress(Exception):
            cleanup = RayBackend(RayExecutor(address=head_address()))
            for handle in submitted:
                await cleanup.client.stop(handle.job_id)
            await cleanup.close()
        await backend.close()


class CuttableProxy:
    """A loopback TCP proxy to the head whose live connections can be aborted at will."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.listen_port = 0
        self.stream_requests = 0
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.listen_port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self._pairs.append((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upward: bool) -> None:
            try:
                while data := await src.read(65536):
                    if upward:
                        self.stream_requests += data.count(b"/api/v0/logs/stream")
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    def cut(self) -> int:
        """Abort every open connection (both sides); returns how many were cut."""
        pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            a.transport.abort()
            b.transport.abort()
        return len(pairs)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
