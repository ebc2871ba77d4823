"""The Slurm backend against the real CI cluster, through LocalTransport AND SSHTransport.

Every scenario runs twice: on the "login node" (sbatch & co. run locally) and "from a laptop"
(the same commands over SSH to the CI sshd on 127.0.0.1:2222). The services come from
``.ci/services/slurm.sh`` and ``.ci/services/sshd.sh``; without them these tests skip, except
under ``CI=true`` where that is a failure. Each test uses its own experiment id and cancels
whatever it left running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from ci_services import slurm_available, sshd_available, sshd_service
from services import require_service

from backends.slurm import SlurmBackend
from core.engine.executors import LocalTunnel, SlurmExecutor, SSHTunnel
from core.engine.protocol import Handle, JobSpec
from core.engine.states import JobState, StatusReport
from core.transport import CommandResult, Transport, TransportError

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PY = sys.executable
TIMEOUT = 60.0


@dataclass
class Cluster:
    """One way to reach the CI cluster, with helpers the scenarios share."""

    kind: str
    executor: SlurmExecutor
    backend: SlurmBackend
    workdir: Path
    experiment_id: str
    counter: int = 0

    def spec(
        self,
        argv: list[str],
        name: str = "job",
        *,
        executor: SlurmExecutor | None = None,
        dependencies: Sequence[Handle] = (),
        secret_env: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> JobSpec:
        self.counter += 1
        name = f"{name}{self.counter}"
        return JobSpec(
            experiment_id=self.experiment_id,
            job_name=name,
            run_tag=f"nrt-{self.experiment_id}-{name}",
            argv=argv,
            executor=executor or self.executor,
            job_dir=str(self.workdir / "store" / name),
            workdir=str(self.workdir),
            env=dict(env or {}),
            secret_env=dict(secret_env or {}),
            dependencies=list(dependencies),
        )

    def fresh_backend(self) -> SlurmBackend:
        """A new backend instance: what a restarted app or another CLI process would have."""
        return SlurmBackend(self.executor)

    async def wait(
        self,
        handle: Handle,
        done: Callable[[StatusReport], bool] = lambda r: r.state.is_terminal,
        what: str = "terminal",
        backend: SlurmBackend | None = None,
    ) -> StatusReport:
        backend = backend or self.backend
        deadline = time.monotonic() + TIMEOUT
        while True:
            report = (await backend.poll([handle]))[handle]
            if done(report):
                return report
            if time.monotonic() > deadline:
                pytest.fail(f"{self.kind}: {handle} never {what}; last: {report}")
            await asyncio.sleep(0.3)

    async def logs(self, handle: Handle, stream: str = "stdout", **kw: object) -> bytes:
        return b"".join(
            [c async for c in self.backend.logs(handle, stream=stream, **kw)]  # type: ignore[arg-type]
        )


@pytest.fixture(params=["local", "ssh"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    ok, why = slurm_available()
    require_service(ok, why)
    jobs = str(tmp_path / "jobs")
    if request.param == "ssh":
        ok, why = sshd_available()
        require_service(ok, why)
        s = sshd_service()
        tunnel: LocalTunnel | SSHTunnel = SSHTunnel(
            host=s.alias, ssh_config=s.ssh_config, job_dir=jobs
        )
    else:
        tunnel = LocalTunnel(job_dir=jobs)
    executor = SlurmExecutor(tunnel=tunnel, poll_rate=5.0, poll_burst=2)
    backend = SlurmBackend(executor)
    (tmp_path / "work").mkdir()
    c = Cluster(
        kind=request.param,
        executor=executor,
        backend=backend,
        workdir=tmp_path / "work",
        experiment_id=f"it-{uuid.uuid4().hex[:10]}",
    )
    try:
        yield c
    finally:
        with _suppress():
            await backend.cancel_experiment(c.experiment_id)
        await backend.close()


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


# ----------------------------------------------------------------------------- scenarios


async def test_submit_succeeds_and_logs_are_followed_to_the_end(cluster: Cluster) -> None:
    secret = f"tok-{uuid.uuid4().hex}"
    code = (
        "import hashlib, os, sys, time\n"
        "print(hashlib.sha256(os.environ['API_TOKEN'].encode()).hexdigest(), flush=True)\n"
        "for i in range(8):\n"
        "    print(f'line {i}', flush=True); time.sleep(0.15)\n"
        "print('to stderr', file=sys.stderr)\n"
    )
    handle = await cluster.backend.submit(
        cluster.spec([PY, "-c", code], "ok", secret_env={"API_TOKEN": secret})
    )
    assert handle.target == cluster.executor.target()

    chunks = [c async for c in cluster.backend.logs(handle, follow=True)]
    report = await cluster.wait(handle)

    digest = hashlib.sha256(secret.encode()).hexdigest()
    expected = (digest + "\n" + "".join(f"line {i}\n" for i in range(8))).encode()
    assert b"".join(chunks) == expected
    assert report.state is JobState.SUCCEEDED and report.exit_code == 0, report
    assert report.source in ("squeue", "sacct")
    assert await cluster.logs(handle, "stderr") == b"to stderr\n"
    # The secret reached the job, yet no file of the job holds it.
    job_files = [p for p in (cluster.workdir.parent / "jobs").rglob("*") if p.is_file()]
    assert job_files and all(secret.encode() not in p.read_bytes() for p in job_files)
    # Finished jobs' logs stay readable later, by another process that only has the handle.
    later = cluster.fresh_backend()
    assert (
        b"".join([c async for c in later.logs(handle, offset=len(digest) + 1)])
        == expected[len(digest) + 1 :]
    )
    await later.close()


async def test_failing_job_is_failed_with_its_exit_code(cluster: Cluster) -> None:
    handle = await cluster.backend.submit(
        cluster.spec(["bash", "-c", "echo before; echo bad >&2; exit 3"], "bad")
    )
    report = await cluster.wait(handle)
    _FINISHED[cluster.kind] = (handle, 3)  # its history is checked later, from sacct
    assert report.state is JobState.FAILED, report
    assert report.exit_code == 3
    assert await cluster.logs(handle) == b"before\n"
    assert await cluster.logs(handle, "stderr") == b"bad\n"


async def test_array_of_four_has_per_task_states_and_logs(cluster: Cluster) -> None:
    array = dataclasses.replace(cluster.executor, array="0-3")
    script = 'echo "task $SLURM_ARRAY_TASK_ID"; [ "$SLURM_ARRAY_TASK_ID" != 3 ] || exit 5'
    handle = await cluster.backend.submit(
        cluster.spec(["bash", "-c", script], "sweep", executor=array)
    )

    report = await cluster.wait(handle)
    tasks = await cluster.backend.array_tasks(handle)

    assert [t.job_id for t in tasks] == [f"{handle.job_id}_{i}" for i in range(4)]
    reports = await cluster.backend.poll(tasks)
    states = [reports[t].state for t in tasks]
    assert states == [JobState.SUCCEEDED] * 3 + [JobState.FAILED], reports
    assert reports[tasks[3]].exit_code == 5
    for i, task in enumerate(tasks):
        assert await cluster.logs(task) == f"task {i}\n".encode()
    assert report.state is JobState.FAILED and report.exit_code == 5
    assert "4 tasks" in (report.reason or "")


async def test_dependency_chain_whose_parent_fails(cluster: Cluster) -> None:
    parent = await cluster.backend.submit(cluster.spec(["bash", "-c", "exit 1"], "parent"))
    child = await cluster.backend.submit(
        cluster.spec(["echo", "child ran"], "child", dependencies=[parent])
    )
    grandchild = await cluster.backend.submit(
        cluster.spec(["echo", "grandchild ran"], "grandchild", dependencies=[child])
    )

    waiting = (await cluster.backend.poll([child]))[child]
    assert waiting.state is JobState.PENDING or waiting.state.is_terminal
    child_report = await cluster.wait(child)
    grand_report = await cluster.wait(grandchild)

    assert (await cluster.backend.poll([parent]))[parent].state is JobState.FAILED
    for report in (child_report, grand_report):
        assert report.state is JobState.CANCELLED, report
        assert "dependency" in (report.reason or "").lower(), report
    assert await cluster.logs(child) == b""


async def test_cancel_pending_running_array_task_and_experiment(cluster: Cluster) -> None:
    later = dataclasses.replace(cluster.executor, additional_parameters={"begin": "now+3600"})
    pending = await cluster.backend.submit(cluster.spec(["true"], "later", executor=later))
    running = await cluster.backend.submit(
        cluster.spec(["bash", "-c", "echo started; sleep 120"], "sleeper")
    )
    array = dataclasses.replace(cluster.executor, array="0-1")
    sweep = await cluster.backend.submit(cluster.spec(["sleep", "120"], "sweep", executor=array))
    idle = [
        await cluster.backend.submit(cluster.spec(["true"], "idle", executor=later))
        for _ in range(3)
    ]

    report = await cluster.wait(pending, lambda r: r.state is JobState.PENDING, "PENDING")
    assert report.reason == "BeginTime"
    await cluster.wait(running, lambda r: r.state is JobState.RUNNING, "RUNNING")
    await cluster.wait(sweep, lambda r: r.state is JobState.RUNNING, "RUNNING")

    before = dict(cluster.backend.stats)
    await asyncio.sleep(0.5)
    await cluster.backend.poll([pending, running, sweep, *idle])
    assert cluster.backend.stats["squeue"] - before.get("squeue", 0) == 1
    assert cluster.backend.stats["sacct"] == before.get("sacct", 0)

    await cluster.backend.cancel(pending)
    await cluster.backend.cancel(running)
    await cluster.backend.cancel(Handle("slurm", sweep.target, f"{sweep.job_id}_1"))
    assert (await cluster.wait(pending)).state is JobState.CANCELLED
    assert (await cluster.wait(running)).state is JobState.CANCELLED
    task1 = Handle("slurm", sweep.target, f"{sweep.job_id}_1")
    task0 = Handle("slurm", sweep.target, f"{sweep.job_id}_0")
    assert (await cluster.wait(task1)).state is JobState.CANCELLED
    assert (await cluster.backend.poll([task0]))[task0].state is JobState.RUNNING

    cancelled = await cluster.backend.cancel_experiment(cluster.experiment_id)
    assert set(cancelled) >= {sweep.job_id, *(h.job_id for h in idle)}
    for h in (task0, *idle):
        assert (await cluster.wait(h)).state is JobState.CANCELLED


class FlakyAfterSbatch(Transport):
    """Runs sbatch for real, then pretends the connection dropped before the answer came."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.target = inner.target
        self.sbatch_runs = 0

    async def run(self, argv: Sequence[str], **kw: object) -> CommandResult:
        result = await self.inner.run(argv, **kw)  # type: ignore[arg-type]
        if argv[0] == "sbatch":
            self.sbatch_runs += 1
            if self.sbatch_runs == 1:
                raise TransportError("connection lost while running sbatch")
        return result

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def put(self, local: Path, remote: str) -> None:
        await self.inner.put(local, remote)

    async def get(self, remote: str, local: Path) -> None:
        await self.inner.get(remote, local)

    async def read(self, remote: str, offset: int = 0, length: int | None = None) -> bytes:
        return await self.inner.read(remote, offset, length)

    async def write(self, remote: str, data: bytes, mode: int = 0o600) -> None:
        await self.inner.write(remote, data, mode)

    async def size(self, remote: str) -> int | None:
        return await self.inner.size(remote)

    async def makedirs(self, remote: str, mode: int = 0o700) -> None:
        await self.inner.makedirs(remote, mode)

    def tail(self, remote: str, **kw: object) -> AsyncIterator[bytes]:
        return self.inner.tail(remote, **kw)  # type: ignore[arg-type]


