"""A minimal third-party backend: runs each job as a detached process under ``sh``.

It knows nemorun-tui only through the public protocol (``core.engine.protocol``) and its own profile
type; nothing in nemorun-tui names it. Jobs write ``exit`` (their exit code) next to their
logs, so any later process can poll them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from core.engine.executors import ExecutorProfile
from core.engine.protocol import BackendError, DryRun, Handle, JobSpec, LogStream
from core.engine.states import JobState, StatusReport


@dataclass
class EchoExecutor(ExecutorProfile):
    """The plugin's profile: one field of its own, to prove it survives a round trip."""

    backend: ClassVar[str] = "echo"
    greeting: str = "hello"


class EchoBackend:
    name: ClassVar[str] = "echo"
    profile_class: ClassVar[type[ExecutorProfile]] = EchoExecutor

    def __init__(self, profile: EchoExecutor) -> None:
        self.profile = profile

    @classmethod
    def from_profile(cls, profile: ExecutorProfile) -> EchoBackend:
        assert isinstance(profile, EchoExecutor), type(profile)
        return cls(profile)

    def _script(self, job: JobSpec) -> str:
        greet = f"echo {shlex.quote(self.profile.greeting)} >&2"
        return f"{greet}; {shlex.join(job.argv)}; echo $? > exit.tmp && mv exit.tmp exit"

    async def dryrun(self, job: JobSpec) -> DryRun:
        return DryRun("echo", "sh -c", {"script": self._script(job)})

    async def submit(self, job: JobSpec) -> Handle:
        run_dir = os.path.join(job.job_dir, "echo")
        os.makedirs(run_dir, exist_ok=True)
        env = {**os.environ, **job.env, **job.secret_env}
        with (
            open(os.path.join(run_dir, "stdout"), "wb") as out,
            open(os.path.join(run_dir, "stderr"), "wb") as err,
        ):
            proc = subprocess.Popen(
                ["sh", "-c", self._script(job)],
                cwd=run_dir,
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        with open(os.path.join(run_dir, "pid"), "w") as f:
            f.write(str(proc.pid))
        return Handle("echo", "local", run_dir)

    async def poll(self, handles: Sequence[Handle]) -> dict[Handle, StatusReport]:
        out = {}
        for handle in handles:
            run_dir = handle.job_id
            if os.path.exists(os.path.join(run_dir, "cancelled")):
                out[handle] = StatusReport(JobState.CANCELLED, source="echo")
            elif os.path.exists(os.path.join(run_dir, "exit")):
                with open(os.path.join(run_dir, "exit")) as f:
                    code = int(f.read())
                state = JobState.SUCCEEDED if code == 0 else JobState.FAILED
                out[handle] = StatusReport(state, source="echo", exit_code=code)
            elif os.path.exists(os.path.join(run_dir, "pid")):
                out[handle] = StatusReport(JobState.RUNNING, source="echo")
            else:
                out[handle] = StatusReport(JobState.UNKNOWN, source="echo")
        return out

    async def cancel(self, handle: Handle) -> None:
        run_dir = handle.job_id
        try:
            with open(os.path.join(run_dir, "pid")) as f:
                pid = int(f.read())
        except OSError as exc:
            raise BackendError(f"no such echo job {handle}") from exc
        open(os.path.join(run_dir, "cancelled"), "w").close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)

    async def logs(
        self, handle: Handle, *, offset: int = 0, follow: bool = False, stream: LogStream = "stdout"
    ) -> AsyncIterator[bytes]:
        path = os.path.join(handle.job_id, stream)
        while True:
            done = bool((await self.poll([handle]))[handle].state.is_terminal)
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            if data:
                offset += len(data)
                yield data
            if not follow or done:
                return
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        return None
