"""The Ray backend against the real CI head (``.ci/services/ray.sh``), plus its pure parts.

The protocol contract suite runs on the same head (tests/contract, target ``ray``); these are
the Ray-specific promises: Ray's message as the reason, STOPPED shown as CANCELLED, logs of a
finished job from a fresh backend, a followed log that survives a cut connection without
repeating a byte, one list call per poll, one submission per run tag, code shipped once per
content hash as the job's working_dir.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shlex
import tarfile
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
from ray_support import CuttableProxy, head_address, make_spec, ray_backend, wait_state

import nemorun_tui as run
from backends.ray import RayBackend, submission
from backends.ray.backend import report_from_info
from core.engine import registry
from core.engine.executors import profile_class, profile_from_dict
from core.engine.executors_ray import RayExecutor, SlurmRayExecutor, normalize_address
from core.engine.protocol import BackendError, Handle
from core.engine.states import JobState
from core.settings import load_settings

PY = "python"  # the head's PATH has the Ray venv first (.ci/services/ray.sh)


# --------------------------------------------------------------------------- pure parts


def test_submission_id_is_stable_per_run_and_distinct_across_runs() -> None:
    a = submission.submission_id("nrt-exp1-train", "/store/exp1/train")
    assert a == submission.submission_id("nrt-exp1-train", "/store/exp1/train")
    assert a.startswith("nrt-exp1-train-")
    assert a != submission.submission_id("nrt-exp1-train", "/other/store/exp1/train")
    assert a != submission.submission_id("nrt-exp2-train", "/store/exp1/train")
    odd = submission.submission_id("a b/../c;rm -rf", "/d")
    assert set(odd) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def test_states_map_and_stopped_is_cancelled_with_rays_message() -> None:
    info = {
        "status": "FAILED",
        "driver_exit_code": 3,
        "message": "Job entrypoint command failed with exit code 3, last available logs "
        "(truncated to 20,000 chars):\nsecret log line\n",
        "start_time": 1_700_000_000_000,
        "end_time": 1_700_000_005_000,
    }
    report = report_from_info(info, {}, 1_700_000_010.0)
    assert report.state is JobState.FAILED and report.exit_code == 3
    assert report.reason == "Job entrypoint command failed with exit code 3"
    assert (report.started_at, report.ended_at) == (1_700_000_000.0, 1_700_000_005.0)
    stopped = report_from_info({"status": "STOPPED", "message": "Job was stopped."}, {}, 0.0)
    assert stopped.state is JobState.CANCELLED and stopped.reason == "Job was stopped."
    odd = report_from_info({"status": "NEW_STATE"}, {}, 0.0)
    assert odd.state is JobState.UNKNOWN and "NEW_STATE" in (odd.reason or "")


def test_profile_round_trips_and_resolves_by_name() -> None:
    ex = RayExecutor(
        address="head:8265",
        runtime_env={"pip": ["requests"], "env_vars": {"A": "1"}},
        entrypoint_num_cpus=1,
        entrypoint_resources={"accel": 1},
        metadata={"team": "x"},
    )
    assert ex.address == "http://head:8265" and ex.target() == "http://head:8265"
    assert profile_from_dict(ex.to_dict()) == ex
    assert profile_class("ray") is RayExecutor and profile_class("slurm_ray") is SlurmRayExecutor
    assert run.RayExecutor is RayExecutor and run.SlurmRayExecutor is SlurmRayExecutor
    assert registry.backend_class("ray") is RayBackend
    with pytest.raises(ValueError, match="Ray Client"):
        normalize_address("ray://head:10001")


async def test_dryrun_shows_the_request_but_never_a_secret(tmp_path: Path) -> None:
    ex = RayExecutor(address="http://127.0.0.1:1", entrypoint_num_gpus=1, metadata={"k": "v"})
    backend = RayBackend(ex)
    spec = make_spec(ex, tmp_path, ["echo", "$(x)"], secret_env={"TOKEN": "hunter2-s3cret"})

    dry = await backend.dryrun(spec)

    body = json.loads(dry.artifacts["request.json"])
    assert "hunter2-s3cret" not in dry.summary + dry.artifacts["request.json"]
    assert body["submission_id"] == submission.submission_id(spec.run_tag, spec.job_dir)
    assert body["entrypoint_num_gpus"] == 1 and body["metadata"]["k"] == "v"
    assert body["metadata"][submission.META_TAG] == spec.run_tag
    assert "TOKEN" in dry.summary


def test_job_env_is_verbatim_and_job_dir_is_per_job_under_the_cluster_root(
    tmp_path: Path,
) -> None:
    ex = RayExecutor(job_dir="/scratch/nemorun", env_vars={"N": 3})  # type: ignore[dict-item]
    job = make_spec(ex, tmp_path, ["true"], name="train", env={"A": "$HOME"})

    sub = submission.build(ex, job)

    spec = json.loads(shlex.split(sub.body["entrypoint"])[-1])
    assert spec["job_dir"] == f"/scratch/nemorun/{job.experiment_id}/train"
    assert spec["env"]["NEMORUN_JOB_DIR"] == spec["job_dir"]
    assert spec["env"]["A"] == "$HOME" and spec["env"]["N"] == "3"
    assert "env_vars" not in sub.body["runtime_env"]  # Ray would expand $HOME there


def test_config_toml_profiles_for_both_ray_backends(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[executors.ray]\nbackend = "ray"\naddress = "http://head:8265"\n'
        'runtime_env = { pip = ["numpy"], env_vars = { X = "1" } }\n'
        "entrypoint_num_cpus = 2\nentrypoint_resources = { accel = 1 }\n"
        'metadata = { team = "ml" }\n'
        '[executors.rs]\nbackend = "slurm_ray"\nray_python = "/v/bin/python"\nnodes = 2\n'
        'partition = "gpu"\n'
    )
    settings = load_settings(path)

    ray = settings.profile("ray")
    assert isinstance(ray, RayExecutor)
    assert ray.runtime_env == {"pip": ["numpy"], "env_vars": {"X": "1"}}
    assert (ray.entrypoint_num_cpus, ray.entrypoint_resources) == (2, {"accel": 1})
    rs = settings.profile("rs")
    assert isinstance(rs, SlurmRayExecutor) and (rs.nodes, rs.partition) == (2, "gpu")
    assert registry.backend_class(rs.backend).name == "slurm_ray"


# --------------------------------------------------------------------------- real head


pytestmark_real = pytest.mark.ray  # needs the CI head


@pytestmark_real
async def test_a_failing_job_carries_rays_message_and_exit_code(tmp_path: Path) -> None:
    async with ray_backend() as backend:
        ex = backend.executor
        handle = await backend.submit(
            make_spec(ex, tmp_path, ["bash", "-c", "echo out; echo boom >&2; exit 7"])
        )
        report = await wait_state(backend, handle, {JobState.FAILED, JobState.SUCCEEDED})

        assert report.state is JobState.FAILED and report.exit_code == 7
        assert report.reason == "Job entrypoint command failed with exit code 7"
        assert report.source == "ray jobs api"
        assert report.started_at and report.ended_at and report.ended_at >= report.started_at
        assert b"".join([c async for c in backend.logs(handle, stream="stderr")]) == b"boom\n"


@pytestmark_real
async def test_a_stopped_job_is_cancelled_and_stops_running(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    async with ray_backend() as backend:
        script = f"echo started; sleep 3; echo late > {marker}; sleep 60"
        handle = await backend.submit(make_spec(backend.executor, tmp_path, ["bash", "-c", script]))
        await wait_state(backend, handle, {JobState.RUNNING})

        await backend.cancel(handle)
        report = await wait_state(backend, handle, {JobState.CANCELLED, JobState.FAILED})

        assert report.state is JobState.CANCELLED, report
        assert report.reason and "stop" in report.reason.lower()
        await asyncio.sleep(3.5)
        assert not marker.exists(), "the stopped job kept running"
        await backend.cancel(handle)  # cancelling an ended job changes nothing
        assert (await backend.poll([handle]))[handle].state is JobState.CANCELLED


@pytestmark_real
async def test_logs_of_a_finished_job_from_a_fresh_backend(tmp_path: Path) -> None:
    lines = b"".join(b"line %d\n" % i for i in range(2000))
    async with ray_backend() as backend:
        code = "import sys\nfor i in range(2000): print(f'line {i}')\nprint('e', file=sys.stderr)"
        handle = await backend.submit(make_spec(backend.executor, tmp_path, [PY, "-c", code]))
        await wait_state(backend, handle, {JobState.SUCCEEDED})

    async with ray_backend() as fresh:  # another process would start from nothing but the handle
        assert b"".join([c async for c in fresh.logs(handle)]) == lines
        assert b"".join([c async for c in fresh.logs(handle, offset=7)]) == lines[7:]
        assert b"".join([c async for c in fresh.logs(handle, stream="stderr")]) == b"e\n"
        # Following an ended job returns what it wrote, and ends.
        async with asyncio.timeout(30):
            followed = b"".join([c async for c in fresh.logs(handle, follow=True, offset=100)])
        assert followed == lines[100:]


@pytestmark_real
async def test_a_dropped_log_stream_resumes_without_repeating_bytes(tmp_path: Path) -> None:
    head = urlparse(head_address())
    proxy = CuttableProxy(head.hostname or "127.0.0.1", head.port or 8265)
    address = await proxy.start()
    code = "import time\nfor i in range(40):\n    print(f'tick {i}', flush=True); time.sleep(0.1)"
    expected = b"".join(b"tick %d\n" % i for i in range(40))
    try:
        async with ray_backend(address) as backend:
            handle = await backend.submit(make_spec(backend.executor, tmp_path, [PY, "-c", code]))
            chunks: list[bytes] = []
            cuts = 0
            async with asyncio.timeout(60):
                async for chunk in backend.logs(handle, follow=True):
                    chunks.append(chunk)
                    if cuts == 0 and b"tick 5\n" in b"".join(chunks):
                        cuts = proxy.cut()

            assert cuts >= 1, "the stream was never cut"
            assert b"".join(chunks) == expected
            assert proxy.stream_requests >= 2, "the follower never reconnected"
            assert (await backend.poll([handle]))[handle].state is JobState.SUCCEEDED
    finally:
        await proxy.close()


@pytestmark_real
async def test_a_retried_submit_never_makes_a_second_job(tmp_path: Path) -> None:
    async with ray_backend() as backend:
        spec = make_spec(backend.executor, tmp_path, ["bash", "-c", "echo once"])
        first = await backend.submit(spec)
        again = await backend.submit(spec)  # e.g. the answer to the first POST was lost
        found = await backend.find(spec.run_tag, spec.job_dir)

        assert first == again == found
        jobs = await backend.client.list()
        assert [j["submission_id"] for j in jobs].count(first.job_id) == 1
        await wait_state(backend, first, {JobState.SUCCEEDED})
        assert b"".join([c async for c in backend.logs(first)]) == b"once\n"
        # A relaunch is a new run (new tag): a new job, which runs.
        relaunch = make_spec(backend.executor, tmp_path, ["bash", "-c", "echo twice"])
        second = await backend.submit(relaunch)
        assert second != first
        await wait_state(backend, second, {JobState.SUCCEEDED})
        assert b"".join([c async for c in backend.logs(second)]) == b"twice\n"


@pytestmark_real
async def test_polling_many_jobs_is_one_list_call(tmp_path: Path) -> None:
    async with ray_backend() as backend:
        handles = [
            await backend.submit(make_spec(backend.executor, tmp_path, ["true"], name=f"p{i}"))
            for i in range(5)
        ]
        unknown = Handle("ray", backend.target, "nrt-never-submitted-0")
        before = backend.client.calls.get("list", 0)
        reports = await backend.poll([*handles, unknown])

        assert backend.client.calls.get("list", 0) == before + 1
        assert reports[unknown].state is JobState.UNKNOWN
        assert all(reports[h].state is not JobState.UNKNOWN for h in handles)
        # Concurrent pollers share one call.
        before = backend.client.calls["list"]
        await asyncio.gather(*(backend.poll(handles) for _ in range(5)))
        assert backend.client.calls["list"] - before < 5
        for h in handles:
            await wait_state(backend, h, {JobState.SUCCEEDED})


def _archive(tmp_path: Path) -> tuple[Path, str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"print('from the package')\n"
        info = tarfile.TarInfo("pkg/hello.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        nonce = uuid.uuid4().hex.encode()  # a package this cluster has never seen
        info = tarfile.TarInfo("nonce.txt")
        info.size = len(nonce)
        tar.addfile(info, io.BytesIO(nonce))
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    path = tmp_path / f"{digest}.tar.gz"
    path.write_bytes(buf.getvalue())
    return path, digest


@pytestmark_real
async def test_packaged_code_is_the_working_dir_and_uploaded_once(tmp_path: Path) -> None:
    archive, digest = _archive(tmp_path)
    async with ray_backend(runtime_env={"env_vars": {"FROM_PROFILE": "yes"}}) as backend:
        code = (
            "import os, runpy; runpy.run_path('pkg/hello.py'); "
            "print(*[os.environ[k] for k in ('NEMORUN_JOB_NAME', 'NEMORUN_EXPERIMENT_ID', "
            "'NEMORUN_RUN_TAG', 'NEMORUN_JOB_DIR', 'FROM_PROFILE')], sep='|'); "
            "print(os.path.isdir(os.environ['NEMORUN_JOB_DIR']))"
        )
        handles = []
        for name in ("a", "b"):
            spec = make_spec(
                backend.executor,
                tmp_path,
                [PY, "-c", code],
                name=name,
                archive=str(archive),
                archive_sha256=digest,
            )
            handles.append((await backend.submit(spec), spec))

        for handle, spec in handles:
            report = await wait_state(backend, handle, {JobState.SUCCEEDED, JobState.FAILED})
            assert report.state is JobState.SUCCEEDED, report
            out = b"".join([c async for c in backend.logs(handle)]).decode().splitlines()
            assert out == [
                "from the package",
                f"{spec.job_name}|{spec.experiment_id}|{spec.run_tag}|{spec.job_dir}|yes",
                "True",
            ]
        # Content-addressed: the second job found the package already on the cluster.
        assert backend.client.calls.get("package_put", 0) == 1
        assert backend.client.calls.get("package_get", 0) == 2


@pytestmark_real
async def test_unknown_job_cannot_be_cancelled_or_read(tmp_path: Path) -> None:
    async with ray_backend() as backend:
        unknown = Handle("ray", backend.target, "nrt-never-submitted-1")
        with pytest.raises(BackendError, match="no such Ray job"):
            await backend.cancel(unknown)
        with pytest.raises(BackendError, match="no such Ray job"):
            _ = [c async for c in backend.logs(unknown)]
