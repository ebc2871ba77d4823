"""Terminal safety, end to end: hostile strings never reach a real pseudo-terminal.

A store holds one experiment whose title, tags, overrides, job reason, events and log
carry every escape family of ``hostile_strings``. The real ``nemorun-tui`` runs in a pty
(``ls``, ``status``, ``logs``, a waiting ``run``, and the app itself, driven by keys), and
the test reads the bytes the terminal received: no forbidden sequence, no ``PWNED`` inside
an escape sequence, while the visible markers do arrive. Piped output and ``--raw`` keep
the bytes as they were.

The app's own output is full of legitimate CSI sequences (cursor moves, SGR, modes), so the
payloads use parameters Textual never sends (``ESC[77;6n``, ``ESC[?1049;77h``) and the
checks look for those exact bytes.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from hostile_strings import (
    ALL_PAYLOADS,
    FAMILIES,
    PWNED_IN_SEQUENCE,
    RAW_C1_BYTES,
    SGR,
    SGR_RESET,
    forbidden_found,
)

from core.engine.protocol import Handle
from core.engine.states import JobState
from core.store import ExperimentRecord, JobRecord, Store

BIN = Path(sys.executable).parent / "nemorun-tui"
ROWS, COLS = 45, 160
EXP_ID = "hostile-20250601-000000-abcd"
TITLE = "HOSTILE-TITLE " + ALL_PAYLOADS
REASON = "REASON-MARK " + ALL_PAYLOADS
LOG_END = "LOGMARK-END"

pytestmark = pytest.mark.skipif(not BIN.exists(), reason="nemorun-tui is not installed")


def _log_bytes() -> bytes:
    lines = [f"LOG {f.name}: {SGR}red{SGR_RESET} [{f.payload}] ok\n" for f in FAMILIES]
    return "".join(lines).encode() + RAW_C1_BYTES + b"\n" + f"{LOG_END}\n".encode()


def build_hostile_store(home: Path) -> Store:
    """One finished experiment whose every stored string and log line is hostile."""
    store = Store(home)
    now = time.time() - 60
    job_dir = store.job_dir(EXP_ID, "train")
    record = ExperimentRecord(
        id=EXP_ID,
        title=TITLE,
        created_at=now,
        jobs=[
            JobRecord(
                name="train",
                kind="script",
                backend="local",
                handle=Handle("local", "local", str(job_dir)),
                state=JobState.FAILED,
                source="test",
                observed_at=now,
                exit_code=1,
                reason=REASON,
                submitted_at=now,
                ended_at=now + 1,
            )
        ],
        tags=[f"tag-{f.name}{f.payload}" for f in FAMILIES[:6]],
        overrides=[f"x.{f.name.replace('-', '_')}={f.payload}" for f in FAMILIES[6:12]],
    )
    store.create(record, {"train": {"executor.json": json.dumps({"backend": "local"})}})
    (job_dir / "logs").mkdir(parents=True, exist_ok=True)
    (job_dir / "logs" / "stdout.log").write_bytes(_log_bytes())
    # What the local supervisor leaves when a job ended (its reason is hostile too).
    result = {"schema": 1, "state": "FAILED", "exit_code": 1, "reason": REASON}
    result.update(started_at=now, ended_at=now + 1, cancel_requested=False)
    (job_dir / "result.json").write_text(json.dumps(result))
    store.append_event(
        EXP_ID,
        {
            "t": now + 1,
            "kind": "state",
            "job": "train",
            "from": "RUNNING",
            "to": "FAILED",
            "source": "test",
            "reason": REASON,
            "exit_code": 1,
            "observed_at": now + 1,
        },
    )
    return store


@pytest.fixture
def hostile_home(tmp_path: Path) -> Path:
    home = tmp_path / "store"
    build_hostile_store(home)
    return home


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "NEMORUN_TUI_HOME": str(home),
            "NEMORUN_TUI_CONFIG": str(home / "no-config.toml"),
            "TERM": "xterm-256color",
            "COLORTERM": "truecolor",
            "TEXTUAL_ANIMATIONS": "none",
            "TZ": "UTC",
        }
    )
    env.pop("TEXTUAL", None)
    return env


class Pty:
    """A command in a pseudo-terminal; every byte it writes is kept in ``output``."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # child: exec at once (nothing else runs in the forked test process)
            try:
                os.chdir(cwd)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.output = bytearray()
        self.returncode: int | None = None

    def pump(self, seconds: float) -> bool:
        """Read for ``seconds``; False once the other side closed."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.05))
            if not ready:
                continue
            try:
                data = os.read(self.fd, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                return False
            if not data:
                return False
            self.output += data
            if b"\x1b[6n" in data:  # Textual asks where the cursor is; a terminal answers
                os.write(self.fd, f"\x1b[{ROWS};{COLS}R".encode())
        return True

    def wait_for(self, needle: bytes, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            if time.monotonic() > deadline or not self.pump(0.05):
                if needle in self.output:
                    return
                tail = bytes(self.output[-600:])
                raise AssertionError(f"{needle!r} never arrived; last output: {tail!r}")

    def send(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def finish(self, timeout: float = 30.0) -> bytes:
        """Read until the command exits (killed after ``timeout``); returns all output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pump(0.1):
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pump(0.2)
                self.returncode = os.waitstatus_to_exitcode(status)
                break
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if not pid:
                    os.kill(self.pid, signal.SIGKILL)
                    pid, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                pass
        os.close(self.fd)
        return bytes(self.output)


def _cli_in_pty(home: Path, *args: str) -> tuple[bytes, int | None]:
    term = Pty([str(BIN), *args], _env(home), home.parent)
    out = term.finish()
    return out, term.returncode


