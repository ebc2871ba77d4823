"""Shared helpers for the benchmarks: timing of whole commands, figures printed uniformly."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("NRT_BENCH_CACHE", "/tmp/nemorun-tui-bench"))


def time_command(
    argv: Sequence[str], *, runs: int = 5, env: dict[str, str] | None = None, check: bool = True
) -> list[float]:
    """Wall seconds of each run of ``argv`` (a fresh process each time)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
        if check and proc.returncode != 0:
            raise SystemExit(
                f"benchmark command failed ({proc.returncode}): {' '.join(argv)}\n"
                f"{proc.stderr.decode(errors='replace')}"
            )
    return times


def figure(
    name: str, values: Sequence[float] | float, unit: str = "s", budget: float | None = None
) -> None:
    """Print one figure: median (and min/max) against its budget."""
    vals = [values] if isinstance(values, (int, float)) else list(values)
    med = statistics.median(vals)
    spread = f"  (min {min(vals):.3f}, max {max(vals):.3f}, n={len(vals)})" if len(vals) > 1 else ""
    verdict = ""
    if budget is not None:
        verdict = f"  budget {budget:g}{unit}: {'OK' if med <= budget else 'OVER'}"
    print(f"{name:<58} {med:10.3f} {unit}{spread}{verdict}", flush=True)