async def test_ambiguous_sbatch_failure_never_submits_twice(cluster: Cluster) -> None:
    flaky = FlakyAfterSbatch(cluster.backend.transport())
    backend = SlurmBackend(cluster.executor, transport=flaky)
    spec = cluster.spec(["true"], "once")

    handle = await backend.submit(spec)

    assert flaky.sbatch_runs == 1, "sbatch retried although the job existed"
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-n", spec.run_tag, "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [handle.job_id]


#: Jobs finished by earlier tests of this module, so the history test rarely has to wait.
_FINISHED: dict[str, tuple[Handle, int]] = {}


async def test_history_comes_from_sacct_after_the_job_left_squeue(cluster: Cluster) -> None:
    if cluster.kind in _FINISHED:
        handle, code = _FINISHED[cluster.kind]
    else:
        handle = await cluster.backend.submit(cluster.spec(["bash", "-c", "exit 4"], "old"))
        code = 4
        assert (await cluster.wait(handle)).exit_code == code
    deadline = time.monotonic() + 120
    while subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", f"{handle.job_id},1"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip():
        assert time.monotonic() < deadline, "job never left squeue (MinJobAge?)"
        await asyncio.sleep(1)

    later = cluster.fresh_backend()  # a new process: nothing in memory
    report = (await later.poll([handle]))[handle]
    await later.close()

    assert report.state is JobState.FAILED and report.source == "sacct", report
    assert report.exit_code == code
    assert later.stats["squeue"] == 1 and later.stats["sacct"] == 1


