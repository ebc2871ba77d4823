"""Docker-backend behaviour beyond the shared contract, on the real podman Docker-API service.

The contract suite (tests/contract, target ``docker``) covers what every backend does; these
tests cover what the Docker backend promises on its own: real exit codes and readable
reasons (OOM, a missing command), cancel with the logs kept, jobs found again by a fresh
backend instance (never a second container), logs after a restart and after removal,
packaged code mounted, a local → docker dependency, clear errors before anything is created,
and one list call per poll whatever the number of containers.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import sys
import tarfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from ci_services import BUSYBOX_IMAGE, docker_available, docker_url
from services import require_service

import nemorun_tui as run
from backends.docker import DockerBackend
from backends.docker import request as rq
from backends.local import LocalBackend
from core.engine.executors import LocalExecutor
from core.engine.executors_docker import DockerExecutor
from core.engine.protocol import BackendError, Handle, JobSpec
from core.engine.states import JobState, StatusReport

pytestmark = pytest.mark.docker
TIMEOUT = 40.0
MakeSpec = Callable[..., JobSpec]


@pytest.fixture
def docker_up() -> None:
    require_service(*docker_available())


def profile(**kw: Any) -> DockerExecutor:
    base: dict[str, Any] = {
        "container_image": BUSYBOX_IMAGE,
        "base_url": docker_url(),
        "pull": "never",
        "stop_grace_seconds": 2.0,
    }
    base.update(kw)
    return DockerExecutor(**base)


@pytest.fixture
async def backend(docker_up: None, tmp_path: Path) -> AsyncIterator[DockerBackend]:
    b = DockerBackend.from_profile(profile())
    yield b
    for row in await b.client.list_managed():
        if str((row.get("Labels") or {}).get("nemorun.job_dir", "")).startswith(str(tmp_path)):
            await b.client.remove(row["Id"])
    await b.close()


@pytest.fixture
def make_spec(tmp_path: Path) -> MakeSpec:
    counter = iter(range(10_000))

    def make(
        argv: list[str],
        name: str = "job",
        *,
        executor: DockerExecutor | None = None,
        dependencies: list[Handle] | None = None,
        **kw: Any,
    ) -> JobSpec:
        n = next(counter)
        return JobSpec(
            experiment_id="dock-test",
            job_name=name,
            run_tag=f"nrt-dock-{name}-{n}-{os.getpid()}",
            argv=argv,
            executor=executor or profile(),
            job_dir=str(tmp_path / "store" / f"{n:03d}-{name}"),
            workdir=str(tmp_path),
            dependencies=list(dependencies or []),
            **kw,
        )

    return make


async def wait_state(
    b: Any, handle: Handle, done: Callable[[StatusReport], bool], what: str = "terminal"
) -> StatusReport:
    deadline = time.monotonic() + TIMEOUT
    while True:
        report = (await b.poll([handle]))[handle]
        if done(report):
            return report
        if time.monotonic() > deadline:
            pytest.fail(f"{handle} never became {what}; last: {report}")
        await asyncio.sleep(0.1)


async def terminal(b: Any, handle: Handle) -> StatusReport:
    return await wait_state(b, handle, lambda r: r.state.is_terminal)


async def read(b: Any, handle: Handle, **kw: Any) -> bytes:
    return b"".join([c async for c in b.logs(handle, **kw)])


async def ours(b: DockerBackend, run_tag: str) -> list[dict[str, Any]]:
    """Containers on the engine carrying this run tag (one list call)."""
    rows = await b.client.list_managed()
    return [r for r in rows if (r.get("Labels") or {}).get("nemorun.run_tag") == run_tag]


# --------------------------------------------------------------------------- outcomes


async def test_script_task_runs_in_busybox_with_the_job_env_and_job_dir(
    backend: DockerBackend, tmp_path: Path
) -> None:
    """An inline shell Script (busybox has no bash, no Python) sees NEMORUN_* and writes its
    outputs into NEMORUN_JOB_DIR, which is the store's ``container/out`` on this machine."""
    script = run.Script(
        inline='echo "$NEMORUN_EXPERIMENT_ID $NEMORUN_JOB_NAME $NEMORUN_RUN_TAG $NEMORUN_JOB_DIR";'
        ' pwd; echo result > "$NEMORUN_JOB_DIR/out.txt"',
        entrypoint="sh",
    )
    spec = JobSpec(
        experiment_id="exp-env",
        job_name="envy",
        run_tag="nrt-exp-env-envy",
        argv=script.argv("/unused/python"),
        executor=profile(),
        job_dir=str(tmp_path / "store" / "envy"),
        workdir=str(tmp_path),
    )
    handle = await backend.submit(spec)
    report = await terminal(backend, handle)

    assert report.state is JobState.SUCCEEDED and report.exit_code == 0, report
    assert report.started_at is not None and report.ended_at is not None
    assert report.started_at <= report.ended_at <= time.time()
    lines = (await read(backend, handle)).decode().splitlines()
    assert lines == [f"exp-env envy nrt-exp-env-envy {rq.CONTAINER_JOB_DIR}", rq.CONTAINER_JOB_DIR]
    out = Path(spec.job_dir) / rq.STATE_DIR / "out" / "out.txt"
    assert out.read_text() == "result\n"


