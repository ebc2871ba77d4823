"""The launch window: a launcher killed between submitting a job and recording its handle.

The launcher is a real subprocess that SIGKILLs (or SIGSTOPs) itself at exactly that point
(``NEMORUN_TUI_TEST_CRASH_AT``, read only there). Afterwards either no job process ever ran
(its marker file never appears) or the store knows the job's handle, and ``cancel`` never
reports CANCELLED while a job process is alive.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from ci_services import slurm_available
from launch_scripts import kill_processes_under
from services import require_service

from core.engine import Engine, launch_window
from core.engine.states import JobState
from core.store import Store

pytestmark = pytest.mark.slow

LAUNCHER = """
import sys
import nemorun_tui as run

home, marker, executor, title = sys.argv[1:5]
job = run.Script(inline=f"touch {marker}; sleep 3; echo done")
run.run(job, eval(executor), title=title, detach=True, home=home)
print("launcher finished")
"""


def start_launcher(
    tmp: Path, point: str, executor: str = "run.LocalExecutor()"
) -> tuple[subprocess.Popen[str], Path, Path]:
    home, marker = tmp / "home", tmp / "ran-marker"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEMORUN_TUI_")}
    env[launch_window.CRASH_ENV] = point
    title = f"window{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(home), str(marker), executor, title],
        env=env,
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, home, marker


def job_processes(tmp: Path, launcher: int | None = None) -> list[int]:
    """Live processes of the job (their command line names the marker under ``tmp``)."""
    needle = str(tmp / "ran-marker").encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != launcher:
            try:
                if needle in Path(f"/proc/{name}/cmdline").read_bytes():
                    found.append(int(name))
            except OSError:
                continue
    return found


def only_experiment(store: Store) -> str:
    deadline = time.monotonic() + 30
    while not store.list():
        assert time.monotonic() < deadline, "the launcher never recorded the experiment"
        time.sleep(0.05)
    [summary] = store.list()
    return summary.id


def wait_stopped(proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1][0] != "T":
        assert time.monotonic() < deadline and proc.poll() is None, "launcher never stopped"
        time.sleep(0.02)


@pytest.mark.parametrize("then", ["monitor", "cancel"])
async def test_killed_launcher_leaves_no_untracked_local_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    proc, home, marker = start_launcher(tmp_path, "after-submit")
    try:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, err  # killed in the window itself
        store = Store(home)
        exp_id = only_experiment(store)
        assert store.load(exp_id).jobs[0].handle is None  # the store never heard of it
        await asyncio.sleep(3)  # long enough for the job to have started and marked
        assert not marker.exists(), "a job ran that the store does not know"
        assert job_processes(tmp_path) == []
        engine = Engine(store)
        if then == "monitor":
            monkeypatch.setattr(launch_window, "ADOPT_AFTER_SECONDS", 0.0)
            await engine.refresh([exp_id])
        else:
            assert await engine.cancel(exp_id) == ["script"]
        job = store.load(exp_id).jobs[0]
        assert job.handle is not None  # now the store knows it, and its true outcome:
        assert job.state is JobState.FAILED and "not run" in (job.reason or ""), job.reason
        assert not marker.exists()
    finally:
        proc.kill()
        kill_processes_under(tmp_path)


async def test_cancel_while_the_launcher_sits_in_the_window(tmp_path: Path) -> None:
    """The launcher is alive but stopped between submit and record: cancel finds the held
    job by its run tag and stops it; CANCELLED is reported only with no job process alive."""
    proc, home, marker = start_launcher(tmp_path, "after-submit:stop")
    try:
        wait_stopped(proc)
        store = Store(home)
        exp_id = only_experiment(store)
        assert store.load(exp_id).jobs[0].handle is None
        await asyncio.sleep(1)
        assert not marker.exists()  # held: it waits for the launcher to record it
        engine = Engine(store)
        assert await engine.cancel(exp_id) == ["script"]
        job = store.load(exp_id).jobs[0]
        assert job.state is JobState.CANCELLED and job.handle is not None, job
        assert job_processes(tmp_path, launcher=proc.pid) == [] and not marker.exists()
        os.kill(proc.pid, signal.SIGCONT)  # the launcher records the handle, sees the cancel
        out, err = proc.communicate(timeout=60)
        assert "launcher finished" in out
        assert proc.returncode == 0, err
        await asyncio.sleep(1)
        assert not marker.exists()
        assert store.load(exp_id).jobs[0].state is JobState.CANCELLED
    finally:
        proc.kill()
        kill_processes_under(tmp_path)


@pytest.mark.slurm
async def test_killed_launcher_leaves_no_untracked_slurm_job(tmp_path: Path) -> None:
    ok, why = slurm_available()
    require_service(ok, why)
    jobs = tmp_path / "cluster-jobs"
    executor = f"run.SlurmExecutor(tunnel=run.LocalTunnel(job_dir={str(jobs)!r}), poll_rate=5.0)"
    proc, home, marker = start_launcher(tmp_path, "after-submit", executor)
    try:
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == -signal.SIGKILL, err
        store = Store(home)
        exp_id = only_experiment(store)
        assert store.load(exp_id).jobs[0].handle is None
        await asyncio.sleep(4)
        assert not marker.exists(), "a Slurm job ran that the store does not know"
        engine = Engine(store)
        assert await engine.cancel(exp_id) == ["script"]
        job = store.load(exp_id).jobs[0]
        assert job.handle is not None, job  # found by its run tag
        tag = f"nrt-{exp_id}-script"
        for _ in range(60):
            rows = subprocess.run(
                ["squeue", "-h", "-n", tag, "-o", "%T"], capture_output=True, text=True
            ).stdout.split()
            if not rows:
                break
            assert "RUNNING" not in rows
            await asyncio.sleep(0.5)
        assert not marker.exists()
        assert job.state is JobState.CANCELLED, job
    finally:
        proc.kill()
        subprocess.run(["scancel", "-n", f"nrt-{exp_id}-script"], check=False)
