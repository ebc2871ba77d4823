"""Log pane benchmarks.

1. A 1 GB log: time from opening until its tail is shown, and peak memory (ru_maxrss) of a
   fresh process — for the log engine alone and for the whole app (headless) opening it.
2. Following a file that grows at 20 MB/s, in the real app in a pseudo-terminal: how far
   behind the screen is (lag = when a line's text reached the terminal - when it was
   written; every line carries its write time), and bytes written to the terminal per second.
3. The same follow, headless in-process: frames per second and the longest stall of the
   app's event loop (a heartbeat timer that should fire every 50 ms).

Run: ``python bench/bench_logs.py`` (part of ``make bench``).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _util import BIN, CACHE, figure  # noqa: E402
from bench_app import PtyApp, app_env  # noqa: E402

GB = 1024**3
RATE = 20 * 1024 * 1024  # bytes per second for the follow test
LINE = 100  # bytes per line written by the follower test


def big_log(size: int = GB) -> Path:
    """A ~1 GB log of numbered ~100-byte lines (built once, cached)."""
    path = CACHE / "big-1g.log"
    if path.exists() and path.stat().st_size >= size:
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"writing {path} ({size / GB:.1f} GB, once)…", flush=True)
    block_lines = 10_000
    with path.open("wb") as f:
        n = 0
        while f.tell() < size:
            chunk = "".join(
                f"{n + i:010d} step {n + i} | loss {((n + i) % 997) / 997:.4f} | "
                f"lr 3.0e-04 | tokens/s 40960 | padding........\n"
                for i in range(block_lines)
            )
            f.write(chunk.encode())
            n += block_lines
    return path


_READER_PROBE = r"""
import json, resource, sys, time
sys.path.insert(0, ROOT)
from nemorun_tui.logview.reader import LogReader
t0 = time.perf_counter()
reader = LogReader(PATH, lambda: None)
reader.request(None, 45)
reader.start()
while not reader.window.rows:
    time.sleep(0.0005)
tail = time.perf_counter() - t0
last = reader.window.rows[-1][1]
while not reader.window.complete:
    time.sleep(0.01)
