"""Launchers on the Kubernetes executor: the profile field, the exact container command, the
failure reason when the image lacks torch, and real gloo ranks on the EMULATED cluster
(kmock + tests/kube_controller.py: every pod is a process on this machine, see its docstring).

Tests that start ranks are bounded (``asyncio.wait_for``) and start a fixed number of them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from rank_scripts import ALL_REDUCE
from services import require_service

from core.config import Script
from core.engine import Engine, Plan, executors, registry
from core.engine.executor_overrides import ExecutorOverrideError, apply_executor_overrides
from core.engine.executors_kubernetes import KubernetesExecutor
from core.engine.protocol import BackendError, Handle, JobSpec
from core.engine.states import JobState
from core.launchers import (
    RANK_PREFIX_ENV,
    FaultTolerance,
    Torchrun,
    free_port,
    launch_argv,
)
from core.results.triage import classify, triage
from core.settings import SettingsError, build_profile
from core.store import Store

pytest.importorskip("kubernetes")
kube_controller = pytest.importorskip("kube_controller")

from kube_support import IMAGE, PY, backend_for, emulated_cluster, executor  # noqa: E402

from backends.kubernetes import KubernetesBackend, manifest, status  # noqa: E402

BOUND = 120.0


def need_torch() -> None:
    require_service(
        importlib.util.find_spec("torch") is not None,
        "torch is not installed (pip install torch==2.13.0: the CPU wheel)",
    )


def spec(ex: KubernetesExecutor, argv: list[str], **kw: Any) -> JobSpec:
    base: dict[str, Any] = dict(
        experiment_id="exp-k8s-launch",
        job_name="train",
        run_tag=f"run-{time.time_ns()}",
        argv=argv,
        executor=ex,
        job_dir="/unused/job",
        workdir="/unused",
    )
    base.update(kw)
    return JobSpec(**base)


def container(built: manifest.Manifests) -> dict[str, Any]:
    job = built.job
    if job["kind"] == "PyTorchJob":
        return job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    return job["spec"]["template"]["spec"]["containers"][0]


def env_of(built: manifest.Manifests) -> dict[str, str]:
    return {e["name"]: e.get("value", "<ref>") for e in container(built)["env"]}


# --------------------------------------------------------------------------- profile


def test_launcher_comes_from_config_toml_python_and_overrides() -> None:
    import nemorun_tui as run

    named = build_profile("k8s", {"backend": "kubernetes", "image": "img", "launcher": "torchrun"})
    table = build_profile(
        "k8s-ft",
        {"backend": "kubernetes", "image": "img", "launcher": {"kind": "ft", "max_restarts": 2}},
    )
    api = run.KubernetesExecutor(image="img", launcher=run.Torchrun(nproc_per_node=4))
    plain = KubernetesExecutor(image="img")
    overridden = apply_executor_overrides(plain, ["executor.launcher=torchrun"])

    assert isinstance(named, KubernetesExecutor) and type(named.launcher) is Torchrun
    assert isinstance(table, KubernetesExecutor) and isinstance(table.launcher, FaultTolerance)
    assert table.launcher.max_restarts == 2
    assert api.launcher == Torchrun(nproc_per_node=4)
    assert plain.launcher is None and type(overridden.launcher) is Torchrun
    assert executors.profile_from_dict(api.to_dict()) == api  # stored and rebuilt
    off = apply_executor_overrides(overridden, ["executor.launcher=none"])
    assert off.launcher is None


def test_a_bad_launcher_is_refused_at_load_time() -> None:
    with pytest.raises(ValueError, match="unknown launcher 'mpirun'"):
        KubernetesExecutor(image="img", launcher="mpirun")
    with pytest.raises(SettingsError, match="unknown launcher"):
        build_profile("k8s", {"backend": "kubernetes", "image": "img", "launcher": "mpirun"})
    with pytest.raises(ValueError, match="rdzv_port must be a TCP port"):
        KubernetesExecutor(image="img", launcher={"rdzv_port": 70000})
    with pytest.raises(ExecutorOverrideError, match="unknown launcher"):
        apply_executor_overrides(KubernetesExecutor(image="img"), ["executor.launcher=mpi"])


# --------------------------------------------------------------------------- manifest


def test_one_node_runs_torchrun_on_loopback_with_the_ranks_and_the_rank_prefix() -> None:
    ex = KubernetesExecutor(
        image="img", nproc_per_node=2, launcher="torchrun", python="/opt/venv/bin/python"
    )
    job = spec(ex, [PY, "train.py", "--tag=$(HOME)", "cost=$$5"], run_tag="run-1")

    built = manifest.build(job, ex)

    assert container(built)["command"] == [
        "/opt/venv/bin/python",
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc-per-node=2",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=127.0.0.1:0",  # the store binds a free port (torchrun --standalone)
        "--rdzv-id=run-1",
        "--max-restarts=0",
        "--tee=3",
        "train.py",
        "--tag=$$(HOME)",  # the job's own words are never expanded by the kubelet
        "cost=$$$$5",
    ]
    assert built.command == container(built)["command"]
    env = env_of(built)
    # Env values are expanded by the kubelet too: its `$` reaches torchrun as one `$`.
    assert (
        kube_controller.expand(env["TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"], {})
        == (RANK_PREFIX_ENV["TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"])
    )
    assert "MASTER_ADDR" not in env and built.service is None
    assert container(built)["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert kube_controller.schema_problems(built.job) == []


def test_two_nodes_rendezvous_on_rank_zero_through_the_kubelets_expansion() -> None:
    ex = KubernetesExecutor(
        image="img", nodes=2, launcher=Torchrun(nproc_per_node=3), master_port=29411, python=PY
    )
    job = spec(ex, [PY, "-m", "pkg.train", "--out=$(NEMORUN_JOB_DIR)/x"], run_tag="run-2")

    built = manifest.build(job, ex)
    command = container(built)["command"]
    env = env_of(built)
    # What the process receives: the kubelet's expansion with the pod's env (the emulator's
    # implementation of Kubernetes' rules).
    received = [kube_controller.expand(w, env) for w in command]

    assert "--rdzv-endpoint=$(MASTER_ADDR):$(MASTER_PORT)" in command
    assert received == launch_argv(
        Torchrun(nproc_per_node=3),
        [PY, "-m", "pkg.train", "--out=$(NEMORUN_JOB_DIR)/x"],
        python=PY,
        nnodes=2,
        nproc_per_node=3,
        rdzv_endpoint=f"{built.name}-0.{built.name}.default.svc:29411",
        rdzv_id="run-2",
    )
    assert env["WORLD_SIZE"] == "6" and env["NPROC_PER_NODE"] == "3"
    assert built.service is not None
    assert kube_controller.schema_problems(built.job) == []


def test_a_named_rendezvous_port_and_the_ft_launcher_next_to_the_images_python() -> None:
    ex = KubernetesExecutor(
        image="img",
        nodes=2,
        launcher=FaultTolerance(rdzv_port=29999, rank_heartbeat_timeout=60),
        python="/opt/venv/bin/python",
    )
    command = manifest.build(spec(ex, ["bash", "run.sh"]), ex).command

    assert command[0] == "/opt/venv/bin/ft_launcher"
    assert "--rdzv-endpoint=$(MASTER_ADDR):29999" in command
    assert "--ft-rank-heartbeat-timeout=60" in command
    assert command[-3:] == ["--no-python", "bash", "run.sh"]


def test_pytorchjob_kind_uses_the_operators_master_variables() -> None:
    ex = KubernetesExecutor(
        image="img", kind="PyTorchJob", nodes=2, nproc_per_node=4, launcher="torchrun", python=PY
    )
    built = manifest.build(spec(ex, [PY, "train.py"]), ex)
    replicas = built.job["spec"]["pytorchReplicaSpecs"]
    worker = replicas["Worker"]["template"]["spec"]["containers"][0]

    assert container(built)["command"] == worker["command"] == built.command
    assert "--rdzv-endpoint=$(MASTER_ADDR):$(MASTER_PORT)" in built.command
    assert "--nnodes=2" in built.command and "--nproc-per-node=4" in built.command
    assert built.job["spec"]["nprocPerNode"] == "4"
    assert "MASTER_ADDR" not in env_of(built)  # the training operator sets it
    assert kube_controller.schema_problems(built.job) == []


def test_without_a_launcher_one_node_refuses_several_ranks_and_words_stay_literal() -> None:
    ex = KubernetesExecutor(image="img", nproc_per_node=2)
    with pytest.raises(BackendError, match="nproc_per_node=2 needs a launcher"):
        manifest.build(spec(ex, ["true"]), ex)

    plain = KubernetesExecutor(image="img")
    built = manifest.build(spec(plain, ["bash", "-c", "echo $$ $(date) ${HOME}"]), plain)
    assert built.command == ["bash", "-c", "echo $$$$ $$(date) $${HOME}"]
    assert [kube_controller.expand(w, {"date": "X"}) for w in built.command] == [
        "bash",
        "-c",
        "echo $$ $(date) ${HOME}",
    ]
    assert "TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE" not in env_of(built)
    assert "terminationMessagePolicy" not in container(built)


def test_dryrun_shows_the_exact_launch_line() -> None:
    ex = KubernetesExecutor(image="img", nproc_per_node=2, launcher="torchrun", python=PY)
    job = spec(ex, [PY, "train.py", "a b"], run_tag="run-dry")

    dry = asyncio.run(KubernetesBackend(ex).dryrun(job))

    line = (
        f"{PY} -m torch.distributed.run --nnodes=1 --nproc-per-node=2 --rdzv-backend=c10d "
        "--rdzv-endpoint=127.0.0.1:0 --rdzv-id=run-dry --max-restarts=0 --tee=3 train.py 'a b'"
    )
    assert dry.artifacts["command"] == line
    assert f"launcher torchrun in every pod: {line}" in dry.summary
    assert "- torch.distributed.run" in dry.artifacts["manifest.yaml"]


# --------------------------------------------------------------------------- failure reason


def _failed_pod(command: list[str], message: str, reason: str = "Error") -> dict[str, Any]:
    return {
        "metadata": {"name": "p-0", "annotations": {}},
        "spec": {"containers": [{"name": "main", "image": "img:7", "command": command}]},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "main",
                    "state": {"terminated": {"exitCode": 1, "reason": reason, "message": message}},
                }
            ],
        },
    }


FAILED_JOB = {
    "metadata": {"name": "j", "annotations": {}},
    "spec": {},
    "status": {
        "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"},
        ]
    },
}
NO_TORCH = (
    "/usr/bin/python3: Error while finding module specification for "
    "'torch.distributed.run' (ModuleNotFoundError: No module named 'torch')"
)


@pytest.mark.parametrize("kind", ["Job", "PyTorchJob"])
def test_a_launcher_pod_without_torch_says_the_image_needs_torch(kind: str) -> None:
    torchrun = ["python", "-m", "torch.distributed.run", "--nnodes=1", "train.py"]
    report = status.report(FAILED_JOB, [_failed_pod(torchrun, NO_TORCH)], time.time(), kind)
    plain = status.report(
        FAILED_JOB, [_failed_pod(["python", "x.py"], NO_TORCH)], time.time(), kind
    )
    ft = status.report(
        FAILED_JOB,
        [_failed_pod(["ft_launcher", "--nnodes=1"], "exec: ft_launcher: not found", "StartError")],
        time.time(),
        kind,
    )

    assert report.state is JobState.FAILED
    assert report.reason is not None
    assert report.reason.startswith(
        "torchrun needs torch in the image (img:7); its python cannot import `torch`"
    )
    assert plain.reason == "BackoffLimitExceeded"  # not a launcher: no guess about it
    assert ft.reason is not None and ft.reason.startswith(
        "the fault-tolerant launcher (ft) needs nvidia-resiliency-ext in the image (img:7)"
    )
    cause = classify(
        JobState.FAILED,
        exit_code=1,
        reason=report.reason,
        tails={"stderr": (0, NO_TORCH.encode() + b"\n")},
    )
    assert cause is not None and cause.kind == "missing-module"
    assert cause.summary == report.reason


# --------------------------------------------------------------------------- emulated runs


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    with emulated_cluster(tmp_path / "kube") as c:
        yield c


async def wait_terminal(backend: KubernetesBackend, handle: Handle) -> Any:
    async def loop() -> Any:
        while True:
            report = (await backend.poll([handle]))[handle]
            if report.state.is_terminal:
                return report
            await asyncio.sleep(0.1)

    return await asyncio.wait_for(loop(), BOUND)


async def test_two_pods_one_rank_each_all_reduce_over_gloo(cluster: Any, tmp_path: Path) -> None:
    """2 nodes x 1 rank: an Indexed Job, torchrun in each pod, rendezvous at rank 0's pod."""
    need_torch()
    script = tmp_path / "allreduce.py"
    script.write_text(ALL_REDUCE)
    ex = executor(cluster, nodes=2, launcher="torchrun", master_port=free_port())
    started = time.monotonic()
    async with backend_for(ex) as backend:
        handle = await backend.submit(spec(ex, [PY, str(script)], job_name="ddp2"))
        report = await wait_terminal(backend, handle)
        logs = [
            b"".join([c async for c in backend.logs(handle, rank=pod)]).decode() for pod in (0, 1)
        ]
        errs = [
            b"".join([c async for c in backend.logs(handle, rank=pod, stream="stderr")]).decode()
            for pod in (0, 1)
        ]
        nodes = [backend.node_of_rank(handle, rank) for rank in (0, 1)]
    seconds = time.monotonic() - started

    assert report.state is JobState.SUCCEEDED, (report, errs)
    lines = sorted(line for text in logs for line in text.splitlines())
    assert lines == [
        "[rank0]:rank=0 world=2 sum=3 env_rank=0",
        "[rank1]:rank=1 world=2 sum=3 env_rank=1",
    ], (logs, errs)
    assert all(text.count("\n") == 1 for text in logs), "one rank per pod"
    assert nodes == [0, 1]  # Engine.logs(rank=1) reads pod 1's log
    print(f"2 pods x 1 rank, emulated: {seconds:.1f}s")


