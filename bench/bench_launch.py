"""Latency of a local launch (issue 9), ours against NeMo Run 0.11.1 in the same run.

Two end-to-end launches, each waited on until the job has ended and its output is shown:

- ``nemorun-tui run --script "echo hi"`` against ``bench/nemo_run_ref/script_echo.py``
  (``run.run(run.Script(inline="echo hi"), executor=run.LocalExecutor())``);
- the one-task Partial of ``bench/bench_workspace.py`` (``run noop``) against
  ``bench/nemo_run_ref/partial_noop.py`` (``run.run(run.Partial(noop, ...), ...)``).

This machine's speed varies from day to day, so each figure is also given as a ratio
against the reference, measured pair by pair (ours, reference, ours, reference …), so a
drift in the machine's speed during the run moves both sides of a pair alike. Budgets:
0.3 s for the script and 0.6 s for the Partial; targets: NeMo Run takes at least 10x and
6x as long.

NeMo Run is not a dependency: point ``NRT_BENCH_NEMO_RUN`` at the Python of a separate venv
that has it (default ``$NRT_BENCH_CACHE/nemo-run-venv/bin/python``). Without it the
absolute figures are still printed and the ratios are skipped. ``NRT_BENCH_RUNS`` sets the
number of pairs (default 5, after one warm-up pair).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import BIN, CACHE, ROOT, figure

HERE = Path(__file__).resolve().parent
WORKSPACE = HERE / "bench_workspace.py"
REFERENCE = HERE / "nemo_run_ref"
NEMO_RUN_VERSION = "0.11.1"
DEFAULT_REFERENCE_PYTHON = CACHE / "nemo-run-venv" / "bin" / "python"
INSTALL_HINT = (
    f"python3 -m venv {CACHE / 'nemo-run-venv'} && "
    f"{CACHE / 'nemo-run-venv' / 'bin' / 'pip'} install nemo_run=={NEMO_RUN_VERSION} "
    "leptonai==0.27.3  (or set NRT_BENCH_NEMO_RUN to a Python that has it)"
)

SCRIPT_BUDGET = 0.3
PARTIAL_BUDGET = 0.6
SCRIPT_TARGET = 10.0
PARTIAL_TARGET = 6.0


def reference_python() -> Path | None:
    """The Python of a NeMo Run 0.11.1 venv, or None (then ratios are skipped, with why)."""
    python = Path(os.environ.get("NRT_BENCH_NEMO_RUN") or DEFAULT_REFERENCE_PYTHON)
    if not python.exists():
        print(f"reference not installed: {INSTALL_HINT}")
        return None
    probe = subprocess.run(
        [str(python), "-c", "import nemo_run; print(nemo_run.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    version = probe.stdout.strip()
    if probe.returncode != 0 or version != NEMO_RUN_VERSION:
        why = version or probe.stderr.strip().splitlines()[-1:] or ["no version"]
        print(f"reference not usable ({python}: {why}); install: {INSTALL_HINT}")
        return None
    return python


def run_once(argv: Sequence[str], env: dict[str, str], expect: str) -> float:
    """Wall seconds of one whole process; it must exit 0 *and* print ``expect``.

    NeMo Run's ``run.run`` exits 0 when the job failed, so the output is the check.
    """
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - start
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    if proc.returncode != 0 or expect not in out:
        raise SystemExit(
            f"benchmark command failed ({proc.returncode}, expected {expect!r}): "
            f"{' '.join(argv)}\n{out[-2000:]}"
        )
    return elapsed


def paired(
    ours: Sequence[str],
    reference: Sequence[str] | None,
    *,
    expect: str,
    env_ours: dict[str, str],
    env_ref: dict[str, str],
    runs: int,
) -> tuple[list[float], list[float]]:
    """Times of ours and the reference, run in turn after one warm-up pair."""
    ours_times: list[float] = []
    ref_times: list[float] = []
    for i in range(runs + 1):
        a = run_once(ours, env_ours, expect)
        b = run_once(reference, env_ref, expect) if reference is not None else None
        if i == 0:
            continue  # warm-up: page cache, .pyc files
        ours_times.append(a)
        if b is not None:
            ref_times.append(b)
    return ours_times, ref_times


def report(name: str, ours: list[float], ref: list[float], *, budget: float, target: float) -> None:
    figure(f"{name}: ours", ours, budget=budget)
    if not ref:
        return
    figure(f"{name}: NeMo Run {NEMO_RUN_VERSION}", ref)
    ratios = [r / o for o, r in zip(ours, ref, strict=True)]
    med = statistics.median(ratios)
    verdict = "OK" if med >= target else "UNDER"
    print(
        f"{name + ': NeMo Run / ours (pair by pair)':<58} {med:9.1f} x"
        f"  (min {min(ratios):.1f}, max {max(ratios):.1f}, n={len(ratios)})"
        f"  target >= {target:g}x: {verdict}",
        flush=True,
    )


def main() -> None:
    runs = int(os.environ.get("NRT_BENCH_RUNS", "5"))
    cli = str(BIN / "nemorun-tui")
    python = reference_python()
    with tempfile.TemporaryDirectory() as ours_home, tempfile.TemporaryDirectory() as ref_home:
        env_ours = {**os.environ, "NEMORUN_TUI_HOME": ours_home}
        # NeMo Run's Partial runs whatever `python` is first on PATH: make it the reference's.
        ref_path = f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}" if python else ""
        env_ref = {**os.environ, "NEMORUN_HOME": ref_home, "PATH": ref_path}
        ours, ref = paired(
            [cli, "run", "--script", "echo hi"],
            [str(python), str(REFERENCE / "script_echo.py")] if python else None,
            expect="hi",
            env_ours=env_ours,
            env_ref=env_ref,
            runs=runs,
        )
        report('run --script "echo hi"', ours, ref, budget=SCRIPT_BUDGET, target=SCRIPT_TARGET)
        ours, ref = paired(
            [cli, "--workspace", str(WORKSPACE), "run", "noop"],
            [str(python), str(REFERENCE / "partial_noop.py")] if python else None,
            expect="hello from a Partial",
            env_ours=env_ours,
            env_ref=env_ref,
            runs=runs,
        )
        report("one-task Partial", ours, ref, budget=PARTIAL_BUDGET, target=PARTIAL_TARGET)


if __name__ == "__main__":
    main()