full = time.perf_counter() - t0
lines = reader.window.line_count
reader.close(); reader.join()
print(json.dumps({"tail": tail, "full": full, "lines": lines, "last": last,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_APP_PROBE = r"""
import asyncio, json, os, resource, sys, time
sys.path.insert(0, ROOT)
sys.path.insert(0, ROOT + "/tests/app")
from pathlib import Path
from core.engine import Engine
from core.settings import Settings, UISettings
from core.store import Store
from nemorun_tui.app import NemorunApp
from nemorun_tui.messages import OpenLogs

async def main():
    app = NemorunApp(Engine(Store(HOME), Settings(ui=UISettings(bell=False))), monitor=False)
    async with app.run_test(size=(160, 45)) as pilot:
        while not app.runs_table.loaded:
            await asyncio.sleep(0.005)
        await app.panes()
        await pilot.pause(0.2)
        t0 = time.perf_counter()
        app.post_message(OpenLogs(EXP_ID))
        while True:
            view = getattr(app.logs_pane, "view", None)
            if view is not None and LAST in view.visible_text():
                break
            await asyncio.sleep(0.001)
        tail = time.perf_counter() - t0
        while not view.window.complete:
            await asyncio.sleep(0.01)
        full = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tail": tail, "full": full, "rss_mb": rss}))

asyncio.run(main())
"""


def _run_probe(code: str, **values: str) -> dict[str, float]:
    prelude = "".join(f"{k} = {v!r}\n" for k, v in values.items())
    out = subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"probe failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _store_with_log(name: str, log: Path) -> tuple[Path, str]:
    """A store with one finished local job whose stdout is ``log`` (a symlink)."""
    import shutil

    from core.engine.protocol import Handle
    from core.engine.states import JobState
    from core.store import ExperimentRecord, JobRecord, Store

    home = CACHE / f"store-{name}"
    shutil.rmtree(home, ignore_errors=True)
    store = Store(home)
    exp_id = f"{name}-log"
    now = time.time()
    store.create(
        ExperimentRecord(
            id=exp_id,
            title=name,
            created_at=now,
            jobs=[
                JobRecord(
                    name="train",
                    kind="script",
                    backend="local",
                    handle=Handle("local", "local", str(store.job_dir(exp_id, "train"))),
                    state=JobState.SUCCEEDED,
                    source="bench",
                    observed_at=now,
                    exit_code=0,
                    submitted_at=now,
                    ended_at=now,
                )
            ],
        ),
        {"train": {"executor.json": '{"backend": "local"}'}},
    )
    target = store.job_dir(exp_id, "train") / "logs" / "stdout.log"
    target.unlink(missing_ok=True)
    target.symlink_to(log)
    return home, exp_id


_WRITER = r"""
import os, sys, time
path, rate, seconds, line = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
tick = 0.01
per_tick = rate * tick
start = time.perf_counter()
written = 0
n = 0
while time.perf_counter() - start < seconds:
    lines = []
    budget = per_tick
    now = time.time()
    while budget > 0:
        head = f"ts={now:.6f} n={n} "
        lines.append(head + "x" * (line - len(head) - 1) + "\n")
        budget -= line
        n += 1
    data = "".join(lines).encode()
    os.write(fd, data)
    written += len(data)
    target = start + written / rate
    delay = target - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
print(written / (time.perf_counter() - start))
"""

_TS = re.compile(rb"ts=(\d+\.\d+)")


def follow_in_pty(seconds: float = 10.0) -> dict[str, float]:
    """Follow a 20 MB/s log in the real app; lag and terminal bytes/s from the pty."""
    log = CACHE / "follow.log"
    log.write_bytes(b"")
    home, _ = _store_with_log("follow", log)
    app = PtyApp([str(BIN / "nemorun-tui")], app_env(home))
    writer = None
    try:
        app.wait_for(b"follow-log")
        app.pump(0.5)
        app.send("l")
        app.wait_for(b"waiting for output", timeout=10)
        app.pump(0.5)
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(log), str(RATE), str(seconds + 1), str(LINE)],
            stdout=subprocess.PIPE,
            text=True,
        )
        app.pump(1.0)  # warm-up
        start = time.perf_counter()
        offset = len(app.output)
        lags: list[float] = []
        stale: list[float] = []  # age of the newest line on screen just before each update
        newest_shown: float | None = None
        while time.perf_counter() - start < seconds:
            before = len(app.output)
            app.pump(0.02)
            fresh = bytes(app.output[before:])
            stamps = [float(m) for m in _TS.findall(fresh)]
            if stamps:
                now = time.time()
                if newest_shown is not None:
                    stale.append(now - newest_shown)
                newest_shown = max(stamps)
                lags.append(now - newest_shown)
        elapsed = time.perf_counter() - start
        following_bytes = len(app.output) - offset
        rate = float(writer.communicate()[0].strip() or 0)
        # Idle again once the writer stops: the screen should go quiet.
        app.pump(1.0)
        quiet_start = time.perf_counter()
        app.pump(3.0)
        quiet = app.bytes_between(quiet_start, time.perf_counter()) / 3.0
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
        app.close()
    lags.sort()
    stale.sort()
    return {
        "stale_p95": stale[int(len(stale) * 0.95) - 1] if stale else float("nan"),
        "stale_max": stale[-1] if stale else float("nan"),
        "write_rate_mb": rate / 1024 / 1024,
        "lag_p50": statistics.median(lags) if lags else float("nan"),
        "lag_p95": lags[int(len(lags) * 0.95) - 1] if lags else float("nan"),
        "lag_max": lags[-1] if lags else float("nan"),
        "bytes_per_s": following_bytes / elapsed,
        "quiet_bytes_per_s": quiet,
        "frames_seen": len(lags) / elapsed,
    }


_STALL_PROBE = r"""
import asyncio, json, subprocess, sys, time
sys.path.insert(0, ROOT)
from pathlib import Path
from core.engine import Engine
from core.settings import Settings, UISettings
from core.store import Store
from nemorun_tui.app import NemorunApp
from nemorun_tui.messages import OpenLogs

async def main():
    app = NemorunApp(Engine(Store(HOME), Settings(ui=UISettings(bell=False))), monitor=False)
    async with app.run_test(size=(160, 45)) as pilot:
        while not app.runs_table.loaded:
            await asyncio.sleep(0.005)
        await app.panes()
        app.post_message(OpenLogs(EXP_ID))
        while getattr(app.logs_pane, "view", None) is None:
            await asyncio.sleep(0.01)
        view = app.logs_pane.view
        beats = []
        app.set_interval(0.05, lambda: beats.append(time.perf_counter()))
        writer = subprocess.Popen([sys.executable, "-c", WRITER, LOG, RATE, SECONDS, LINE])
        await asyncio.sleep(float(SECONDS))
        writer.wait()
        await asyncio.sleep(0.5)
        gaps = [b - a for a, b in zip(beats, beats[1:])]
        print(json.dumps({"max_gap": max(gaps), "frames": view.redraws,
                          "lines": view.window.line_count}))

asyncio.run(main())
"""


def follow_headless(seconds: float = 8.0) -> dict[str, float]:
    """Frames drawn and the longest event-loop stall while following at 20 MB/s."""
    log = CACHE / "follow-headless.log"
    log.write_bytes(b"")
    home, exp_id = _store_with_log("headless", log)
    return _run_probe(
        _STALL_PROBE,
        ROOT=str(HERE.parent),
        HOME=str(home),
        EXP_ID=exp_id,
        WRITER=_WRITER,
        LOG=str(log),
        RATE=str(RATE),
        SECONDS=str(seconds),
        LINE=str(LINE),
    )


def main() -> int:
    path = big_log()
    size = path.stat().st_size
    with path.open("rb") as f:
        f.seek(size - 200)
        last_line = f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1].decode()
    reader = [_run_probe(_READER_PROBE, ROOT=str(HERE.parent), PATH=str(path)) for _ in range(3)]
    assert all(r["last"] == last_line for r in reader), "the tail shown is not the file's tail"
    figure(
        f"1 GB log, engine alone: open -> tail shown ({size / GB:.2f} GB)",
        [r["tail"] for r in reader],
        "s",
        budget=0.3,
    )
    figure("1 GB log, engine alone: whole file indexed", [r["full"] for r in reader], "s")
    figure("1 GB log, engine alone: peak RSS", [r["rss_mb"] for r in reader], "MB", budget=150)
    home, exp_id = _store_with_log("big", path)
    in_app = [
        _run_probe(_APP_PROBE, ROOT=str(HERE.parent), HOME=str(home), EXP_ID=exp_id, LAST=last_line)
        for _ in range(3)
    ]
    figure(
        "1 GB log, in the app: 'open logs' -> tail on screen",
        [r["tail"] for r in in_app],
        "s",
        budget=0.3,
    )
    figure(
        "1 GB log, in the app: peak RSS of the whole app",
        [r["rss_mb"] for r in in_app],
        "MB",
        budget=150,
    )

    follow = follow_in_pty()
    figure("follow: writer rate achieved", follow["write_rate_mb"], "MB/s")
    figure("follow 20 MB/s: lag on the terminal, median", follow["lag_p50"], "s", budget=0.25)
    figure("follow 20 MB/s: lag on the terminal, p95", follow["lag_p95"], "s", budget=0.25)
    figure("follow 20 MB/s: lag on the terminal, max", follow["lag_max"], "s")
    figure(
        "follow 20 MB/s: newest line's age just before an update, p95",
        follow["stale_p95"],
        "s",
        budget=0.25,
    )
    figure("follow 20 MB/s: newest line's age just before an update, max", follow["stale_max"], "s")
    figure("follow 20 MB/s: screen updates seen per second", follow["frames_seen"], "/s")
    figure("follow 20 MB/s: terminal bytes/s", follow["bytes_per_s"], "B/s")
    figure("after the writer stops: terminal bytes/s", follow["quiet_bytes_per_s"], "B/s", budget=0)
    stall = follow_headless()
    figure(
        "follow 20 MB/s headless: longest event-loop stall",
        stall["max_gap"] - 0.05,
        "s",
        budget=0.1,
    )
    figure("follow 20 MB/s headless: frames drawn (8 s)", stall["frames"], "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
