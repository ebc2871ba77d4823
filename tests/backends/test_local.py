"""Local-backend behaviour beyond the shared contract: detachment, restarts, files, signals.

The contract suite (tests/contract) covers what every backend does; these tests cover what
only the local backend promises: jobs outlive the launcher, state is read back exactly by a
fresh process, secrets never touch the disk, pids are never trusted alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from backends.local import LocalBackend
from backends.local import supervisor as sv
from core.engine.executors import LocalExecutor
from core.engine.protocol import Backend, BackendError, Handle, JobSpec
from core.engine.registry import get_backend
from core.engine.states import JobState, StatusReport

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 20.0

MakeSpec = Callable[..., JobSpec]


@pytest.fixture
async def backend() -> AsyncIterator[LocalBackend]:
    b = LocalBackend.from_profile(LocalExecutor(cancel_grace_seconds=1.0))
    yield b
    await b.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
async def make_spec(
    tmp_path: Path, workdir: Path, backend: LocalBackend
) -> AsyncIterator[MakeSpec]:
    """JobSpecs with one job dir each; anything still running at teardown is cancelled."""
    made: list[JobSpec] = []

    def make(
        argv: list[str],
        name: str = "job",
        *,
        env: dict[str, str] | None = None,
        secret_env: dict[str, str] | None = None,
        dependencies: list[Handle] | None = None,
        grace: float = 1.0,
    ) -> JobSpec:
        spec = JobSpec(
            experiment_id="exp-1",
            job_name=name,
            run_tag=f"exp-1-{name}-{len(made)}",
            argv=argv,
            executor=LocalExecutor(cancel_grace_seconds=grace),
            job_dir=str(tmp_path / "store" / f"{len(made):03d}-{name}"),
            workdir=str(workdir),
            env=env or {},
            secret_env=secret_env or {},
            dependencies=dependencies or [],
        )
        made.append(spec)
        return spec

    yield make
    handles = [Handle("local", "local", s.job_dir) for s in made if Path(s.job_dir).exists()]
    for handle, report in (await backend.poll(handles)).items():
        if report.state in (JobState.RUNNING, JobState.PENDING, JobState.SUBMITTED):
            await backend.cancel(handle)


async def wait_terminal(backend: LocalBackend, handle: Handle) -> StatusReport:
    deadline = time.monotonic() + TIMEOUT
    while True:
        report = (await backend.poll([handle]))[handle]
        if report.state.is_terminal:
            return report
        assert time.monotonic() < deadline, f"{handle} still {report} after {TIMEOUT} s"
        await asyncio.sleep(0.02)


async def wait_state(backend: LocalBackend, handle: Handle, state: JobState) -> StatusReport:
    deadline = time.monotonic() + TIMEOUT
    while True:
        report = (await backend.poll([handle]))[handle]
        if report.state is state:
            return report
        assert not report.state.is_terminal, f"{handle} ended {report} before {state}"
        assert time.monotonic() < deadline, f"{handle} still {report} after {TIMEOUT} s"
        await asyncio.sleep(0.02)


async def output(backend: LocalBackend, handle: Handle, stream: str = "stdout") -> bytes:
    return b"".join([c async for c in backend.logs(handle, stream=stream)])  # type: ignore[arg-type]


def proc_alive(pid: int) -> bool:
    """Alive and not a zombie (this machine's init may never reap orphans)."""
    found = sv.proc_stat(pid)
    return found is not None and found[0] not in ("Z", "X")


LAUNCHER = """
import asyncio, json, sys
from backends.local import LocalBackend
from core.engine.executors import LocalExecutor
from core.engine.protocol import JobSpec

async def main():
    jobs = json.loads(sys.argv[1])
    backend = LocalBackend.from_profile(LocalExecutor())
    handles = {}
    for job in jobs:
        spec = JobSpec(
            "exp", job["name"], job["name"], job["argv"], LocalExecutor(), job["job_dir"],
            job["workdir"], dependencies=[handles[d] for d in job.get("after", [])],
        )
        handles[job["name"]] = await backend.submit(spec)
    print(json.dumps({name: h.to_dict() for name, h in handles.items()}))

asyncio.run(main())
"""


async def launch_and_exit(jobs: list[dict[str, object]]) -> dict[str, Handle]:
    """Submit from a separate Python process that exits right away; return its handles.

    ``communicate`` only returns once every holder of the launcher's stdout pipe is gone, so
    this also proves the detached supervisor did not keep the launcher's descriptors.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LAUNCHER,
        json.dumps(jobs),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=TIMEOUT)
    assert proc.returncode == 0, err.decode()
    return {name: Handle.from_dict(h) for name, h in json.loads(out).items()}


# --------------------------------------------------------------------------- detachment


async def test_job_survives_the_launcher_exiting(
    backend: LocalBackend, tmp_path: Path, workdir: Path
) -> None:
    job = {
        "name": "detached",
        "argv": ["bash", "-c", "sleep 1; echo done"],
        "job_dir": str(tmp_path / "store" / "detached"),
        "workdir": str(workdir),
    }
    handle = (await launch_and_exit([job]))["detached"]

    # The launcher is gone, the job is not.
    assert (await backend.poll([handle]))[handle].state in (JobState.SUBMITTED, JobState.RUNNING)
    report = await wait_terminal(backend, handle)
    assert report.state is JobState.SUCCEEDED and report.exit_code == 0
    assert await output(backend, handle) == b"done\n"


@pytest.mark.parametrize(("a_exit", "b_state"), [(0, JobState.SUCCEEDED), (1, JobState.CANCELLED)])
async def test_dependencies_are_honoured_after_the_launcher_exited(
    backend: LocalBackend, tmp_path: Path, workdir: Path, a_exit: int, b_state: JobState
) -> None:
    store = tmp_path / "store"
    jobs = [
        {
            "name": "a",
            "argv": ["bash", "-c", f"sleep 0.5; exit {a_exit}"],
            "job_dir": str(store / "a"),
            "workdir": str(workdir),
        },
        {
            "name": "b",
            "argv": ["bash", "-c", "echo b-ran"],
            "job_dir": str(store / "b"),
            "workdir": str(workdir),
            "after": ["a"],
        },
    ]
    handles = await launch_and_exit(jobs)

    report_b = await wait_terminal(backend, handles["b"])

    assert report_b.state is b_state, report_b
    result_a = json.loads((store / "a" / sv.RESULT).read_text())
    if b_state is JobState.SUCCEEDED:
        result_b = json.loads((store / "b" / sv.RESULT).read_text())
        assert result_b["started_at"] >= result_a["ended_at"]
        assert await output(backend, handles["b"]) == b"b-ran\n"
    else:
        assert report_b.reason == "dependency a ended FAILED"
        assert await output(backend, handles["b"]) == b""


# --------------------------------------------------------------------------- restarts


async def test_a_fresh_backend_reports_exactly_the_same(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    done = await backend.submit(make_spec(["bash", "-c", "exit 4"], "done"))
    running = await backend.submit(make_spec(["sleep", "30"], "running"))
    await wait_terminal(backend, done)
    await wait_state(backend, running, JobState.RUNNING)

    fresh = LocalBackend.from_profile(LocalExecutor())  # as after a restart of the app
    before = await backend.poll([done, running])
    after = await fresh.poll([done, running])

    for handle in (done, running):
        assert (after[handle].state, after[handle].exit_code, after[handle].source) == (
            before[handle].state,
            before[handle].exit_code,
            before[handle].source,
        )
    assert after[done].state is JobState.FAILED and after[done].exit_code == 4
    assert after[running].state is JobState.RUNNING

    await fresh.cancel(running)  # a job started by another process can be cancelled
    assert (await wait_terminal(backend, running)).state is JobState.CANCELLED


# --------------------------------------------------------------------------- files


async def test_secret_values_never_reach_any_file(
    backend: LocalBackend, make_spec: MakeSpec, tmp_path: Path
) -> None:
    secret = "hunter2-c0rrect-h0rse-8fa1"
    code = "import os; print('len', len(os.environ['DB_PASSWORD']))"
    spec = make_spec(
        [sys.executable, "-c", code],
        "secretive",
        env={"PLAIN": "visible"},
        secret_env={"DB_PASSWORD": secret},
    )

    dry = await backend.dryrun(spec)
    handle = await backend.submit(spec)
    report = await wait_terminal(backend, handle)

    assert report.state is JobState.SUCCEEDED
    assert await output(backend, handle) == f"len {len(secret)}\n".encode()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files, "the job wrote its files"
    for path in files:
        assert secret.encode() not in path.read_bytes(), f"secret leaked into {path}"
    stored = json.loads((Path(spec.job_dir) / sv.SPEC).read_text())
    assert stored["env"] == {"PLAIN": "visible"}
    assert stored["secret_env"] == {"DB_PASSWORD": "***"}
    assert "DB_PASSWORD=***" in dry.summary
    assert secret not in dry.summary + "".join(dry.artifacts.values())


async def test_files_are_0600_and_directories_0700(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    old_umask = os.umask(0o022)  # a permissive umask must not loosen anything
    try:
        spec = make_spec(["bash", "-c", "echo out; echo err >&2"])
        handle = await backend.submit(spec)
        await wait_terminal(backend, handle)
    finally:
        os.umask(old_umask)

    root = Path(spec.job_dir)
    entries = [root, *root.rglob("*")]
    assert {p.name for p in entries} >= {"spec.json", "pid.json", "result.json", "stdout.log"}
    for path in entries:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"


async def test_dryrun_shows_the_command_and_writes_nothing(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    spec = make_spec(["python3", "train.py", "--lr", "1e-3", "it's"], env={"A": "1", "B": "2"})

    dry = await backend.dryrun(spec)

    assert dry.backend == "local"
    assert dry.artifacts["command"] == "python3 train.py --lr 1e-3 'it'\"'\"'s'"
    assert dry.summary.splitlines()[0] == dry.artifacts["command"]
    assert f"cwd: {spec.workdir}" in dry.summary and "env: A, B" in dry.summary
    assert json.loads(dry.artifacts["spec.json"])["argv"] == spec.argv
    assert not Path(spec.job_dir).exists()


# --------------------------------------------------------------------------- cancel


async def test_cancel_escalates_to_sigkill_after_the_grace_period(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    handle = await backend.submit(make_spec([sys.executable, "-c", code], "stubborn", grace=0.5))
    while b"ready" not in await output(backend, handle):
        await asyncio.sleep(0.02)
    pids = json.loads((Path(handle.job_id) / sv.PIDS).read_text())

    started = time.monotonic()
    await backend.cancel(handle)
    took = time.monotonic() - started

    report = (await backend.poll([handle]))[handle]
    assert report.state is JobState.CANCELLED
    assert report.exit_code == 128 + signal.SIGKILL
    assert "killed by signal 9" in (report.reason or "")
    assert 0.5 <= took < 5, f"cancel took {took:.2f} s"
    assert not proc_alive(pids["child"]["pid"])


async def test_cancel_waits_until_the_job_is_gone(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    handle = await backend.submit(make_spec(["sleep", "30"]))
    await wait_state(backend, handle, JobState.RUNNING)
    pids = json.loads((Path(handle.job_id) / sv.PIDS).read_text())

    await backend.cancel(handle)

    assert not proc_alive(pids["child"]["pid"])
    assert not proc_alive(pids["supervisor"]["pid"])
    report = (await backend.poll([handle]))[handle]
    assert report.state is JobState.CANCELLED
    assert report.source == "local:result.json"
    assert "SIGTERM" in (report.reason or "")


async def test_cancel_right_after_submit_ends_cancelled(
    backend: LocalBackend, make_spec: MakeSpec, workdir: Path
) -> None:
    """Cancel may hit the supervisor in its first milliseconds; the end is still recorded."""
    for i in range(5):
        marker = workdir / f"ran-{i}"
        handle = await backend.submit(make_spec(["bash", "-c", f"sleep 0.3; touch {marker}"]))
        await backend.cancel(handle)

        report = (await backend.poll([handle]))[handle]
        assert report.state is JobState.CANCELLED, report
        assert report.source == "local:result.json"
    await asyncio.sleep(0.5)
    assert not list(workdir.glob("ran-*"))


async def test_pending_job_says_what_it_waits_for(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    a = await backend.submit(make_spec(["sleep", "30"], "prep"))
    b = await backend.submit(make_spec(["true"], "train", dependencies=[a]))

    report = await wait_state(backend, b, JobState.PENDING)

    assert report.reason == "waiting for dependency prep"
    assert report.source == "local:proc"
    await backend.cancel(a)
    report_b = await wait_terminal(backend, b)
    assert report_b.state is JobState.CANCELLED
    assert report_b.reason == "dependency prep ended CANCELLED"


# --------------------------------------------------------------------------- honesty


async def test_a_reused_pid_is_never_taken_for_the_job(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """pid.json names a live process (this test) with another start time: not our job."""
    run_dir = tmp_path / "forged"
    run_dir.mkdir()
    me = sv.identity(os.getpid())
    assert me is not None
    (run_dir / sv.SPEC).write_text(json.dumps({"argv": ["true"], "job_name": "forged"}))
    pids = {"boot_id": sv.boot_id(), "supervisor": {"pid": me["pid"], "start": me["start"] - 1}}
    (run_dir / sv.PIDS).write_text(json.dumps(pids))
    handle = Handle("local", "local", str(run_dir))

    report = (await backend.poll([handle]))[handle]
    assert report.state is JobState.FAILED
    assert report.reason == "process exited without recording an exit code"

    # Same pid and start time, but recorded before a reboot: not our job either.
    pids = {"boot_id": "another-boot", "supervisor": me}
    (run_dir / sv.PIDS).write_text(json.dumps(pids))
    assert (await backend.poll([handle]))[handle].state is JobState.FAILED
    await backend.cancel(handle)  # a finished job: nothing is signalled (we are still here)


async def test_a_killed_supervisor_is_failed_not_succeeded(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    handle = await backend.submit(make_spec(["sleep", "30"]))
    await wait_state(backend, handle, JobState.RUNNING)
    pids = json.loads((Path(handle.job_id) / sv.PIDS).read_text())

    os.kill(pids["supervisor"]["pid"], signal.SIGKILL)
    os.killpg(pids["pgid"], signal.SIGKILL)
    report = await wait_terminal(backend, handle)

    assert report.state is JobState.FAILED
    assert report.exit_code is None
    assert report.reason == "process exited without recording an exit code"


async def test_a_missing_command_fails_with_127_and_says_why(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    handle = await backend.submit(make_spec(["no-such-command-xyz", "--help"]))

    report = await wait_terminal(backend, handle)

    assert report.state is JobState.FAILED and report.exit_code == 127
    assert "no-such-command-xyz" in (report.reason or "")
    assert b"cannot execute" in await output(backend, handle, "stderr")


@pytest.mark.parametrize(
    "script",
    ["sleep 30 & echo $!", "(setsid sleep 300 & echo $! )"],
    ids=["in-the-group", "left-with-setsid"],
)
async def test_processes_left_behind_are_stopped_when_the_job_ends(
    backend: LocalBackend, make_spec: MakeSpec, script: str
) -> None:
    handle = await backend.submit(make_spec(["bash", "-c", script]))

    report = await wait_terminal(backend, handle)

    assert report.state is JobState.SUCCEEDED
    assert not proc_alive(int(await output(backend, handle)))


async def test_processes_that_left_the_group_with_setsid_are_stopped_on_cancel(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    """A child that calls setsid (and whose parent then exits) escapes killpg; the supervisor,
    as child subreaper, still finds it among its descendants and stops it."""
    script = "(setsid sleep 300 & echo $! ) ; sleep 300"
    handle = await backend.submit(make_spec(["bash", "-c", script], "escaper"))
    while not (await output(backend, handle)).strip():
        await asyncio.sleep(0.02)
    escaped = int(await output(backend, handle))
    assert proc_alive(escaped)
    # `echo $!` can run before the child has called setsid: wait until it has its own group.
    deadline = time.monotonic() + 5
    while sv.proc_stat(escaped)[1] != escaped and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert sv.proc_stat(escaped)[1] == escaped, "it really is in a group of its own"

    await backend.cancel(handle)

    assert (await backend.poll([handle]))[handle].state is JobState.CANCELLED
    deadline = time.monotonic() + 5
    while proc_alive(escaped) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not proc_alive(escaped)


async def test_adopted_orphans_are_reaped_while_the_job_runs(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    """As subreaper the supervisor adopts orphans; each must be reaped when it exits, not
    left a zombie (holding a pid) until the job ends."""
    script = "for i in 1 2 3 4 5; do (sleep 0.05 &); done; echo started; sleep 30"
    handle = await backend.submit(make_spec(["bash", "-c", script], "orphans"))
    while b"started" not in await output(backend, handle):
        await asyncio.sleep(0.02)
    supervisor = json.loads((Path(handle.job_id) / sv.PIDS).read_text())["supervisor"]["pid"]
    await asyncio.sleep(0.5)  # the orphans have exited by now

    zombies = [
        pid
        for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
        if (fields := sv._stat_fields(pid)) and fields[0] == b"Z" and int(fields[1]) == supervisor
    ]
    await backend.cancel(handle)
    assert zombies == []


# --------------------------------------------------------------------------- API edges


async def test_submit_twice_runs_once(backend: LocalBackend, make_spec: MakeSpec) -> None:
    spec = make_spec(["bash", "-c", "echo once"])

    first = await backend.submit(spec)
    second = await backend.submit(spec)

    assert first == second == Handle("local", "local", os.path.abspath(spec.job_dir))
    await wait_terminal(backend, first)
    assert await output(backend, first) == b"once\n"


async def test_a_dependency_on_another_backend_is_refused(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    spec = make_spec(["true"], dependencies=[Handle("slurm", "cluster", "12345")])

    with pytest.raises(BackendError, match="only wait for other local jobs"):
        await backend.submit(spec)
    with pytest.raises(BackendError, match="only wait for other local jobs"):
        await backend.dryrun(spec)
    assert not (Path(spec.job_dir) / sv.PIDS).exists()


async def test_dependencies_must_exist_to_submit_but_not_to_preview(
    backend: LocalBackend, make_spec: MakeSpec, tmp_path: Path
) -> None:
    ghost = Handle("local", "local", str(tmp_path / "never-submitted"))
    spec = make_spec(["true"], "after-ghost", dependencies=[ghost])

    dry = await backend.dryrun(spec)
    with pytest.raises(BackendError, match="no such job"):
        await backend.submit(spec)

    assert "after-ghost" not in dry.summary and "never-submitted" in dry.summary
    placeholder = make_spec(["true"], dependencies=[Handle("local", "local", "<prepare>")])
    assert "after: <prepare> succeeds" in (await backend.dryrun(placeholder)).summary


async def test_more_than_one_node_is_refused(backend: LocalBackend, make_spec: MakeSpec) -> None:
    spec = make_spec(["true"])
    spec.executor = LocalExecutor(nodes=2)

    with pytest.raises(BackendError, match="one node"):
        await backend.submit(spec)


async def test_logs_refuse_bad_arguments(backend: LocalBackend, make_spec: MakeSpec) -> None:
    handle = await backend.submit(make_spec(["true"]))
    await wait_terminal(backend, handle)

    with pytest.raises(BackendError):
        await output(backend, handle, "stdin")
    with pytest.raises(BackendError):
        async for _ in backend.logs(handle, offset=-1):
            pass
    with pytest.raises(BackendError, match="no such job"):
        async for _ in backend.logs(Handle("local", "local", "/nonexistent/job")):
            pass


async def test_big_logs_come_in_bounded_chunks(backend: LocalBackend, make_spec: MakeSpec) -> None:
    code = "import sys; sys.stdout.buffer.write(b'x' * (3 * 1024 * 1024 + 5))"
    handle = await backend.submit(make_spec([sys.executable, "-c", code]))

    chunks = [c async for c in backend.logs(handle, follow=True)]

    assert sum(map(len, chunks)) == 3 * 1024 * 1024 + 5
    assert max(map(len, chunks)) <= 64 * 1024


async def test_the_registry_builds_the_local_backend() -> None:
    found = get_backend(LocalExecutor())

    assert isinstance(found, LocalBackend)
    assert isinstance(found, Backend)
    assert found.name == "local"


async def test_poll_reports_foreign_handles_as_unknown(backend: LocalBackend) -> None:
    handle = Handle("docker", "local", "abc")

    report = (await backend.poll([handle]))[handle]

    assert report.state is JobState.UNKNOWN and report.source == "local"


# --------------------------------------------------------------------------- speed (loose)


async def test_submit_to_succeeded_is_quick(backend: LocalBackend, make_spec: MakeSpec) -> None:
    """Measured, not benchmarked: the bound only catches a gross regression."""
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        handle = await backend.submit(make_spec(["true"]))
        while not (await backend.poll([handle]))[handle].state.is_terminal:
            await asyncio.sleep(0.002)
        timings.append(time.perf_counter() - started)
    best = min(timings)
    print(f"submit -> SUCCEEDED for `true`: best {best * 1000:.1f} ms, all {timings}")
    assert best < 1.0


def test_the_supervisor_imports_only_a_little() -> None:
    """The supervisor runs as ``python -I -S supervisor.py``; its imports stay small."""
    import subprocess

    result = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", sv.__file__],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2  # usage: no run dir given, after all imports ran
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "json" in modules and "signal" in modules  # the parse found the imports
    assert not modules & {"typing", "subprocess", "asyncio", "core", "backends"}, modules


async def test_every_job_carries_the_depth_marker(
    backend: LocalBackend, make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JobSpec built without the engine still marks its job one level deeper."""
    monkeypatch.setenv("NEMORUN_TUI_DEPTH", "1")  # as if this launcher were itself a job
    handle = await backend.submit(make_spec(["sh", "-c", 'echo "$NEMORUN_TUI_DEPTH"']))
    assert (await wait_terminal(backend, handle)).state is JobState.SUCCEEDED
    assert await output(backend, handle) == b"2\n"


async def test_a_held_job_starts_only_once_released(
    backend: LocalBackend, make_spec: MakeSpec, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    spec = make_spec(["touch", str(marker)])
    spec.held = True
    handle = await backend.submit(spec)
    await asyncio.sleep(0.5)
    report = (await backend.poll([handle]))[handle]
    assert report.state is JobState.SUBMITTED and "launcher" in (report.reason or "")
    assert not marker.exists()
    assert await backend.find(spec.run_tag, spec.job_dir) == handle
    assert await backend.find("another-tag", spec.job_dir) is None
    await backend.release(handle)
    done = await wait_terminal(backend, handle)
    assert done.state is JobState.SUCCEEDED and marker.exists()
    # The report carries the job's own times (from result.json), not the poll's.
    assert done.started_at is not None and done.ended_at is not None
    assert done.started_at <= done.ended_at <= done.observed_at


async def test_a_held_job_whose_launcher_died_is_not_run(
    backend: LocalBackend, make_spec: MakeSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hold names its launcher; here a process that has already exited."""
    marker = tmp_path / "ran"
    spec = make_spec(["touch", str(marker)])
    spec.held = True
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    real_identity = sv.identity

    def identity(pid: int) -> dict[str, object] | None:
        return {"pid": dead.pid, "start": 0} if pid == os.getpid() else real_identity(pid)

    monkeypatch.setattr(sv, "identity", identity)
    handle = await backend.submit(spec)
    monkeypatch.undo()
    done = await wait_terminal(backend, handle)
    assert done.state is JobState.FAILED and "not run" in (done.reason or "")
    assert not marker.exists()


# --------------------------------------------------------------------------- wait_changed


async def wait_changed_until_terminal(
    backend: LocalBackend, handle: Handle, *, timeout: float = 60.0
) -> StatusReport:
    """Wait on the capability only (no sleeps); its own timeout is far beyond TIMEOUT, so
    returning within TIMEOUT means a file event woke it, not the timeout."""

    async def go() -> StatusReport:
        for _ in range(20):  # spurious returns are allowed, endless ones are not
            report = (await backend.poll([handle]))[handle]
            if report.state.is_terminal:
                return report
            await backend.wait_changed([handle], timeout)
        raise AssertionError(f"{handle} not terminal after 20 wake-ups")

    return await asyncio.wait_for(go(), TIMEOUT)


async def test_wait_changed_returns_when_the_job_ends(
    backend: LocalBackend, make_spec: MakeSpec, workdir: Path
) -> None:
    handle = await backend.submit(
        make_spec(["sh", "-c", "while [ ! -e go ]; do sleep 0.01; done; echo done"])
    )
    await wait_state(backend, handle, JobState.RUNNING)
    waiting = asyncio.create_task(backend.wait_changed([handle], 60.0))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # a running job with nothing new does not wake it
    (workdir / "go").touch()
    await asyncio.wait_for(waiting, TIMEOUT)
    report = await wait_changed_until_terminal(backend, handle)
    assert report.state is JobState.SUCCEEDED and report.exit_code == 0
    assert await output(backend, handle) == b"done\n"


async def test_wait_changed_returns_at_once_for_a_job_that_already_ended(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    handle = await backend.submit(make_spec(["true"]))
    await wait_terminal(backend, handle)
    await asyncio.wait_for(backend.wait_changed([handle], 60.0), TIMEOUT)


async def test_wait_changed_sees_a_failure_and_a_cancel(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    failing = await backend.submit(make_spec(["sh", "-c", "sleep 0.2; exit 3"], "fails"))
    report = await wait_changed_until_terminal(backend, failing)
    assert report.state is JobState.FAILED and report.exit_code == 3
    sleeper = await backend.submit(make_spec(["sleep", "30"], "sleeps"))
    await wait_state(backend, sleeper, JobState.RUNNING)
    waiting = asyncio.create_task(wait_changed_until_terminal(backend, sleeper))
    await backend.cancel(sleeper)
    assert (await waiting).state is JobState.CANCELLED


async def test_wait_changed_without_file_events_still_returns(
    backend: LocalBackend, make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No inotify watches left (or no watchfiles): a short wait, never the whole timeout."""
    from backends.local import backend as local_backend
    from backends.local.watch import WatchUnavailable

    def unavailable(*_: object) -> None:
        raise WatchUnavailable("no inotify watches left")

    monkeypatch.setattr(local_backend, "DirWatch", unavailable)
    monkeypatch.setattr(local_backend, "_follow_watch", lambda run_dir: None)
    handle = await backend.submit(make_spec(["sh", "-c", "sleep 0.2; echo slow"]))
    report = await wait_changed_until_terminal(backend, handle)
    assert report.state is JobState.SUCCEEDED
    followed = b"".join([c async for c in backend.logs(handle, follow=True)])
    assert followed == b"slow\n"


async def test_wait_changed_ignores_foreign_and_missing_handles(backend: LocalBackend) -> None:
    """Nothing to watch: it waits its (short) timeout and returns, it does not raise."""
    await asyncio.wait_for(
        backend.wait_changed(
            [Handle("slurm", "c1", "123"), Handle("local", "local", "/nonexistent/job")], 0.05
        ),
        TIMEOUT,
    )


async def test_a_followed_log_ends_with_the_job_and_misses_nothing(
    backend: LocalBackend, make_spec: MakeSpec, workdir: Path
) -> None:
    script = "for i in 1 2 3; do echo line $i; sleep 0.05; done; printf tail"
    handle = await backend.submit(make_spec(["sh", "-c", script]))
    followed = await asyncio.wait_for(_collect(backend.logs(handle, follow=True)), TIMEOUT)
    assert followed == b"line 1\nline 2\nline 3\ntail"
    assert (await backend.poll([handle]))[handle].state is JobState.SUCCEEDED


async def _collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


async def test_engine_wait_uses_the_local_backend_s_file_events(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end through Engine.wait with a backoff cap (max_interval) far beyond the
    test's bound: only the capability can make it return in time."""
    from core.config import Script
    from core.engine import Engine, Plan
    from core.store import Store

    monkeypatch.chdir(workdir)
    engine = Engine(Store(tmp_path / "home"))
    plan = Plan(title="events")
    plan.add(Script(inline="sleep 0.2; echo hi"), LocalExecutor(), name="job")
    record = await engine.launch(plan)
    seen: list[JobState] = []
    done = await asyncio.wait_for(
        engine.wait(record.id, lambda change: seen.append(change.new), max_interval=60.0),
        TIMEOUT,
    )
    assert done.job("job").state is JobState.SUCCEEDED
    assert seen[-1] is JobState.SUCCEEDED