async def test_failure_is_failed_with_its_exit_code_never_succeeded(
    backend: DockerBackend, make_spec: MakeSpec
) -> None:
    """NeMo Run's issue #218: a failing command in Docker was SUCCEEDED. Here: FAILED, 7."""
    handle = await backend.submit(make_spec(["sh", "-c", "echo partial; echo bad >&2; exit 7"]))

    report = await terminal(backend, handle)

    assert report.state is JobState.FAILED, report
    assert report.exit_code == 7
    assert report.reason == "exit code 7; stderr: bad"
    assert report.source == "docker inspect"


async def test_memory_limited_container_fails_with_an_oom_reason(
    backend: DockerBackend, make_spec: MakeSpec
) -> None:
    """A job that outgrows ``mem_limit`` is killed; the reason names memory and the limit."""
    ex = profile(additional_kwargs={"mem_limit": "16m", "memswap_limit": "16m"})
    grow = 'x=a; while true; do x="$x$x"; done'
    handle = await backend.submit(make_spec(["sh", "-c", grow], executor=ex))

    report = await terminal(backend, handle)

    assert report.state is JobState.FAILED, report
    assert report.exit_code == 137
    assert report.reason is not None and "memory" in report.reason and "16 MiB" in report.reason


async def test_missing_command_fails_with_a_reason_not_a_hang(
    backend: DockerBackend, make_spec: MakeSpec, tmp_path: Path
) -> None:
    """A Partial needs Python in the image: in busybox (none) it fails at once, saying so."""
    import sys

    task = tmp_path / "task.json"
    task.write_text("{}")
    spec = make_spec([sys.executable, "-m", "core.runner", str(task)], task_file=str(task))
    assert rq.build(spec.executor, spec).body["Cmd"][:1] == ["python3"]  # type: ignore[arg-type]

    handle = await backend.submit(spec)
    report = await terminal(backend, handle)

    assert report.state is JobState.FAILED, report
    assert report.reason is not None and "'python3' not found" in report.reason, report
    assert "Partial/Config tasks need Python >= 3.11 in the image" in report.reason


# --------------------------------------------------------------------------- cancel


async def test_cancel_stops_a_running_job_keeps_its_logs_and_removes_it(
    backend: DockerBackend, make_spec: MakeSpec
) -> None:
    spec = make_spec(["sh", "-c", "echo started; echo oops >&2; sleep 60"], name="sleeper")
    handle = await backend.submit(spec)
    await wait_state(backend, handle, lambda r: r.state is JobState.RUNNING, "RUNNING")
    deadline = time.monotonic() + TIMEOUT
    while b"started" not in await read(backend, handle):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)

    started = time.monotonic()
    await backend.cancel(handle)
    took = time.monotonic() - started
    report = (await backend.poll([handle]))[handle]

    assert report.state is JobState.CANCELLED, report
    assert took < 10, f"cancel took {took:.1f} s (SIGTERM reaches the job through --init)"
    assert await ours(backend, spec.run_tag) == [], "cleanup='remove' left the container"
    logs = Path(spec.job_dir) / "logs"
    assert (logs / "stdout.log").read_bytes() == b"started\n"
    assert (logs / "stderr.log").read_bytes() == b"oops\n"
    assert await read(backend, handle, stream="stderr") == b"oops\n"


