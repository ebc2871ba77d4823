"""Slurm figures against the real CI cluster (``.ci/services/slurm.sh`` + ``sshd.sh``).

Run: ``python bench/bench_slurm.py`` (or ``make bench``). Prints:

1. scheduler commands per refresh for 1, 10, 100 and 1,000 tracked jobs (must be constant:
   one squeue + at most one sacct), and the wall time of one refresh;
2. SSH handshakes for launching, polling and tailing 20 jobs at once (must be 1), the most
   sessions open at once on that connection, and "no more sessions" lines in sshd's log (0);
   plus the scheduler calls/s actually issued meanwhile under the default rate limit;
3. seconds from submit until RUNNING is visible, through the login-node and the SSH transport.

For comparison (measured on this machine kind, NeMo Run 0.11.1): it polls ``sacct -j <id>``
per job about every 2 s (10 jobs = ~5 calls/s) and logs in twice per experiment over SSH.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # ci_services: where the CI services keep their files

from ci_services import slurm_available, sshd_available, sshd_service  # noqa: E402

from backends.slurm import SlurmBackend  # noqa: E402
from core.engine.executors import LocalTunnel, SlurmExecutor, SSHTunnel  # noqa: E402
from core.engine.protocol import Handle, JobSpec  # noqa: E402
from core.engine.states import JobState  # noqa: E402

PY = sys.executable


def line(name: str, value: object, note: str = "") -> None:
    print(f"{name:<62} {value!s:>12}  {note}", flush=True)


def spec(ex: SlurmExecutor, exp: str, name: str, argv: list[str], base: str) -> JobSpec:
    return JobSpec(
        experiment_id=exp,
        job_name=name,
        run_tag=f"nrt-{exp}-{name}",
        argv=argv,
        executor=ex,
        job_dir=f"{base}/store/{name}",
        workdir=base,
    )


def old_finished_job() -> str | None:
    """A job id that has left squeue but that sacct remembers (so the sacct path is taken)."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-S", "now-2days", "-E", "now", "-s", "CD,F", "-o", "JobIDRaw"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    for job in reversed(out):
        live = subprocess.run(
            ["squeue", "-h", "-t", "all", "-j", f"{job},1"], capture_output=True, text=True
        ).stdout
        if not live.strip():
            return job
    return None


async def scheduler_calls_per_refresh(base: str) -> None:
    print("\n-- scheduler commands per refresh (login node transport, fresh backend each)")
    ex = SlurmExecutor(tunnel=LocalTunnel(job_dir=base), poll_rate=1000.0)
    held = SlurmExecutor(
        tunnel=ex.tunnel, array="0-999", additional_parameters={"hold": True}, poll_rate=1000.0
    )
    exp = f"bench-{uuid.uuid4().hex[:8]}"
    submitter = SlurmBackend(ex)
    array = await submitter.submit(spec(held, exp, "held", ["true"], base))
    old = old_finished_job()
    try:
        for n in (1, 10, 100, 1000):
            handles = [Handle("slurm", "local", f"{array.job_id}_{i}") for i in range(n)]
            if old:
                handles[-1] = Handle("slurm", "local", old)  # one that only sacct knows
            backend = SlurmBackend(ex)
            times = []
            for _ in range(3):
                backend._final.clear()
                start = time.perf_counter()
                reports = await backend.poll(handles)
                times.append(time.perf_counter() - start)
            calls = (backend.stats["squeue"] + backend.stats["sacct"]) / 3
            states = {r.state.value for r in reports.values()}
            line(
                f"{n:>5} tracked jobs: squeue+sacct per refresh",
                f"{calls:.0f}",
                f"({backend.stats['squeue'] // 3} squeue + {backend.stats['sacct'] // 3} sacct;"
                f" {statistics.median(times) * 1000:.0f} ms/refresh; states {sorted(states)})",
            )
    finally:
        await submitter.cancel_many([array])
        await submitter.close()