@pytest.mark.parametrize("cluster", ["ssh"], indirect=True)
async def test_ssh_connection_killed_mid_tail_resumes_byte_for_byte(cluster: Cluster) -> None:
    code = (
        "import time\n"
        "for i in range(400):\n"
        "    print(f'step {i:05d} ' + 'x' * (i % 61), flush=True); time.sleep(0.006)\n"
    )
    handle = await cluster.backend.submit(cluster.spec([PY, "-c", code], "chatty"))
    transport = cluster.backend.transport()
    handshakes = transport.handshakes  # type: ignore[attr-defined]
    listener = sshd_service().pid()
    assert listener is not None
    received: list[bytes] = []
    killed = False
    async for chunk in cluster.backend.logs(handle, follow=True):
        received.append(chunk)
        if not killed and sum(map(len, received)) > 2000:
            killed = True
            for pid in _children(listener):
                os.kill(pid, signal.SIGKILL)
    await cluster.wait(handle)

    log = Path(cluster.executor.tunnel.job_dir).rglob(f"slurm-{handle.job_id}.out")
    assert killed
    assert b"".join(received) == next(log).read_bytes()
    assert transport.handshakes > handshakes  # type: ignore[attr-defined]


def _children(parent: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                kids.append(int(entry))
    return kids


async def test_requeued_job_counts_its_restart(cluster: Cluster) -> None:
    handle = await cluster.backend.submit(
        cluster.spec(["bash", "-c", "echo run; sleep 120"], "requeued")
    )
    await cluster.wait(handle, lambda r: r.state is JobState.RUNNING, "RUNNING")

    result = await cluster.backend.transport().run(["scontrol", "requeue", handle.job_id])
    assert result.ok, result.stderr
    report = await cluster.wait(
        handle, lambda r: r.state is JobState.PENDING and r.restarts >= 1, "requeued"
    )

    assert report.restarts == 1 and report.source == "squeue", report
    await cluster.backend.cancel(handle)
    assert (await cluster.wait(handle)).state is JobState.CANCELLED