@pytest.fixture
async def engine(tmp_path: Path) -> Any:
    yield Engine(Store(tmp_path / "home"))
    await registry.close_all()


async def test_engine_runs_two_ranks_in_one_pod_and_picks_each_ranks_log(
    cluster: Any, engine: Engine, tmp_path: Path
) -> None:
    """1 node x 2 ranks through the engine: dry run line, both ranks' lines, SUCCEEDED."""
    need_torch()
    script = tmp_path / "allreduce.py"
    script.write_text(ALL_REDUCE)
    ex = executor(cluster, nproc_per_node=2, launcher="torchrun")
    plan = Plan(title="k8s-ddp")
    plan.add(Script(path=str(script), entrypoint="python"), ex, name="allreduce")

    (dry,) = await engine.dryrun(plan)
    started = time.monotonic()
    record = await engine.launch(plan)
    done = await asyncio.wait_for(engine.wait(record.id, max_interval=0.2), BOUND)
    seconds = time.monotonic() - started
    ranks = [
        b"".join([c async for c in engine.logs(record.id, rank=rank)]).decode() for rank in (0, 1)
    ]
    whole = b"".join([c async for c in engine.logs(record.id)]).decode()

    assert dry.artifacts["command"].startswith(
        f"{PY} -m torch.distributed.run --nnodes=1 --nproc-per-node=2 --rdzv-backend=c10d "
        "--rdzv-endpoint=127.0.0.1:0 --rdzv-id="
    )
    assert dry.artifacts["command"].endswith(f" --max-restarts=0 --tee=3 {script}")
    assert done.jobs[0].state is JobState.SUCCEEDED, done.jobs[0].reason
    assert ranks == ["rank=0 world=2 sum=3 env_rank=0\n", "rank=1 world=2 sum=3 env_rank=1\n"], (
        whole
    )
    assert sorted(whole.splitlines()) == [
        "[rank0]:rank=0 world=2 sum=3 env_rank=0",
        "[rank1]:rank=1 world=2 sum=3 env_rank=1",
    ]
    print(f"1 pod x 2 ranks through the engine, emulated: {seconds:.1f}s")


