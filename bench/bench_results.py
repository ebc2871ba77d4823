"""Results benchmarks (core.results and the Metrics view's chart).

1. Bytes read per metrics refresh, for 50 runs and for 5 runs in the same process (the
   reference): each run has a long history (2,000 JSON lines and 2,000 TensorBoard events)
   and gains 10 lines and 10 events between refreshes. Bytes are counted at the transport
   (a proxy around the local transport, and around SSH to the CI sshd when it is up), so the
   figure is what crossed, not what the reader believes it read. Proportional means: bytes
   read per refresh / bytes appended per refresh == 1.00, for 5 runs and for 50.
2. Time to render one chart of 100,000 points, against 10,000 (same size, 140x36 cells).

Run: ``python bench/bench_results.py`` (part of ``make bench``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from _util import figure  # noqa: E402

HISTORY = 2000
NEW_PER_REFRESH = 10
REFRESHES = 5


def _event(step: int, value: float) -> bytes:
    """One serialized ``Event`` with a simple_value scalar (the framing our reader decodes)."""
    from core.results.protowire import encode_record

    tag = b"train/loss"
    value_msg = b"\x0a" + bytes([len(tag)]) + tag + b"\x15" + struct.pack("<f", value)
    summary = b"\x0a" + bytes([len(value_msg)]) + value_msg
    varint = bytearray()
    n = step
    while True:
        byte = n & 0x7F
        n >>= 7
        varint.append(byte | (0x80 if n else 0))
        if not n:
            break
    event = (
        b"\x09"
        + struct.pack("<d", 1.7e9 + step)
        + b"\x10"
        + bytes(varint)
        + b"\x2a"
        + bytes([len(summary)])
        + summary
    )
    return encode_record(event)


def _append(job: Path, start: int, count: int) -> int:
    lines = "".join(
        json.dumps({"step": s, "loss": 1.0 / (s + 1), "lr": 3e-4}) + "\n"
        for s in range(start, start + count)
    ).encode()
    events = b"".join(_event(s, 1.0 / (s + 1)) for s in range(start, start + count))
    with (job / "metrics.jsonl").open("ab") as fh:
        fh.write(lines)
    with (job / "tb" / "events.out.tfevents.1.bench").open("ab") as fh:
        fh.write(events)
    return len(lines) + len(events)


async def _refreshes(root: Path, runs: int, transport_name: str) -> tuple[float, float, float]:
    """(bytes read per refresh, bytes appended per refresh, seconds per refresh)."""
    from results_helpers import Counting

    from core.results.locate import JobOutputs
    from core.results.watch import JobMetrics

    if transport_name == "ssh":
        from ci_services import sshd_service

        from core.transport.ssh import SSHTransport

        s = sshd_service()
        inner: object = SSHTransport(s.alias, ssh_config=s.ssh_config)
    else:
        from core.transport.local import LocalTransport

        inner = LocalTransport()
    transport = Counting(inner)  # type: ignore[arg-type]
    jobs = []
    for i in range(runs):
        job = root / f"run-{i}"
        (job / "tb").mkdir(parents=True)
        _append(job, 0, HISTORY)
        # rediscovery off in the timed loop: it lists the job dir (counted apart, below)
        jobs.append(JobMetrics(JobOutputs(transport, str(job)), rediscover_seconds=1e9))
    for m in jobs:
        await m.refresh()  # the history, read once
    read_before = transport.bytes_read
    appended = 0
    took = 0.0
    for r in range(REFRESHES):
        for i in range(runs):
            appended += _append(root / f"run-{i}", HISTORY + r * NEW_PER_REFRESH, NEW_PER_REFRESH)
        start = time.perf_counter()
        for m in jobs:
            await m.refresh()
        took += time.perf_counter() - start
    read = transport.bytes_read - read_before
    history = sum(f.stat().st_size for f in (root / "run-0").rglob("*") if f.is_file())
    figure(f"  one run's metric files at the end ({transport_name})", history, "B")
    for m in jobs:
        assert len(m.snapshot().series["loss"]) == HISTORY + REFRESHES * NEW_PER_REFRESH
    if transport_name == "ssh":
        await inner.close()  # type: ignore[attr-defined]
    return read / REFRESHES, appended / REFRESHES, took / REFRESHES


def bench_bytes_per_refresh() -> None:
    from ci_services import sshd_available

    targets = ["local"] + (["ssh"] if sshd_available()[0] else [])
    for target in targets:
        results = {}
        for runs in (5, 50):
            root = Path(tempfile.mkdtemp(prefix=f"nrt-bench-results-{runs}-"))
            try:
                results[runs] = asyncio.run(_refreshes(root, runs, target))
            finally:
                shutil.rmtree(root, ignore_errors=True)
        for runs, (read, appended, seconds) in results.items():
            figure(f"metrics refresh, {runs} runs ({target}): bytes read", read, "B")
            figure(
                f"metrics refresh, {runs} runs ({target}): read / appended", read / appended, "x"
            )
            figure(f"metrics refresh, {runs} runs ({target}): time", seconds, "s")
        ratio = results[50][0] / results[5][0]
        figure(f"bytes per refresh, 50 runs / 5 runs ({target})", ratio, "x", budget=11.0)


def bench_render() -> None:
    from nemorun_tui.widgets.plot import PlotSeries, render_plot

    times = {}
    for n in (10_000, 100_000):
        xs = [float(i) for i in range(n)]
        ys = [2.9 * 0.9999**i + 0.01 * ((i * 7919) % 13) for i in range(n)]
        series = [PlotSeries("loss", xs, ys)]
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            render_plot(series, 140, 36)
            runs.append(time.perf_counter() - start)
        times[n] = sorted(runs)[2]
        figure(f"render a {n:,}-point chart (140x36)", runs, "s", budget=0.5)
    figure("render 100,000 / 10,000 points", times[100_000] / times[10_000], "x")


if __name__ == "__main__":
    bench_bytes_per_refresh()
    bench_render()