async def test_keep_policy_keeps_the_ended_container(
    backend: DockerBackend, make_spec: MakeSpec
) -> None:
    spec = make_spec(["sh", "-c", "exit 2"], executor=profile(cleanup="keep-failed"))
    handle = await backend.submit(spec)
    assert (await terminal(backend, handle)).exit_code == 2
    kept = await ours(backend, spec.run_tag)
    assert len(kept) == 1 and kept[0]["State"] in ("exited", "stopped")  # (podman says both)


# --------------------------------------------------------------------------- restarts


async def test_fresh_backend_finds_the_job_and_a_retried_submit_creates_nothing(
    backend: DockerBackend, make_spec: MakeSpec
) -> None:
    spec = make_spec(["sh", "-c", "echo up; sleep 30"], name="survivor")
    handle = await backend.submit(spec)
    await wait_state(backend, handle, lambda r: r.state is JobState.RUNNING, "RUNNING")

    fresh = DockerBackend.from_profile(profile())  # a restarted app: nothing in memory
    try:
        assert (await fresh.poll([handle]))[handle].state is JobState.RUNNING
        assert await fresh.find(spec.run_tag, spec.job_dir) == handle
        again = await fresh.submit(replace(spec))
        assert again == handle
        assert len(await ours(fresh, spec.run_tag)) == 1, "a retried submit made a second one"
        await fresh.cancel(handle)
        assert (await backend.poll([handle]))[handle].state is JobState.CANCELLED
    finally:
        await fresh.close()
    assert await DockerBackend.from_profile(profile()).find("nrt-never", spec.job_dir) is None


async def test_logs_after_a_restart_from_the_engine_then_from_the_store_copy(
    backend: DockerBackend, make_spec: MakeSpec
) -> None:
    """While it runs, a fresh instance reads stdout and stderr apart from an offset; once the
    container is removed, another fresh instance reads the same bytes from the store."""
    script = "printf 'out-1\\n'; printf 'err-1\\n' >&2; sleep 1.5; printf 'out-2\\n'"
    spec = make_spec(["sh", "-c", script])
    handle = await backend.submit(spec)
    await wait_state(backend, handle, lambda r: r.state is JobState.RUNNING, "RUNNING")

    restarted = DockerBackend.from_profile(profile())
    deadline = time.monotonic() + TIMEOUT
    while await read(restarted, handle) != b"out-1\n":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert await read(restarted, handle, stream="stderr") == b"err-1\n"
    assert await read(restarted, handle, offset=4) == b"1\n"
    followed = await read(restarted, handle, offset=4, follow=True)
    assert followed == b"1\nout-2\n"
    await restarted.close()

    assert (await terminal(backend, handle)).state is JobState.SUCCEEDED
    assert await ours(backend, spec.run_tag) == [], "the ended container was not removed"
    later = DockerBackend.from_profile(profile())
    try:
        assert await read(later, handle) == b"out-1\nout-2\n"
        assert await read(later, handle, offset=6) == b"out-2\n"
        assert await read(later, handle, stream="stderr") == b"err-1\n"
        assert (await later.poll([handle]))[handle].state is JobState.SUCCEEDED
        assert later.client.calls["list"] == 0, "an ended job is answered from the store"
    finally:
        await later.close()


# --------------------------------------------------------------------------- packaged code