def _assert_neutralised(out: bytes, surface: str) -> None:
    assert forbidden_found(out) == [], f"{surface}: escape families reached the terminal"
    match = PWNED_IN_SEQUENCE.search(out)
    assert match is None, f"{surface}: PWNED inside a sequence: {match and match.group()!r}"
    # C1 controls, as UTF-8 code points or as raw bytes outside a character.
    text = out.decode("utf-8", "surrogateescape")
    c1 = [c for c in text if 0x80 <= ord(c) <= 0x9F or 0xDC80 <= ord(c) <= 0xDC9F]
    assert not c1, f"{surface}: C1 controls arrived: {c1!r}"
    assert "\u202e" not in text, surface


# -- CLI ---------------------------------------------------------------------------------
def test_cli_ls_and_status_on_a_terminal_show_controls_visibly(hostile_home: Path) -> None:
    for attempt in ("scan", "cached"):  # the second ls is served from the index's rendering
        out, code = _cli_in_pty(hostile_home, "ls")
        assert code == 0, out
        _assert_neutralised(out, f"ls ({attempt})")
        rows = [line for line in out.split(b"\r\n") if line]
        assert len(rows) == 2, f"ls ({attempt}): a title split the table: {rows!r}"
        assert b"HOSTILE-TITLE <c0-controls:\\x00\\x01" in rows[1]
        assert b"\\x1b]0;PWNED title\\x07" in rows[1]  # shown, as text

    out, code = _cli_in_pty(hostile_home, "status", EXP_ID, "--no-refresh")
    assert code == 1, out  # the job failed
    _assert_neutralised(out, "status")
    lines = [line for line in out.split(b"\r\n") if line]
    # The header, the tags line (hostile tags, each escaped) and the job.
    assert len(lines) == 3, f"status: a title, tag or reason split a line: {lines!r}"
    assert lines[1].startswith(b"  tags: tag-c0-controls\\x00")
    assert b"REASON-MARK <c0-controls:\\x00" in lines[2]


def test_cli_logs_on_a_terminal_keep_colours_only(hostile_home: Path) -> None:
    out, code = _cli_in_pty(hostile_home, "logs", EXP_ID)
    assert code == 0, out
    _assert_neutralised(out, "logs")
    assert SGR.encode() in out and SGR_RESET.encode() in out  # colours are wanted
    for family in FAMILIES:
        assert f"LOG {family.name}: {SGR}red{SGR_RESET} [{family.visible}] ok".encode() in out
    assert b"raw!" in out and LOG_END.encode() in out


def test_cli_logs_piped_or_raw_pass_the_bytes_through(hostile_home: Path) -> None:
    piped = subprocess.run(
        [str(BIN), "logs", EXP_ID], env=_env(hostile_home), capture_output=True, timeout=60
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == _log_bytes()
    out, code = _cli_in_pty(hostile_home, "logs", EXP_ID, "--raw")
    assert code == 0
    # The pty's line discipline turns \n into \r\n; every other byte arrives as written.
    assert out == _log_bytes().replace(b"\n", b"\r\n")
    assert forbidden_found(out)  # the check above really detects the families


def test_cli_waiting_run_streams_sanitized_output_to_a_terminal(
    hostile_home: Path, tmp_path: Path
) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(_log_bytes())
    script = f"cat {payload}"
    out, code = _cli_in_pty(hostile_home, "run", "--script", script, "--name", "streamer")
    assert code == 0, out
    _assert_neutralised(out, "run (waiting)")
    assert LOG_END.encode() in out and SGR.encode() in out
    out, code = _cli_in_pty(hostile_home, "run", "--script", script, "--name", "raw", "--raw")
    assert code == 0, out
    assert _log_bytes().replace(b"\n", b"\r\n") in out


# -- the app -------------------------------------------------------------------------------
def test_app_in_a_pty_never_sends_hostile_sequences(hostile_home: Path) -> None:
    term = Pty([str(BIN)], _env(hostile_home), hostile_home.parent)
    try:
        term.wait_for(b"HOSTILE-TITLE")  # Runs, with the jobs panel (the reason)
        term.wait_for(b"REASON-MARK")
        term.pump(0.5)
        runs_end = len(term.output)
        term.send(b"l")  # Logs of the highlighted run
        term.wait_for(LOG_END.encode())
        term.pump(0.5)
        logs_end = len(term.output)
        term.send(b"1")
        term.pump(0.5)
        term.send(b"\r")  # Detail
        term.wait_for(b"Event timeline")
        term.pump(1.0)
        detail_end = len(term.output)
        term.send(b"\x10")  # ctrl+p: the palette lists runs by title
        term.wait_for(b"Open run")
        term.pump(0.5)
        term.send(b"\x1b")
        term.pump(0.5)
        term.send(b"q")
    finally:
        out = term.finish(timeout=20)
    surfaces = {
        "Runs": out[:runs_end],
        "Logs": out[runs_end:logs_end],
        "Detail": out[logs_end:detail_end],
        "palette": out[detail_end:],
    }
    for surface, data in surfaces.items():
        assert forbidden_found(data) == [], surface
        assert PWNED_IN_SEQUENCE.search(data) is None, surface
        for code_point in ("\x9b", "\x9d", "\x90", "\x9c", "\u202e"):
            assert code_point.encode() not in data, (surface, code_point)
    # What must be visible is: the title's controls as text, the log's text and colour.
    assert b"HOSTILE-TITLE <c0-controls:\\x00\\x01" in out
    assert b"LOG csi-device-status-report:" in surfaces["Logs"]
    assert b"REASON-MARK <c0-controls:\\x00" in surfaces["Detail"]