async def twenty_jobs_over_ssh(base: str) -> None:
    print("\n-- 20 jobs at once over SSH: launch, poll, follow every log (default rate limit)")
    s = sshd_service()
    log_start = os.path.getsize(s.log_file) if os.path.exists(s.log_file) else 0
    ex = SlurmExecutor(tunnel=SSHTunnel(host=s.alias, ssh_config=s.ssh_config, job_dir=base))
    backend = SlurmBackend(ex)
    transport = backend.transport()
    start_handshakes = transport.handshakes  # type: ignore[attr-defined]
    exp = f"bench-{uuid.uuid4().hex[:8]}"
    code = "import time\nfor i in range(20):\n    print('step', i, flush=True); time.sleep(0.25)"
    started = time.perf_counter()
    handles = await asyncio.gather(
        *[backend.submit(spec(ex, exp, f"j{i}", [PY, "-c", code], base)) for i in range(20)]
    )
    launched = time.perf_counter() - started

    async def follow(h: Handle) -> int:
        return sum(len(c) for c in [c async for c in backend.logs(h, follow=True)])

    async def monitor() -> None:
        while True:
            reports = await backend.poll(handles)
            if all(r.state.is_terminal for r in reports.values()):
                return
            await asyncio.sleep(1.0)

    calls_before = backend.stats["squeue"] + backend.stats["sacct"]
    window = time.perf_counter()
    sizes, _ = await asyncio.gather(asyncio.gather(*[follow(h) for h in handles]), monitor())
    window = time.perf_counter() - window
    calls = backend.stats["squeue"] + backend.stats["sacct"] - calls_before
    reports = await backend.poll(handles)
    ok = sum(r.state is JobState.SUCCEEDED for r in reports.values())
    with open(s.log_file, "rb") as fh:
        fh.seek(log_start)
        refusals = fh.read().decode(errors="replace").count("no more sessions")
    line("jobs launched over SSH (concurrent sbatch)", f"{len(handles)}", f"in {launched:.2f} s")
    line(
        "SSH handshakes for launch + poll + 20 followed logs",
        transport.handshakes - start_handshakes,  # type: ignore[attr-defined]
        "(must be 1; NeMo Run: 2 logins per experiment)",
    )
    line(
        "most SSH sessions open at once on that connection",
        transport.peak_channels,  # type: ignore[attr-defined]
        "(sshd MaxSessions = 10)",
    )
    line('"no more sessions" lines in sshd.log', refusals, "(must be 0)")
    line(
        "scheduler calls/s while polling + following 20 jobs",
        f"{calls / window:.2f}",
        f"({calls} squeue/sacct in {window:.1f} s; limit 0.5/s, burst 2;"
        f" NeMo Run ~5 sacct/s for 10 jobs)",
    )
    line("jobs SUCCEEDED, log bytes followed", f"{ok}/20", f"{sum(sizes)} bytes")
    await backend.close()


async def submit_to_running(base: str, kind: str) -> None:
    if kind == "ssh":
        s = sshd_service()
        tunnel: LocalTunnel | SSHTunnel = SSHTunnel(
            host=s.alias, ssh_config=s.ssh_config, job_dir=base
        )
    else:
        tunnel = LocalTunnel(job_dir=base)
    ex = SlurmExecutor(tunnel=tunnel, poll_rate=20.0, poll_burst=1)
    backend = SlurmBackend(ex)
    exp = f"bench-{uuid.uuid4().hex[:8]}"
    await backend.poll([Handle("slurm", ex.target(), "1")])  # connect first: not part of it
    seconds = []
    for i in range(8):
        await asyncio.sleep(1.0)  # let the previous cancel settle: measure an idle cluster
        start = time.perf_counter()
        h = await backend.submit(spec(ex, exp, f"r{i}", ["sleep", "30"], base))
        while (await backend.poll([h]))[h].state is not JobState.RUNNING:
            await asyncio.sleep(0.05)
        seconds.append(time.perf_counter() - start)
        await backend.cancel(h)
    line(
        f"submit -> RUNNING visible ({kind}), median of 8",
        f"{statistics.median(seconds):.2f} s",
        f"(min {min(seconds):.2f}, max {max(seconds):.2f}; polled at 20/s for the figure)",
    )
    await backend.close()


async def main() -> int:
    ok, why = slurm_available()
    if not ok:
        print(f"bench_slurm: skipped, {why}")
        return 0
    ssh_ok, ssh_why = sshd_available()
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as base:
        await scheduler_calls_per_refresh(base)
        if ssh_ok:
            await twenty_jobs_over_ssh(base)
        else:
            print(f"(SSH figures skipped: {ssh_why})")
        print("\n-- latency")
        await submit_to_running(base, "local")
        if ssh_ok:
            await submit_to_running(base, "ssh")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