async def test_an_image_without_torch_fails_with_a_clear_reason_and_triage(
    cluster: Any, engine: Engine, tmp_path: Path
) -> None:
    """The image's python cannot import torch (here: a fresh venv without packages)."""
    bare = tmp_path / "bare"
    subprocess.run([PY, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=60)
    python = str(bare / "bin" / "python")
    ex = executor(cluster, nproc_per_node=2, launcher="torchrun", python=python)
    plan = Plan(title="k8s-no-torch")
    plan.add(Script(inline="print('never')", entrypoint="python"), ex, name="notorch")

    record = await engine.launch(plan)
    done = await asyncio.wait_for(engine.wait(record.id, max_interval=0.2), BOUND)
    job = done.jobs[0]
    cause = await triage(engine, record.id, "notorch", use_cache=False)

    assert job.state is JobState.FAILED
    assert job.reason is not None and job.reason.startswith(
        f"torchrun needs torch in the image ({IMAGE}); its python cannot import `torch`"
    ), job.reason
    assert cause is not None and cause.summary.startswith("torchrun needs torch in the image")


async def test_an_image_without_ft_launcher_fails_with_a_clear_reason(cluster: Any) -> None:
    """launcher="ft" where the image has no ft_launcher: the runtime cannot start it."""
    if importlib.util.find_spec("nvidia_resiliency_ext") is not None:
        pytest.skip("nvidia-resiliency-ext is installed here, so ft_launcher would start")
    ex = executor(cluster, nodes=2, launcher="ft", master_port=free_port())
    async with backend_for(ex) as backend:
        handle = await backend.submit(spec(ex, [PY, "-c", "print('never')"], job_name="ft"))
        report = await wait_terminal(backend, handle)

    assert report.state is JobState.FAILED
    assert report.reason is not None and report.reason.startswith(
        f"the fault-tolerant launcher (ft) needs nvidia-resiliency-ext in the image ({IMAGE})"
    ), report.reason
