"""The create request a Docker job becomes (pure: no engine), and the words for failures.

The engine-side effects of these requests are tested against podman in test_docker.py; here
are the rules that need no engine: what is mounted where, what reaches the environment, and
which options are refused before any call.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from backends.docker import request as rq
from backends.docker.backend import _failure_reason, _parse_time
from core.engine.executors_docker import DockerExecutor
from core.engine.protocol import BackendError, Handle, JobSpec


def spec(tmp_path: Path, argv: list[str], **kw: Any) -> JobSpec:
    ex = kw.pop("executor", None) or DockerExecutor(container_image="img", base_url="unix:///x")
    return JobSpec(
        experiment_id="e1",
        job_name="j",
        run_tag="nrt-e1-j",
        argv=argv,
        executor=ex,
        job_dir=str(tmp_path / "job"),
        workdir=str(tmp_path),
        **kw,
    )


def test_partial_runs_the_images_python_on_the_mounted_task_and_core(tmp_path: Path) -> None:
    task = str(tmp_path / "job" / "task.json")
    job = spec(tmp_path, [sys.executable, "-m", "core.runner", task], task_file=task)
    req = rq.build(job.executor, job)  # type: ignore[arg-type]
    body = req.body
    assert body["Cmd"] == ["python3", "-m", "core.runner", rq.CONTAINER_TASK_FILE]
    binds = body["HostConfig"]["Binds"]
    assert f"{task}:{rq.CONTAINER_TASK_FILE}:ro" in binds
    assert f"{rq.core_package_dir()}:{rq.CONTAINER_LIB_DIR}/core:ro" in binds
    assert "PYTHONPATH=/nemorun/lib" in body["Env"]
    assert body["WorkingDir"] == rq.CONTAINER_JOB_DIR


def test_env_labels_and_mounts_of_a_script(tmp_path: Path) -> None:
    ex = DockerExecutor(
        container_image="img", base_url="unix:///x", env_vars={"A": "1"}, volumes=["/d:/data:ro"]
    )
    dep = Handle("local", "local", "/somewhere/job")
    job = spec(
        tmp_path, ["sh", "-c", "echo $A"], executor=ex, secret_env={"S": "v"}, dependencies=[dep]
    )
    req = rq.build(ex, job)
    env = req.body["Env"]
    expected = ["A=1", "NEMORUN_EXPERIMENT_ID=e1", "NEMORUN_JOB_NAME=j", "S=v",
                "NEMORUN_RUN_TAG=nrt-e1-j", f"NEMORUN_JOB_DIR={rq.CONTAINER_JOB_DIR}"]  # fmt: skip
    for item in expected:
        assert item in env
    assert not any(e.startswith("PYTHONPATH=") for e in env), "only Partials get the runner"
    assert "S=***" in req.shown()["Env"] and "S=v" not in req.shown()["Env"]
    labels = req.body["Labels"]
    assert labels["nemorun.run_tag"] == "nrt-e1-j"
    assert labels["nemorun.job_dir"] == str(tmp_path / "job")
    assert '"job_id": "/somewhere/job"' in labels["nemorun.after"]
    assert req.body["HostConfig"]["Binds"] == [
        f"{tmp_path}/job/container/out:{rq.CONTAINER_JOB_DIR}:rw",
        "/d:/data:ro",
    ]
    assert req.body["HostConfig"]["NetworkMode"] == "none"
    assert req.body["HostConfig"]["Init"] is True
    assert req.name == rq.container_name("nrt-e1-j", str(tmp_path / "job"))
    assert req.name != rq.container_name("nrt-e1-j", str(tmp_path / "other-store"))


def test_gpus_become_a_device_request(tmp_path: Path) -> None:
    ex = DockerExecutor(container_image="img", base_url="unix:///x", num_gpus=-1)
    body = rq.build(ex, spec(tmp_path, ["true"], executor=ex)).body
    assert body["HostConfig"]["DeviceRequests"] == [
        {"Driver": "", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"env": {"BAD-NAME": "x"}}, "invalid environment variable name"),
        ({"env": {"X": "a\0b"}}, "NUL"),
        ({"argv": []}, "no command"),
    ],
)
def test_bad_job_input_is_refused(tmp_path: Path, kw: dict[str, Any], message: str) -> None:
    argv = kw.pop("argv", ["true"])
    job = spec(tmp_path, argv, **kw)
    with pytest.raises(BackendError, match=message):
        rq.build(job.executor, job)  # type: ignore[arg-type]


def test_failure_reasons_are_words() -> None:
    oom = {"State": {"OOMKilled": True, "ExitCode": 137}, "HostConfig": {"Memory": 16 << 20}}
    assert _failure_reason(oom, 137).startswith("out of memory")
    assert "16 MiB" in _failure_reason(oom, 137)
    killed = {"State": {"ExitCode": 137}, "HostConfig": {"Memory": 0}}
    assert _failure_reason(killed, 137) == "killed by SIGKILL (exit code 137)"
    missing = {"State": {}, "HostConfig": {}, "Config": {"Cmd": ["bash", "-c"], "Image": "bb"}}
    assert "entrypoint='sh'" in _failure_reason(missing, 127)
    assert (
        _failure_reason({"State": {}}, 3, "Traceback: boom")
        == "exit code 3; stderr: Traceback: boom"
    )


def test_engine_times_parse_with_nanoseconds() -> None:
    assert _parse_time("2026-12-01T21:11:12.657541598Z") == pytest.approx(1796159472.657541)
    assert _parse_time("0001-01-01T00:00:00Z") is None
    assert _parse_time("") is None and _parse_time(None) is None


# --------------------------------------------------------------------------- launchers


def test_a_launcher_runs_ntasks_ranks_on_the_container_loopback(tmp_path: Path) -> None:
    ex = DockerExecutor(
        container_image="img", base_url="unix:///x", launcher="torchrun", ntasks_per_node=3
    )
    task = str(tmp_path / "job" / "task.json")
    job = spec(tmp_path, [sys.executable, "-m", "core.runner", task], executor=ex, task_file=task)
    body = rq.build(ex, job).body
    # The image's interpreter runs torchrun, which runs the runner module as every rank.
    assert body["Cmd"] == [
        "python3", "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=3",
        "--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:0", "--rdzv-id=nrt-e1-j",
        "--max-restarts=0", "--tee=3", "-m", "core.runner", rq.CONTAINER_TASK_FILE,
    ]  # fmt: skip
    assert "TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE=[rank${rank}]:" in body["Env"]


def test_a_launcher_object_keeps_its_own_numbers_and_port(tmp_path: Path) -> None:
    import nemorun_tui as run

    ex = DockerExecutor(
        container_image="img",
        base_url="unix:///x",
        launcher=run.Torchrun(
            nproc_per_node=2, rdzv_port=29400, extra_args=["--monitor-interval=1"]
        ),
    )
    body = rq.build(ex, spec(tmp_path, ["bash", "train.sh"], executor=ex)).body
    cmd = body["Cmd"]
    assert "--nproc-per-node=2" in cmd and "--rdzv-endpoint=127.0.0.1:29400" in cmd
    # A command that is not the interpreter runs as is, after every launcher flag.
    assert cmd[-5:] == ["--tee=3", "--monitor-interval=1", "--no-python", "bash", "train.sh"]


def test_several_tasks_without_a_launcher_are_refused(tmp_path: Path) -> None:
    ex = DockerExecutor(container_image="img", base_url="unix:///x", ntasks_per_node=2)
    with pytest.raises(BackendError, match="ntasks_per_node=2 needs a launcher"):
        rq.build(ex, spec(tmp_path, ["true"], executor=ex))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"launcher": "mpirun"}, "unknown launcher 'mpirun'"),
        ({"launcher": {"kind": "torchrun", "nprocs": 2}}, "has no field"),
        ({"ntasks_per_node": 0}, "ntasks_per_node must be an integer >= 1"),
    ],
)
def test_bad_launcher_fields_fail_when_the_profile_is_made(
    kw: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DockerExecutor(container_image="img", base_url="unix:///x", **kw)


def test_the_package_check_runs_in_the_jobs_image_but_is_no_job_container(tmp_path: Path) -> None:
    ex = DockerExecutor(
        container_image="img", base_url="unix:///x", launcher="torchrun", volumes=["/sp:/sp:ro"]
    )
    body = rq.build(ex, spec(tmp_path, ["python3", "t.py"], executor=ex)).body
    check = rq.package_check(body, ["python3", "-c", "pass"])
    assert check["Cmd"] == ["python3", "-c", "pass"]
    assert check["Labels"] == {rq.CHECK_LABEL: "1"}  # not MANAGED_LABEL: never listed as a job
    assert check["Image"] == "img" and check["Env"] == body["Env"]
    assert check["HostConfig"]["Binds"] == body["HostConfig"]["Binds"]
