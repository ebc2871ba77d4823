"""Launch scripts shared by the self-launch tests (local and Slurm), and their bounds.

Every script written here is bounded even if the guard under test fails: its top level counts
its own imports in a file and exits before launching once the count passes ``IMPORT_CAP``, and
the tests run it under ``timeout`` and kill what is left afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

#: The launcher imports the script once (as __main__) and the job once: 2 when all is well.
IMPORT_CAP = 6

_HEADER = """
import os
import sys

import nemorun_tui as run

T_DIR = {t_dir!r}
HOME = {home!r}
with open(os.path.join(T_DIR, "imports"), "a") as _f:
    _f.write(os.environ.get("NEMORUN_TUI_DEPTH", "0") + "\\n")
with open(os.path.join(T_DIR, "imports")) as _f:
    if sum(1 for _ in _f) > {cap}:  # hard cap: the test stays bounded if the guard fails
        sys.exit(0)


def record_run(what):
    with open(os.path.join(T_DIR, "runs"), "a") as f:
        f.write(what + "\\n")
"""


def unguarded_script(tmp: Path, executor: str, title: str) -> Path:
    """README's shape: the task function and a top-level run.run() and exp.run(), no guard."""
    body = f"""
def train() -> None:
    record_run("train depth=" + os.environ.get("NEMORUN_TUI_DEPTH", "?"))
    print("trained")


EXECUTOR = {executor}
record = run.run(run.Partial(train), executor=EXECUTOR, title={title!r}, home=HOME)
print("launched", record.state.value, record.id)
with run.Experiment({title + "-exp"!r}, EXECUTOR, home=HOME) as exp:
    exp.add(run.Partial(train), name="again")
    exp.run()
    print("exp", exp.status(), repr(exp.logs("again")))
"""
    path = tmp / "unguarded.py"
    path.write_text(_HEADER.format(t_dir=str(tmp), home=str(tmp / "home"), cap=IMPORT_CAP) + body)
    return path


def nesting_script(tmp: Path, opt_in: str) -> Path:
    """A guarded script whose task launches itself again from its *run*, at every depth.

    ``opt_in``: "none" (no opt-in), "env" (the launcher sets the variable) or "api" (each
    job calls run.allow_nested_launch()).
    """
    api = "run.allow_nested_launch()" if opt_in == "api" else "pass"
    body = f"""
def nest() -> None:
    depth = int(os.environ["NEMORUN_TUI_DEPTH"])
    record_run(f"nest depth={{depth}}")
    {api}
    if depth > 8:
        return  # hard cap (never reached when the depth limit works)
    try:
        run.run(run.Partial(nest), title=f"nest-{{depth + 1}}", home=HOME)
    except Exception as exc:
        record_run(f"refused at depth={{depth}}: {{type(exc).__name__}}: {{exc}}")


if __name__ == "__main__":
    run.run(run.Partial(nest), title="nest-1", home=HOME)
"""
    path = tmp / "nesting.py"
    path.write_text(_HEADER.format(t_dir=str(tmp), home=str(tmp / "home"), cap=50) + body)
    return path


def run_bounded(
    script: Path, *, timeout: float = 90, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` under a hard timeout, then SIGKILL any process still using its folder."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("NEMORUN_TUI_")}
    full.update(env or {})
    try:
        return subprocess.run(
            ["timeout", "-s", "KILL", str(timeout), sys.executable, str(script)],
            capture_output=True,
            text=True,
            cwd=script.parent,
            env=full,
            check=False,
        )
    finally:
        kill_processes_under(script.parent)


def kill_processes_under(folder: Path) -> list[int]:
    """SIGKILL every process whose command line mentions ``folder`` (jobs left by a failure)."""
    killed = []
    needle = str(folder).encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(name), signal.SIGKILL)
                killed.append(int(name))
    return killed


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def experiment_count(home: Path) -> int:
    root = home / "experiments"
    if not root.is_dir():
        return 0
    return sum(1 for p in root.iterdir() if not p.name.startswith("."))
