"""Ray figures against the real CI head (``.ci/services/ray.sh``), and Ray on the real Slurm.

Run: ``python bench/bench_ray.py`` (or ``make bench``). Prints:

1. seconds from ``submit`` returning until a poll sees RUNNING (and until SUCCEEDED) for a
   short job on the CI head;
2. the cost of polling 20 jobs: HTTP requests and wall time of one ``poll`` (one list call)
   against the in-run reference of 20 ``GET /api/jobs/{id}`` (what a per-job poller does,
   e.g. ``JobSubmissionClient.get_job_status`` in a loop), sequential and concurrent;
3. with Slurm up, seconds from sbatch until the Ray job inside the allocation is RUNNING
   (allocation + head start + submit), and until the allocation is gone after it ended.

Skips (exit 0, says why) when the head is not running.
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
sys.path.insert(0, str(ROOT / "tests"))

from ci_services import ray_available, ray_service, slurm_available  # noqa: E402

from backends.ray import RayBackend  # noqa: E402
from core.engine.executors_ray import RayExecutor, SlurmRayExecutor  # noqa: E402
from core.engine.protocol import Handle, JobSpec  # noqa: E402
from core.engine.states import JobState  # noqa: E402


def line(name: str, value: object, note: str = "") -> None:
    print(f"{name:<62} {value!s:>12}  {note}", flush=True)


def spec(ex: object, base: str, name: str, argv: list[str]) -> JobSpec:
    tag = f"nrt-bench-{uuid.uuid4().hex[:8]}-{name}"
    return JobSpec(
        experiment_id="bench-ray",
        job_name=name,
        run_tag=tag,
        argv=argv,
        executor=ex,  # type: ignore[arg-type]
        job_dir=f"{base}/{tag}",
        workdir=base,
    )


async def wait(
    backend: RayBackend, handle: Handle, want: set[JobState], timeout: float = 120
) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if (await backend.poll([handle]))[handle].state in want:
            return time.perf_counter() - start
        await asyncio.sleep(0.05)
    raise SystemExit(f"{handle} never reached {want}")


async def submit_to_running(backend: RayBackend, base: str, runs: int = 5) -> None:
    running, done = [], []
    for i in range(runs):
        handle = await backend.submit(spec(backend.executor, base, f"s{i}", ["sleep", "1"]))
        t0 = time.perf_counter()
        running.append(await wait(backend, handle, {JobState.RUNNING, JobState.SUCCEEDED}))
        await wait(backend, handle, {JobState.SUCCEEDED})
        done.append(time.perf_counter() - t0)
    line(
        "submit -> RUNNING seen (s, median of 5)",
        f"{statistics.median(running):.2f}",
        f"min {min(running):.2f} max {max(running):.2f}",
    )
    line("submit -> SUCCEEDED seen, `sleep 1` (s, median of 5)", f"{statistics.median(done):.2f}")


async def poll_cost(backend: RayBackend, base: str, n: int = 20, repeats: int = 10) -> None:
    handles = [
        await backend.submit(spec(backend.executor, base, f"p{i}", ["true"])) for i in range(n)
    ]
    for h in handles:
        await wait(backend, h, {JobState.SUCCEEDED, JobState.FAILED})
    backend._final.clear()  # measure live polling, not the answers kept for ended jobs
    client = backend.client
    one, seq, conc = [], [], []
    for _ in range(repeats):
        before = client.calls.get("list", 0)
        t0 = time.perf_counter()
        reports = await backend.poll(handles)
        one.append(time.perf_counter() - t0)
        backend._final.clear()
        assert client.calls["list"] == before + 1 and len(reports) == n
        t0 = time.perf_counter()
        for h in handles:
            await client.get(h.job_id)
        seq.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await asyncio.gather(*(client.get(h.job_id) for h in handles))
        conc.append(time.perf_counter() - t0)
    jobs_on_head = len(await client.list())
    line(f"poll {n} jobs: HTTP requests", 1, f"per-job reference: {n}")
    line(f"poll {n} jobs: one list call (ms, median)", f"{statistics.median(one) * 1e3:.1f}",
         f"list returns all {jobs_on_head} jobs on the head")  # fmt: skip
    line(f"reference: {n} GETs one by one (ms, median)", f"{statistics.median(seq) * 1e3:.1f}",
         f"ratio {statistics.median(seq) / statistics.median(one):.1f}x")  # fmt: skip
    line(f"reference: {n} GETs concurrently (ms, median)", f"{statistics.median(conc) * 1e3:.1f}",
         f"ratio {statistics.median(conc) / statistics.median(one):.1f}x")  # fmt: skip


async def slurm_ray(base: str) -> None:
    ok, why = slurm_available()
    if not ok:
        line("Ray on Slurm", "skipped", why)
        return
    from backends.ray.slurm_ray import SlurmRayBackend

    ex = SlurmRayExecutor(
        ray_python=ray_service().python,
        object_store_memory=100_000_000,
        num_cpus=1,
        poll_rate=5,
        time="00:10:00",
    )
    backend = SlurmRayBackend.from_profile(ex)
    try:
        t0 = time.perf_counter()
        handle = await backend.submit(spec(ex, base, "sray", ["sleep", "2"]))
        while (await backend.poll([handle]))[handle].state is not JobState.RUNNING:
            await asyncio.sleep(0.2)
        running = time.perf_counter() - t0
        while not (await backend.poll([handle]))[handle].state.is_terminal:
            await asyncio.sleep(0.2)
        total = time.perf_counter() - t0
        line("Ray on Slurm: sbatch -> Ray job RUNNING (s)", f"{running:.1f}", "head start incl.")
        line("Ray on Slurm: sbatch -> ended, cluster torn down (s)", f"{total:.1f}", "`sleep 2`")
    finally:
        await backend.close()


async def main() -> int:
    ok, why = ray_available()
    if not ok:
        print(f"skipped: {why}")
        return 0
    backend = RayBackend(RayExecutor(address=ray_service().address, log_interval=0.2))
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as base:
        try:
            await submit_to_running(backend, base)
            await poll_cost(backend, base)
        finally:
            await backend.close()
        if os.environ.get("NRT_BENCH_SKIP_SLURM_RAY") != "1":
            await slurm_ray(base)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
