"""Docker-backend figures against the real engine (podman's Docker API, ``.ci/services/podman.sh``).

Run: ``python bench/bench_docker.py`` (or ``make bench``). Prints:

1. seconds from ``submit`` to RUNNING seen by a poll (the submit call itself, and until the
   first poll that says RUNNING), over several busybox containers;
2. seconds from a container's end to its outcome recorded by a waiter (engine events);
3. the cost of polling 50 running containers: one ``poll`` (one list call, whatever the
   number) against the reference of one inspect per container (50 calls), in the same run,
   with the engine calls each made and their ratio.

For comparison: NeMo Run's Docker executor asks the engine about each job on its own (one
container lookup per job per status), i.e. the 50-inspect reference.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # ci_services: where the CI services keep their files

from ci_services import BUSYBOX_IMAGE, docker_available, docker_url  # noqa: E402

from backends.docker import DockerBackend  # noqa: E402
from core.engine.executors_docker import DockerExecutor  # noqa: E402
from core.engine.protocol import Handle, JobSpec  # noqa: E402
from core.engine.states import JobState  # noqa: E402

POLL_JOBS = 50


def line(name: str, value: object, note: str = "") -> None:
    print(f"{name:<62} {value!s:>12}  {note}", flush=True)


def executor() -> DockerExecutor:
    return DockerExecutor(
        container_image=BUSYBOX_IMAGE, base_url=docker_url(), pull="never", stop_grace_seconds=1
    )


def spec(ex: DockerExecutor, base: Path, tag: str, name: str, argv: list[str]) -> JobSpec:
    return JobSpec(
        experiment_id=f"bench-{tag}",
        job_name=name,
        run_tag=f"nrt-bench-{tag}-{name}",
        argv=argv,
        executor=ex,
        job_dir=str(base / name),
        workdir=str(base),
    )


async def wait_running(backend: DockerBackend, handle: Handle, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (await backend.poll([handle]))[handle].state is not JobState.RUNNING:
        if time.monotonic() > deadline:
            raise SystemExit(f"{handle} never RUNNING")
        await asyncio.sleep(0.01)


async def latency(base: Path, tag: str, runs: int = 8) -> None:
    print("\n-- submit to RUNNING (busybox `sleep 30`, image present, network none)")
    backend = DockerBackend.from_profile(executor())
    submits, running = [], []
    try:
        for i in range(runs):
            s = spec(backend.executor, base, tag, f"lat{i}", ["sleep", "30"])
            t0 = time.perf_counter()
            handle = await backend.submit(s)
            t1 = time.perf_counter()
            await wait_running(backend, handle)
            t2 = time.perf_counter()
            submits.append(t1 - t0)
            running.append(t2 - t0)
            await backend.cancel(handle)
    finally:
        await backend.close()
    line("submit() call (checks, create, start)", f"{statistics.median(submits):.3f} s",
         f"median of {runs}; min {min(submits):.3f}, max {max(submits):.3f}")  # fmt: skip
    line("submit to RUNNING seen by a poll", f"{statistics.median(running):.3f} s",
         f"median of {runs}; min {min(running):.3f}, max {max(running):.3f}")  # fmt: skip


async def end_seen(base: Path, tag: str, runs: int = 5) -> None:
    print("\n-- a job's end seen by a waiter (wait_changed on engine events, then one poll)")
    backend = DockerBackend.from_profile(executor())
    lags = []
    try:
        for i in range(runs):
            job = spec(backend.executor, base, tag, f"end{i}", ["sleep", "1"])
            handle = await backend.submit(job)
            await wait_running(backend, handle)
            while True:
                report = (await backend.poll([handle]))[handle]
                if report.state.is_terminal:
                    break
                await backend.wait_changed([handle], timeout=5)
            seen = time.time()
            assert report.ended_at is not None
            lags.append(seen - report.ended_at)
    finally:
        await backend.close()
    line("seconds from the container's end to its outcome recorded",
         f"{statistics.median(lags):.3f} s",
         f"median of {runs}; max {max(lags):.3f} (polling alone: up to 1 s)")  # fmt: skip


async def polling(base: Path, tag: str) -> None:
    print(f"\n-- polling {POLL_JOBS} running containers")
    backend = DockerBackend.from_profile(executor())
    handles: list[Handle] = []
    try:
        t0 = time.perf_counter()
        for i in range(POLL_JOBS):
            s = spec(backend.executor, base, tag, f"poll{i:02d}", ["sleep", "300"])
            handles.append(await backend.submit(s))
        line(f"submitting {POLL_JOBS} containers", f"{time.perf_counter() - t0:.2f} s")
        reports = await backend.poll(handles)
        deadline = time.monotonic() + 120
        while any(r.state is not JobState.RUNNING for r in reports.values()):
            if time.monotonic() > deadline:
                raise SystemExit("not all containers RUNNING")
            await asyncio.sleep(0.2)
            reports = await backend.poll(handles)

        rounds = 10
        before = sum(backend.client.calls.values())
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            reports = await backend.poll(handles)
            times.append(time.perf_counter() - t)
        assert all(r.state is JobState.RUNNING for r in reports.values())
        calls = (sum(backend.client.calls.values()) - before) / rounds
        one_list = statistics.median(times)
        line(f"poll({POLL_JOBS} handles): engine calls per refresh", f"{calls:g}", "(list)")
        line(f"poll({POLL_JOBS} handles): wall time", f"{one_list * 1000:.1f} ms",
             f"median of {rounds}")  # fmt: skip

        names = [backend._container_of(h.job_id) or "" for h in handles]
        ref = []
        before = sum(backend.client.calls.values())
        for _ in range(3):
            t = time.perf_counter()
            for name in names:
                await backend.client.inspect(name)
            ref.append(time.perf_counter() - t)
        ref_calls = (sum(backend.client.calls.values()) - before) / 3
        per_inspect = statistics.median(ref)
        line(f"reference: one inspect per container ({POLL_JOBS})", f"{per_inspect * 1000:.1f} ms",
             f"{ref_calls:g} calls, median of 3")  # fmt: skip
        line("ratio reference / one list", f"{per_inspect / one_list:.1f}x",
             f"calls {ref_calls:g} vs {calls:g}")  # fmt: skip
    finally:
        for h in handles:  # not measured: kill + remove
            name = backend._container_of(h.job_id)
            if name:
                await backend.client.remove(name)
        await backend.close()


async def main() -> int:
    ok, why = docker_available()
    if not ok:
        print(f"bench_docker: skipped, {why}")
        return 0
    tag = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="nrt-bench-docker-") as tmp:
        base = Path(tmp)
        await latency(base, tag)
        await end_seen(base, tag)
        await polling(base, tag)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(asyncio.run(main()))
