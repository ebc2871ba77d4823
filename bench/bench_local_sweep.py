"""Local sweeps (one pool process, throttled): seconds from launch until every point ended,
and the most processes of the sweep alive at once, for 200 points against 20 in the same run.

Each point is ``true``; the throttle is the default (one slot per CPU). Processes are counted
by sampling /proc every 20 ms for the pool and the points' supervisors (their command line
names ``backends/local/pool.py`` or ``supervisor.py``). Before the pool, a 200-point sweep
started 200 supervisors at once.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _util import figure


def sweep_processes() -> int:
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"backends/local/pool.py" in cmdline or b"backends/local/supervisor.py" in cmdline:
            count += 1
    return count


async def one(points: int, home: Path) -> tuple[float, int]:
    from core.config import Script
    from core.engine import Engine, registry
    from core.engine.executors import LocalExecutor
    from core.engine.sweep_plan import task_sweep_plan
    from core.store import Store
    from core.sweep import parse_param

    engine = Engine(Store(home))
    plan = task_sweep_plan(
        Script(inline="true"),
        [parse_param(f"env.N=range(0,{points})")],
        LocalExecutor(),
        title=f"sweep-{points}",
    )
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, sweep_processes())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    try:
        record = await engine.launch(plan)
        done = await asyncio.wait_for(engine.wait(record.id, max_interval=0.2), 600)
    finally:
        stop.set()
        sampler.join()
        await registry.close_all()
    took = time.perf_counter() - t0
    states = {j.state.value for j in done.jobs}
    if states != {"SUCCEEDED"}:
        raise SystemExit(f"{points}-point sweep ended {states}")
    return took, peak


def main() -> int:
    runs = int(os.environ.get("NRT_BENCH_RUNS", "3"))
    results: dict[int, list[tuple[float, int]]] = {20: [], 200: []}
    with tempfile.TemporaryDirectory(prefix="nrt-bench-sweep-") as tmp:
        for i in range(runs):
            for n in (20, 200):
                results[n].append(asyncio.run(one(n, Path(tmp) / f"home-{n}-{i}")))
    for n in (20, 200):
        figure(f"local sweep of {n} points: launch -> all ended", [t for t, _ in results[n]])
        figure(
            f"local sweep of {n} points: sweep processes alive at most",
            [float(p) for _, p in results[n]],
            unit="",
        )
    ratios = [b[0] / a[0] for a, b in zip(results[20], results[200], strict=True)]
    figure("local sweep: 200 points / 20 points (paired)", ratios, unit="x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
