"""torchrun on the Ray backend: seconds from launch until every rank runs, and until the
engine saw the job end, for 2 ranks and, as the in-run reference, 1 rank.

The CI Ray head runs on this machine, so the job's ``python`` is this interpreter (CPU
torch). Same rank script and figures as ``bench_distributed`` (rank started / joined,
latest rank minus the moment ``Engine.launch`` was called), plus the whole run (launch to
SUCCEEDED seen by ``Engine.wait``). Runs are paired (1, 2, 1, 2 …) after one warm-up.
Skipped, with why, without torch or the head. ``NRT_BENCH_RUNS`` sets the pairs (default 3).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _util import figure
from bench_distributed import RANK_SCRIPT, one


async def series(address: str, runs: int) -> None:
    from core.engine import Engine, registry
    from core.engine.executors_ray import RayExecutor
    from core.store import Store

    def executor(n: int) -> RayExecutor:
        return RayExecutor(
            address=address,
            launcher="torchrun",
            nproc_per_node=n,
            python=sys.executable,
            log_interval=0.2,
        )

    with tempfile.TemporaryDirectory(prefix="nrt-bench-ray-ddp-") as tmp:
        script = Path(tmp) / "ranks.py"
        script.write_text(RANK_SCRIPT)
        engine = Engine(Store(Path(tmp) / "home"))
        results: dict[int, list[tuple[float, float, float]]] = {1: [], 2: []}
        try:
            await one(engine, executor(1), script, "warm-up")
            for _ in range(runs):
                for n in (1, 2):
                    t0 = time.time()
                    started, joined = await one(engine, executor(n), script, f"ray-{n}")
                    results[n].append((started, joined, time.time() - t0))
        finally:
            await registry.close_all()
    for n in (1, 2):
        figure(f"ray torchrun: launch -> all {n} rank(s) started", [r[0] for r in results[n]])
        figure(f"ray torchrun: launch -> all {n} rank(s) joined", [r[1] for r in results[n]])
        figure(f"ray torchrun: launch -> {n}-rank job ended", [r[2] for r in results[n]])
    for i, label in ((1, "joined"), (2, "ended")):
        ratios = [b[i] / a[i] for a, b in zip(results[1], results[2], strict=True)]
        figure(f"ray torchrun: {label}, 2 ranks / 1 rank (paired)", ratios, unit="x")


def main() -> int:
    if importlib.util.find_spec("torch") is None:
        print("skipped: torch is not installed (pip install torch==2.13.0)")
        return 0
    from ci_services import ray_available, ray_service

    ok, why = ray_available()
    if not ok:
        print(f"skipped: {why}")
        return 0
    asyncio.run(series(ray_service().address, int(os.environ.get("NRT_BENCH_RUNS", "3"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
