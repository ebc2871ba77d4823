"""The job-side wrapper (``backends/ray/entrypoint.py``) run as Ray runs it: ``python -c``.

No Ray needed: the wrapper is plain Python. Its stdout/stderr stand in for Ray's driver log.
"""

from __future__ import annotations

import base64
import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from backends.ray import submission


def wrapper_argv(spec: dict[str, object]) -> list[str]:
    return [sys.executable, "-c", submission._wrapper_source(), json.dumps(spec)]


def test_streams_are_copied_apart_and_the_exit_code_is_the_commands(tmp_path: Path) -> None:
    out, err = tmp_path / "logs" / "j.out", tmp_path / "logs" / "j.err"
    spec = {
        "argv": ["bash", "-c", 'echo "$WEIRD"; echo oops >&2; echo "$TOKEN"; exit 9'],
        "env": {"WEIRD": "$HOME `x` 'q'"},
        "name": "j",
        "out": str(out),
        "err": str(err),
        "job_dir": str(tmp_path / "job"),
        "files": {str(tmp_path / "job" / "task.json"): base64.b64encode(b"{}").decode()},
    }
    secrets = base64.b64encode(json.dumps({"TOKEN": "s$cret"}).encode()).decode()

    proc = subprocess.run(
        wrapper_argv(spec),
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", submission.SECRET_ENV: secrets},
        timeout=30,
    )

    assert proc.returncode == 9
    assert out.read_bytes() == b"$HOME `x` 'q'\ns$cret\n" == proc.stdout
    assert err.read_bytes() == b"oops\n" == proc.stderr  # the driver log still has both
    assert (tmp_path / "job" / "task.json").read_bytes() == b"{}"
    assert submission.SECRET_ENV.encode() not in out.read_bytes()


def test_a_missing_command_is_exit_127_with_a_message(tmp_path: Path) -> None:
    spec = {"argv": ["/no/such/program"], "name": "j", "err": str(tmp_path / "e"), "out": ""}
    proc = subprocess.run(wrapper_argv(spec), capture_output=True, timeout=30)
    assert proc.returncode == 127
    assert b"/no/such/program" in (tmp_path / "e").read_bytes()


def test_sigterm_reaches_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "got-term"
    script = f"trap 'echo term > {shlex.quote(str(marker))}; exit 0' TERM; echo up; sleep 10 & wait"
    spec = {"argv": ["bash", "-c", script], "name": "j", "out": str(tmp_path / "o")}
    proc = subprocess.Popen(wrapper_argv(spec), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "term\n"


def test_the_job_ends_with_its_command_not_with_what_it_left_behind(tmp_path: Path) -> None:
    """A background process holding stdout open must not keep the Ray job RUNNING."""
    spec = {"argv": ["bash", "-c", "sleep 10 & echo done"], "name": "j", "out": str(tmp_path / "o")}
    start = time.monotonic()
    proc = subprocess.run(wrapper_argv(spec), capture_output=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout == b"done\n"
    assert time.monotonic() - start < 8, "the wrapper waited for the orphan"


def test_a_launcher_package_missing_here_fails_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    spec = {
        "argv": ["bash", "-c", f"touch {shlex.quote(str(marker))}"],
        "name": "j",
        "out": str(tmp_path / "o"),
        "err": str(tmp_path / "e"),
        "require": {"module": "no_such_module_nrt_7f3a", "message": "torchrun needs X here"},
        # Never waited for: the check comes first (this dashboard does not exist).
        "after": ["some-dependency"],
        "dashboard": "http://127.0.0.1:1",
    }
    start = time.monotonic()
    proc = subprocess.run(wrapper_argv(spec), capture_output=True, timeout=30)
    assert proc.returncode == 127
    assert proc.stderr == b"nemorun: not run: torchrun needs X here\n"
    assert (tmp_path / "e").read_bytes() == proc.stderr and proc.stdout == b""
    assert not marker.exists(), "the command ran although its launcher's package is missing"
    assert time.monotonic() - start < 20


def test_a_package_on_the_jobs_own_pythonpath_counts(tmp_path: Path) -> None:
    """The check sees what the ranks will see: the job's env (here PYTHONPATH) and cwd."""
    lib = tmp_path / "lib" / "nrt_fake_launcher_pkg"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    spec = {
        "argv": ["bash", "-c", "echo started"],
        "env": {"PYTHONPATH": str(tmp_path / "lib")},
        "name": "j",
        "out": str(tmp_path / "o"),
        "require": {"module": "nrt_fake_launcher_pkg", "message": "missing"},
    }
    proc = subprocess.run(wrapper_argv(spec), capture_output=True, timeout=30)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"started\n", b"")
    spec["env"] = {}
    proc = subprocess.run(wrapper_argv(spec), capture_output=True, timeout=30)
    assert (proc.returncode, proc.stderr) == (127, b"nemorun: not run: missing\n")