def _archive(tmp_path: Path, files: dict[str, bytes]) -> tuple[str, str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    sha = hashlib.sha256(raw).hexdigest()
    path = tmp_path / f"{sha}.tar.gz"
    path.write_bytes(raw)
    return str(path), sha


async def test_packaged_code_is_mounted_at_nemorun_code_and_the_job_runs_there(
    backend: DockerBackend, make_spec: MakeSpec, tmp_path: Path
) -> None:
    archive, sha = _archive(tmp_path, {"pkg/hello.sh": b"echo hello from the package\n"})
    spec = make_spec(["sh", "-c", "pwd; sh pkg/hello.sh"], archive=archive, archive_sha256=sha)

    dry = await backend.dryrun(spec)
    handle = await backend.submit(spec)
    report = await terminal(backend, handle)

    assert report.state is JobState.SUCCEEDED, report
    assert (
        await read(backend, handle) == f"{rq.CONTAINER_CODE_DIR}\nhello from the package\n".encode()
    )
    assert json.loads(dry.artifacts["create.json"])["WorkingDir"] == rq.CONTAINER_CODE_DIR


async def test_a_tampered_archive_is_refused_before_any_container(
    backend: DockerBackend, make_spec: MakeSpec, tmp_path: Path
) -> None:
    archive, sha = _archive(tmp_path, {"a.sh": b"echo a\n"})
    spec = make_spec(["sh", "a.sh"], archive=archive, archive_sha256="0" * 64)
    with pytest.raises(BackendError, match="packaged code"):
        await backend.submit(spec)
    assert await ours(backend, spec.run_tag) == []
    assert sha != "0" * 64


# --------------------------------------------------------------------------- dependencies


async def test_docker_job_waits_for_a_local_job(
    backend: DockerBackend, make_spec: MakeSpec, tmp_path: Path
) -> None:
    """local → docker: the container starts only after the local job succeeded; after a
    failed local job it never runs and says why."""
    local = LocalBackend.from_profile(LocalExecutor(cancel_grace_seconds=1.0))
    stamp = tmp_path / "local-ended"

    def local_spec(name: str, code: str) -> JobSpec:
        return JobSpec(
            experiment_id="dock-test",
            job_name=name,
            run_tag=f"nrt-local-{name}",
            argv=["bash", "-c", code],
            executor=LocalExecutor(),
            job_dir=str(tmp_path / "local" / name),
            workdir=str(tmp_path),
        )

    ok = await local.submit(local_spec("ok", f"sleep 1; date +%s.%N > {stamp}"))
    after_ok = await backend.submit(make_spec(["sh", "-c", "date +%s"], dependencies=[ok]))
    waiting = (await backend.poll([after_ok]))[after_ok]
    assert waiting.state is JobState.PENDING and "waiting for" in (waiting.reason or ""), waiting

    report = await terminal(backend, after_ok)
    assert report.state is JobState.SUCCEEDED, report
    assert report.started_at is not None and report.started_at >= float(stamp.read_text())

    bad = await local.submit(local_spec("bad", "exit 5"))
    marker = tmp_path / "ran"
    ex = profile(volumes=[f"{tmp_path}:{tmp_path}"])
    never = await backend.submit(
        make_spec(["sh", "-c", f"touch {marker}"], executor=ex, dependencies=[bad])
    )
    report = await terminal(backend, never)
    assert report.state is JobState.CANCELLED, report
    assert "dependency" in (report.reason or "") and "FAILED" in (report.reason or "")
    assert not marker.exists()
    await local.close()


async def test_pollers_that_see_a_waiting_container_at_once_start_it_once(
    backend: DockerBackend, make_spec: MakeSpec, tmp_path: Path
) -> None:
    """The app, a waiting CLI and a log follower all poll; each used to start a container
    whose dependency had just succeeded, and a second start re-ran the exited container
    (its output appeared three times). Here 3 backends (as 3 processes) x 3 polls at once."""
    local = LocalBackend.from_profile(LocalExecutor(cancel_grace_seconds=1.0))
    dep = await local.submit(
        JobSpec(
            experiment_id="dock-test",
            job_name="dep",
            run_tag="nrt-local-dep-once",
            argv=["sleep", "0.5"],
            executor=LocalExecutor(),
            job_dir=str(tmp_path / "local" / "dep"),
            workdir=str(tmp_path),
        )
    )
    handle = await backend.submit(make_spec(["echo", "ran"], "once", dependencies=[dep]))
    others = [DockerBackend.from_profile(profile()) for _ in range(2)]
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            polls = [b.poll([handle]) for b in (backend, *others) for _ in range(3)]
            reports = [r[handle] for r in await asyncio.gather(*polls)]
            if all(r.state.is_terminal for r in reports):
                break
            assert time.monotonic() < deadline, reports
            await asyncio.sleep(0.02)
    finally:
        for other in others:
            await other.close()
        await local.close()
    assert reports[0].state is JobState.SUCCEEDED, reports[0]
    assert await read(backend, handle) == b"ran\n"


async def test_the_engine_runs_a_local_then_docker_experiment(
    docker_up: None, tmp_path: Path
) -> None:
    """Through the public API: one experiment, a local job and a docker job after it."""
    home = tmp_path / "home"

    def launch() -> tuple[dict[str, JobState], str]:
        with run.Experiment("local-then-docker", home=home) as exp:
            first = exp.add(
                run.Script(inline="echo local"), name="prep", executor=run.LocalExecutor()
            )
            exp.add(
                run.Script(inline='echo "in $NEMORUN_JOB_NAME"', entrypoint="sh"),
                name="boxed",
                executor=run.DockerExecutor(
                    container_image=BUSYBOX_IMAGE, base_url=docker_url(), pull="never"
                ),
                dependencies=[first],
            )
            exp.run()
            return exp.status(), exp.logs("boxed")

    states, logs = await asyncio.to_thread(launch)

    assert states == {"prep": JobState.SUCCEEDED, "boxed": JobState.SUCCEEDED}
    assert logs == "in boxed\n"


# --------------------------------------------------------------------------- bad input


async def test_bad_input_fails_clearly_before_anything_is_created(
    backend: DockerBackend, make_spec: MakeSpec, tmp_path: Path
) -> None:
    cases: list[tuple[DockerExecutor, str]] = [
        (profile(container_image="localhost/no-such-image:1"), "no-such-image"),
        (profile(base_url=f"unix://{tmp_path}/nothing.sock"), "cannot reach the Docker engine"),
        (profile(additional_kwargs={"bogus_option": 1}), "bogus_option"),
        (profile(additional_kwargs={"tty": True}), "set by the backend"),
        (profile(additional_kwargs={"mem_limit": "lots"}), "invalid docker option"),
        (profile(volumes=["relative/path:/data"]), "volumes"),
        (profile(volumes=[f"{tmp_path}:/nemorun/job"]), "reserved"),
        (profile(num_gpus=1), "no GPU runtime"),
        (profile(num_gpus=-1, runtime="nvidia"), "no GPU runtime"),
    ]
    for n, (ex, message) in enumerate(cases):
        b = DockerBackend.from_profile(ex)
        spec = make_spec(["true"], name=f"bad{n}", executor=ex)
        with pytest.raises(BackendError, match=message):
            await b.submit(spec)
        await b.close()
        assert await ours(backend, spec.run_tag) == [], f"case {n} left a container"
        assert not (Path(spec.job_dir) / rq.STATE_DIR / "container.json").exists()
    with pytest.raises(ValueError, match="cleanup"):
        profile(cleanup="sometimes")
    with pytest.raises(ValueError, match="num_gpus"):
        profile(num_gpus=-2)
    with pytest.raises(ValueError, match="ulimits"):
        profile(ulimits=["nofile"])
    with pytest.raises(ValueError, match="container_image"):
        DockerExecutor()


async def test_pull_is_tried_for_a_missing_image_and_its_failure_reported(
    backend: DockerBackend, make_spec: MakeSpec
) -> None:
    ex = profile(container_image="127.0.0.1:9/nope:1", pull="missing")
    b = DockerBackend.from_profile(ex)
    spec = make_spec(["true"], executor=ex)
    with pytest.raises(BackendError, match="could not be pulled"):
        await b.submit(spec)
    assert b.client.calls["pull"] == 1
    assert b.client.calls["create"] == 0
    await b.close()


# --------------------------------------------------------------------------- dry run / polling


async def test_dry_run_shows_the_exact_create_request(
    backend: DockerBackend, make_spec: MakeSpec
) -> None:
    """What the dry run shows is what the engine got (secrets as ``***`` only)."""
    ex = profile(
        shm_size="64m",
        ulimits=["nofile=1024:1024", "nproc=4096:4096"],  # (podman: without nproc, its own
        # default is above the hard limit here)
        env_vars={"PLAIN": "1"},
        additional_kwargs={"cpu_shares": 512},
    )
    secret = "tok-" + os.urandom(6).hex()
    spec = make_spec(
        ["sh", "-c", 'printf "%s" "$TOKEN" | sha256sum'], executor=ex, secret_env={"TOKEN": secret}
    )

    dry = await backend.dryrun(spec)
    shown = json.loads(dry.artifacts["create.json"])
    handle = await backend.submit(spec)
    name = rq.container_name(spec.run_tag, spec.job_dir)
    info = await backend.client.inspect(name)
    assert info is not None
    report = await terminal(backend, handle)

    assert dry.artifacts["request"] == f"POST /v1.41/containers/create?name={name}"
    assert secret not in dry.summary + "".join(dry.artifacts.values())
    assert "TOKEN=***" in shown["Env"] and "PLAIN=1" in shown["Env"]
    assert info["Config"]["Cmd"] == shown["Cmd"]
    assert info["Config"]["Image"] == shown["Image"] == BUSYBOX_IMAGE
    assert info["Config"]["WorkingDir"] == shown["WorkingDir"]
    assert set(shown["Labels"].items()) <= set(info["Config"]["Labels"].items())
    assert f"TOKEN={secret}" in info["Config"]["Env"]

    def mounts(binds: list[str]) -> set[tuple[str, str]]:  # podman adds options (rbind, ...)
        return {(b.split(":")[0], b.split(":")[1]) for b in binds}

    assert mounts(shown["HostConfig"]["Binds"]) == mounts(info["HostConfig"]["Binds"])
    assert info["HostConfig"]["ShmSize"] == shown["HostConfig"]["ShmSize"] == 64 * 1024 * 1024
    assert info["HostConfig"]["NetworkMode"] == shown["HostConfig"]["NetworkMode"] == "none"
    assert report.state is JobState.SUCCEEDED
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert (await read(backend, handle)).decode().split()[0] == digest


async def test_polling_costs_one_list_call_whatever_the_number_of_containers(
    backend: DockerBackend, make_spec: MakeSpec
) -> None:
    handles = [await backend.submit(make_spec(["sleep", "20"], name=f"p{i}")) for i in range(6)]
    for h in handles:
        await wait_state(backend, h, lambda r: r.state is JobState.RUNNING, "RUNNING")

    before = dict(backend.client.calls)
    for _ in range(3):
        reports = await backend.poll(handles)
        assert {r.state for r in reports.values()} == {JobState.RUNNING}
    spent = {k: v - before.get(k, 0) for k, v in backend.client.calls.items()}
    assert {k: v for k, v in spent.items() if v} == {"list": 3}

    for h in handles:
        await backend.cancel(h)
    before = dict(backend.client.calls)
    reports = await backend.poll(handles)
    assert {r.state for r in reports.values()} == {JobState.CANCELLED}
    assert backend.client.calls == before, "ended jobs cost no engine call"


async def test_an_engine_refresh_of_many_docker_jobs_is_one_list_call(
    docker_up: None, tmp_path: Path
) -> None:
    """Through the engine's monitor: 6 live containers, one refresh, one engine call."""
    from core.engine import registry
    from core.engine.engine import Engine, Plan
    from core.store import Store

    engine = Engine(Store(tmp_path / "home"))
    ex = profile()
    plan = Plan("many")
    for i in range(6):
        plan.add(run.Script(inline="sleep 30", entrypoint="sh"), executor=ex, name=f"j{i}")
    record = await engine.launch(plan)
    backend = registry.get_backend(ex)
    assert isinstance(backend, DockerBackend)
    try:
        deadline = time.monotonic() + TIMEOUT
        while {j.state for j in engine.store.load(record.id).jobs} != {JobState.RUNNING}:
            assert time.monotonic() < deadline, engine.store.load(record.id).jobs
            await engine.refresh([record.id])
            await asyncio.sleep(0.1)

        before = dict(backend.client.calls)
        await engine.refresh([record.id])
        spent = {k: v - before.get(k, 0) for k, v in backend.client.calls.items()}
        assert {k: v for k, v in spent.items() if v} == {"list": 1}
    finally:
        await engine.cancel(record.id)
    assert {j.state for j in engine.store.load(record.id).jobs} == {JobState.CANCELLED}
    kept = engine.store.job_dir(record.id, "j0") / "logs" / "stdout.log"
    assert kept.is_file(), "the store keeps the logs of a cancelled container"


async def test_a_held_job_never_runs_until_released_and_an_adopted_one_is_cancelled(
    backend: DockerBackend, make_spec: MakeSpec
) -> None:
    """The engine submits held and releases once the handle is recorded; a launcher that died
    in between leaves a created container, which the adopter finds and cancels."""
    spec = make_spec(["sh", "-c", "echo ran"], held=True)
    handle = await backend.submit(spec)
    await asyncio.sleep(0.5)
    report = (await backend.poll([handle]))[handle]
    assert report.state is JobState.SUBMITTED and "starts once" in (report.reason or ""), report
    assert [r["State"] for r in await ours(backend, spec.run_tag)] == ["created"]

    adopter = DockerBackend.from_profile(profile())  # the next process's monitor
    try:
        assert await adopter.find(spec.run_tag, spec.job_dir) == handle
        await adopter.cancel(handle)
        report = (await adopter.poll([handle]))[handle]
    finally:
        await adopter.close()
    assert report.state is JobState.CANCELLED and report.reason == "cancelled before it started"
    assert await read(backend, handle) == b""
    assert await ours(backend, spec.run_tag) == []

    released = await backend.submit(make_spec(["sh", "-c", "echo ran"], held=True))
    await backend.release(released)
    assert (await terminal(backend, released)).state is JobState.SUCCEEDED
    assert await read(backend, released) == b"ran\n"


async def test_a_partial_runs_in_any_image_with_python(docker_up: None, tmp_path: Path) -> None:
    """The runner needs only Python and ``core`` (mounted read-only): a Partial of an
    importable function runs in localhost/python:ci, which has no nemorun-tui installed."""
    import pprint

    from ci_services import PYTHON_IMAGE

    home = tmp_path / "home"
    ex = run.DockerExecutor(container_image=PYTHON_IMAGE, base_url=docker_url(), pull="never")

    def launch() -> tuple[JobState, str, str]:
        with run.Experiment("partial-in-docker", home=home) as exp:
            exp.add(run.Partial(pprint.pprint, {"from": "a Partial"}), name="pp", executor=ex)
            record = exp.run()
            return record.state, exp.logs("pp"), exp.logs("pp", stream="stderr")

    state, out, err = await asyncio.to_thread(launch)

    assert state is JobState.SUCCEEDED, err
    assert out == "{'from': 'a Partial'}\n"


async def test_a_retry_after_a_crash_between_create_and_start_starts_that_container(
    backend: DockerBackend, make_spec: MakeSpec
) -> None:
    """The first attempt created the container and died before starting it (simulated by a
    held submit nobody released); the retry starts that one, and makes no second."""
    spec = make_spec(["sh", "-c", "echo once"], held=True)
    first = await backend.submit(spec)

    retry = DockerBackend.from_profile(profile())
    try:
        again = await retry.submit(replace(spec, held=False))
        report = await terminal(retry, again)
    finally:
        await retry.close()
    assert again == first
    assert report.state is JobState.SUCCEEDED
    assert await read(backend, first) == b"once\n"


async def test_a_damaged_job_file_makes_that_job_unknown_and_spares_the_others(
    backend: DockerBackend, make_spec: MakeSpec
) -> None:
    good_spec = make_spec(["sleep", "20"], name="good")
    bad_spec = make_spec(["sleep", "20"], name="bad")
    good, bad = await backend.submit(good_spec), await backend.submit(bad_spec)
    await wait_state(backend, good, lambda r: r.state is JobState.RUNNING, "RUNNING")
    (Path(bad_spec.job_dir) / rq.STATE_DIR / "container.json").write_bytes(b"\x00{not json")

    fresh = DockerBackend.from_profile(profile())
    try:
        reports = await fresh.poll([good, bad])
    finally:
        await fresh.close()

    assert reports[good].state is JobState.RUNNING
    assert reports[bad].state is JobState.UNKNOWN
    assert "damaged docker job file" in (reports[bad].reason or "")
    await backend.cancel(good)


async def test_wait_changed_wakes_when_the_container_ends_not_at_the_timeout(
    backend: DockerBackend, make_spec: MakeSpec
) -> None:
    handle = await backend.submit(make_spec(["sleep", "1"]))
    await wait_state(backend, handle, lambda r: r.state is JobState.RUNNING, "RUNNING")

    started = time.monotonic()
    while (await backend.poll([handle]))[handle].state is JobState.RUNNING:
        await backend.wait_changed([handle], timeout=20)
        assert time.monotonic() - started < 10, "wait_changed slept through the job's end"
    took = time.monotonic() - started

    assert (await backend.poll([handle]))[handle].state is JobState.SUCCEEDED
    assert took < 5, took
    quick = time.monotonic()
    await backend.wait_changed([handle], timeout=20)  # ended: returns at once
    assert time.monotonic() - quick < 1


# --------------------------------------------------------------------------- launchers


async def test_a_launcher_whose_package_the_image_lacks_is_refused_before_any_container(
    backend: DockerBackend, make_spec: MakeSpec
) -> None:
    from ci_services import PYTHON_IMAGE

    ex = profile(container_image=PYTHON_IMAGE, launcher="torchrun", ntasks_per_node=2)
    job = make_spec(["python3", "-c", "print(1)"], "no-torch", executor=ex)
    dry = await backend.dryrun(job)  # the launch line, as a shell would run it
    assert dry.artifacts["command"] == (
        "python3 -m torch.distributed.run --nnodes=1 --nproc-per-node=2 --rdzv-backend=c10d "
        f"--rdzv-endpoint=127.0.0.1:0 --rdzv-id={job.run_tag} --max-restarts=0 --tee=3 "
        "--no-python python3 -c 'print(1)'"
    )
    with pytest.raises(BackendError, match="torchrun needs the Python package `torch`") as err:
        await backend.submit(job)
    assert PYTHON_IMAGE in str(err.value)
    assert await ours(backend, job.run_tag) == []
    checks = await backend.client.call(
        "list", lambda api: api.containers(all=True, filters={"label": [rq.CHECK_LABEL]})
    )
    assert checks == []  # the short-lived check container is gone too


async def test_torchrun_runs_two_gloo_ranks_in_one_container(
    backend: DockerBackend, make_spec: MakeSpec, tmp_path: Path
) -> None:
    """A real 2-rank all_reduce under torchrun in the container. The CI image has Python but
    no torch, so this machine's torch is lent to it read-only: the test venv's site-packages
    and the system's shared libraries (the image's python and libraries are copies of this
    machine's, so they match)."""
    import sysconfig

    from ci_services import PYTHON_IMAGE

    try:
        import torch  # noqa: F401
    except ImportError:
        require_service(False, "torch is not installed (the `distributed` extra)")
    purelib = sysconfig.get_paths()["purelib"]
    libdir = "/usr/lib/x86_64-linux-gnu"
    if sys.version_info[:2] != (3, 11) or not os.path.isdir(libdir):
        require_service(False, f"needs this machine's Python 3.11 and {libdir} to lend torch")
    script = tmp_path / "all_reduce.py"
    from rank_scripts import ALL_REDUCE

    script.write_text(ALL_REDUCE)
    ex = profile(
        container_image=PYTHON_IMAGE,
        launcher="torchrun",
        ntasks_per_node=2,
        volumes=[f"{purelib}:/opt/site:ro", f"{libdir}:{libdir}:ro", f"{script}:/all_reduce.py:ro"],
        env_vars={"PYTHONPATH": "/opt/site"},
    )
    job = make_spec(["python3", "/all_reduce.py"], "gloo", executor=ex)
    handle = await backend.submit(job)
    report = await wait_state(backend, handle, lambda r: r.state.is_terminal)
    out = (await read(backend, handle)).decode()
    assert report.state is JobState.SUCCEEDED, (
        report,
        out,
        await read(backend, handle, stream="stderr"),
    )
    assert sorted(line for line in out.splitlines() if "sum" in line) == [
        "[rank0]:rank=0 world=2 sum=3 env_rank=0",
        "[rank1]:rank=1 world=2 sum=3 env_rank=1",
    ]
