"""App benchmarks, measured on the real program in a pseudo-terminal.

* Cold start to first frame with 10,000 experiments: spawn ``nemorun-tui`` in a pty and
  time until the newest experiment's id has been written to the terminal (the first frame
  with rows), and until the first byte at all.
* Bytes written to the terminal per second while idle (goal: 0).

Run: ``python bench/bench_app.py`` (part of ``make bench``). The 10k store is built once
under ``$NRT_BENCH_CACHE`` (default /tmp/nemorun-tui-bench) and reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import BIN, CACHE, ROOT, figure

N_EXPERIMENTS = 10_000
COLS, ROWS = 160, 45


class PtyApp:
    """``nemorun-tui`` running in a pseudo-terminal; everything it writes is recorded."""

    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self.started = time.perf_counter()
        pid, fd = pty.fork()
        if pid == 0:  # child
            os.chdir(ROOT)
            os.execvpe(argv[0], list(argv), env)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.output = bytearray()
        self.chunks: list[tuple[float, int]] = []  # (time, bytes) of each read
        self.first_byte_at: float | None = None

    def pump(self, seconds: float) -> None:
        """Read output for ``seconds`` (answering the terminal queries Textual sends)."""
        deadline = time.perf_counter() + seconds
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.05))
            if not ready:
                continue
            try:
                data = os.read(self.fd, 1 << 16)
            except OSError:
                return
            now = time.perf_counter()
            if self.first_byte_at is None:
                self.first_byte_at = now
            self.output += data
            self.chunks.append((now, len(data)))
            self._answer_queries(data)

    def _answer_queries(self, data: bytes) -> None:
        # Textual asks for the cursor position / device attributes at start; a terminal answers.
        if b"\x1b[6n" in data:
            os.write(self.fd, f"\x1b[{ROWS};{COLS}R".encode())

    def wait_for(self, needle: bytes, timeout: float = 20.0) -> float:
        """Seconds since spawn until ``needle`` appeared in the output."""
        deadline = time.perf_counter() + timeout
        while needle not in self.output:
            if time.perf_counter() > deadline:
                tail = bytes(self.output[-400:])
                raise SystemExit(f"timed out waiting for {needle!r}; last output: {tail!r}")
            self.pump(0.01)
        return time.perf_counter() - self.started

    def send(self, keys: str | bytes) -> None:
        """Type keys into the app."""
        os.write(self.fd, keys.encode() if isinstance(keys, str) else keys)

    def bytes_between(self, start: float, end: float) -> int:
        """Bytes written to the terminal in [start, end)."""
        return sum(n for t, n in self.chunks if start <= t < end)

    def close(self) -> None:
        """Quit (q), then make sure the process is gone."""
        try:
            self.send("q")
            self.pump(1.0)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            os.waitpid(self.pid, 0)
            os.close(self.fd)


def app_env(home: Path) -> dict[str, str]:
    """Environment for a benchmark run: its own store, no user config, a real TERM."""
    env = dict(os.environ)
    env.update(
        {
            "NEMORUN_TUI_HOME": str(home),
            "NEMORUN_TUI_CONFIG": str(home / "no-config.toml"),
            "TERM": "xterm-256color",
            "COLORTERM": "truecolor",
            "TEXTUAL_ANIMATIONS": "none",
        }
    )
    env.pop("TEXTUAL", None)
    return env


def build_big_store(n: int = N_EXPERIMENTS) -> tuple[Path, str]:
    """A store with ``n`` finished experiments (built once, then reused); returns newest id."""
    from core.engine.protocol import Handle
    from core.engine.states import JobState
    from core.store import ExperimentRecord, JobRecord, Store

    home = CACHE / f"store-{n}"
    newest = f"bench-{n - 1:06d}"
    marker = home / ".complete"
    if marker.exists():
        return home, newest
    import shutil

    shutil.rmtree(home, ignore_errors=True)
    store = Store(home)
    states = [JobState.SUCCEEDED] * 8 + [JobState.FAILED, JobState.CANCELLED]
    t0 = time.time() - n * 60
    print(f"building a store of {n} experiments in {home} (once)…", flush=True)
    for i in range(n):
        state = states[i % len(states)]
        start = t0 + i * 60
        record = ExperimentRecord(
            id=f"bench-{i:06d}",
            title=f"sweep-{i % 37}",
            created_at=start,
            jobs=[
                JobRecord(
                    name="train",
                    kind="partial",
                    backend="local",
                    profile="local",
                    handle=Handle("local", "local", f"/nonexistent/{i}"),
                    state=state,
                    source="bench",
                    observed_at=start + 30,
                    exit_code=0 if state is JobState.SUCCEEDED else 1,
                    submitted_at=start + 1,
                    ended_at=start + 30,
                )
            ],
            parent=f"bench-{i - 1:06d}" if i % 5 == 0 and i else None,
            tags=["bench"] if i % 3 == 0 else [],
        )
        store.create(record, {"train": {"executor.json": '{"backend": "local"}'}})
    marker.write_text("ok\n")
    return home, newest


def cold_start(home: Path, newest: str, runs: int = 5) -> tuple[list[float], list[float]]:
    """(first byte, first frame with the newest experiment) times, one fresh process each."""
    first_bytes, first_rows = [], []
    for _ in range(runs):
        app = PtyApp([str(BIN / "nemorun-tui")], app_env(home))
        try:
            first_rows.append(app.wait_for(newest.encode()))
            assert app.first_byte_at is not None
            first_bytes.append(app.first_byte_at - app.started)
        finally:
            app.close()
    return first_bytes, first_rows


def idle_bytes(home: Path, settle: float = 3.0, window: float = 10.0) -> float:
    """Bytes/s the app writes while nothing changes (after it has settled)."""
    app = PtyApp([str(BIN / "nemorun-tui")], app_env(home))
    try:
        app.pump(settle)
        start = time.perf_counter()
        app.pump(window)
        return app.bytes_between(start, time.perf_counter()) / window
    finally:
        app.close()


def main() -> int:
    home, newest = build_big_store()
    first_bytes, first_rows = cold_start(home, newest)
    figure("cold start: first byte on the terminal (10k experiments)", first_bytes, "s")
    figure("cold start: first frame with rows (10k experiments)", first_rows, "s", budget=0.6)
    figure("terminal bytes/s while idle (10k experiments)", idle_bytes(home), "B/s", budget=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
