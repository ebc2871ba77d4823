"""The store at scale (issue 9): `ls` and `status` over 10,000 and 100,000 experiments.

Budget: at 100,000 each takes at most 2x its 10,000 figure, measured in the same run. Both
stores (2 jobs per experiment) are written straight to disk with the store's own record code
and indexed once, then cached under $NRT_BENCH_CACHE (default /tmp/nemorun-tui-bench).

Run: ``python bench/bench_store_scale.py [--app]`` (``--app`` adds the app's first frame with
rows, through bench_app's pseudo-terminal harness).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import BIN, CACHE, figure, time_command

SIZES = (10_000, 100_000)
STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "SUCCEEDED")


def build(n: int) -> Path:
    """A store of ``n`` experiments with 2 jobs each (built once, then reused)."""
    from core.engine.protocol import Handle
    from core.engine.states import JobState
    from core.store import ExperimentRecord, JobRecord, Store
    from core.store.records import dump_manifest

    home = CACHE / f"store-scale-{n}"
    marker = home / ".complete"
    if marker.exists():
        return home
    import shutil

    shutil.rmtree(home, ignore_errors=True)
    experiments = home / "experiments"
    experiments.mkdir(parents=True, mode=0o700)
    print(f"(building a {n}-experiment store in {home}, once)", flush=True)
    started = time.perf_counter()
    t0 = 1_700_000_000.0
    for i in range(n):
        state = JobState(STATES[i % 4])
        at = t0 + i * 10
        record = ExperimentRecord(
            id=f"scale-{i:06d}",
            title=f"sweep-{i % 50}",
            created_at=at,
            jobs=[
                JobRecord(
                    name=name,
                    kind="script",
                    backend="local",
                    handle=Handle("local", "local", f"/nonexistent/{i}/{name}"),
                    state=state,
                    submitted_at=at + 1,
                    ended_at=at + 5,
                )
                for name in ("train", "eval")
            ],
            tags=["bench"],
        )
        folder = experiments / record.id
        for name in ("train", "eval"):
            (folder / "jobs" / name).mkdir(parents=True)
            (folder / "jobs" / name / "executor.json").write_text('{"backend": "local"}')
        (folder / "experiment.json").write_text(dump_manifest(record))
        (folder / "events.jsonl").write_text(f'{{"kind": "created", "t": {at}}}\n')
    Store(home).rebuild_index()
    marker.write_text("ok\n")
    print(f"(built in {time.perf_counter() - started:.1f} s)", flush=True)
    return home


def main() -> int:
    cli = str(BIN / "nemorun-tui")
    homes = {n: build(n) for n in SIZES}
    results: dict[tuple[str, int], float] = {}
    cases = [
        ("ls", ["ls"]),
        ("ls --limit 20", ["ls", "--limit", "20"]),
        ("status by title", ["status", "sweep-7", "--no-refresh"]),
        ("status by id prefix", ["status", "scale-000123", "--no-refresh"]),
    ]
    envs = {}
    for n, home in homes.items():
        env = {**os.environ, "NEMORUN_TUI_HOME": str(home)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure with compiled modules
        envs[n] = env
        for _, argv in cases:  # warm: index current, renderings kept, modules compiled
            time_command([cli, *argv], runs=2, env=env, check=False)
    for name, argv in cases:
        # Sizes alternate run by run, so a busy machine weighs on both figures alike.
        times: dict[int, list[float]] = {n: [] for n in SIZES}
        for _ in range(9):
            for n in SIZES:
                times[n] += time_command([cli, *argv], runs=1, env=envs[n], check=False)
        for n in SIZES:
            figure(f"{name} over {n:,} experiments", times[n])
            results[(name, n)] = statistics.median(times[n])
    small, big = SIZES
    worst = 0.0
    for name, _ in cases:
        ratio = results[(name, big)] / results[(name, small)]
        worst = max(worst, ratio)
        figure(f"{name}: {big:,} / {small:,}", ratio, unit="x", budget=2.0)
    if "--app" in sys.argv:
        from bench_app import cold_start

        frames = {}
        for n, home in homes.items():
            newest = f"scale-{n - 1:06d}"
            _, rows = cold_start(home, newest, runs=3)
            frames[n] = statistics.median(rows)
            figure(f"app: first frame with rows, {n:,} experiments", rows, budget=0.6)
        figure("app first frame: 100,000 / 10,000", frames[big] / frames[small], "x", budget=1.5)
    return 0 if worst <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
