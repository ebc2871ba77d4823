"""Core engine figures (issue 2 budgets): import time, CLI end to end, listing 10,000 runs.

Run: ``python bench/bench_core.py`` (or ``make bench`` for every benchmark).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import BIN, CACHE, figure, time_command

from core.engine.states import JobState
from core.store import ExperimentRecord, JobRecord, Store

WORKSPACE = Path(__file__).with_name("bench_workspace.py")
N_BIG = 10_000


def big_store() -> Path:
    """A store with 10,000 experiments, built once and cached between runs."""
    home = CACHE / "store-10k"
    marker = home / ".complete"
    if marker.exists():
        return home
    store = Store(home)
    states = [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.RUNNING]
    print(f"(building a {N_BIG}-experiment store in {home}, once)", flush=True)
    for i in range(N_BIG):
        rec = ExperimentRecord(
            id=f"bench-{i:05d}",
            title=f"sweep-{i % 50}",
            created_at=1_700_000_000 + i,
            jobs=[
                JobRecord(name="train", kind="partial", backend="local", state=states[i % 4]),
                JobRecord(name="eval", kind="script", backend="local", state=states[(i + 1) % 4]),
            ],
            tags=["bench"],
        )
        store.create(rec, {"train": {"task.json": "{}"}, "eval": {"task.json": "{}"}})
    marker.write_text("ok")
    return home


def main() -> None:
    py = sys.executable
    cli = str(BIN / "nemorun-tui")
    figure(
        "import core (core, engine, store, monitor)",
        time_command(
            [py, "-c", "import core, core.engine, core.store, core.engine.monitor"], runs=7
        ),
        budget=0.15,
    )
    figure(
        "import nemorun_tui (the Python API entry)",
        time_command([py, "-c", "import nemorun_tui"], runs=7),
    )
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "NEMORUN_TUI_HOME": home}
        figure(
            'nemorun-tui run --script "echo hi" (end to end)',
            time_command([cli, "run", "--script", "echo hi"], runs=7, env=env),
            budget=0.3,
        )
        figure(
            "one-task Partial end to end (run noop)",
            time_command([cli, "--workspace", str(WORKSPACE), "run", "noop"], runs=5, env=env),
            budget=0.6,
        )
    home = big_store()
    env = {**os.environ, "NEMORUN_TUI_HOME": str(home)}
    time_command([cli, "ls", "--json"], runs=1, env=env)  # warm the index once
    figure(f"ls over {N_BIG} experiments", time_command([cli, "ls"], runs=7, env=env), budget=0.1)
    figure(
        f"ls --json over {N_BIG} experiments",
        time_command([cli, "ls", "--json"], runs=5, env=env),
    )
    figure(
        f"status EXP with {N_BIG} stored (by id prefix)",
        time_command([cli, "status", "bench-09999", "--no-refresh"], runs=7, env=env, check=False),
        budget=0.1,
    )
    figure(
        f"status EXP with {N_BIG} stored (by title, latest)",
        time_command([cli, "status", "sweep-7", "--no-refresh"], runs=7, env=env, check=False),
        budget=0.1,
    )
    start = time.perf_counter()
    Store(home).rebuild_index()
    figure(f"index rebuild from {N_BIG} manifests", time.perf_counter() - start)


if __name__ == "__main__":
    main()
