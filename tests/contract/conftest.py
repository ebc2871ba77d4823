"""Contract targets: every backend the shared protocol suite runs against.

Adding a backend to the contract = adding one entry to :data:`CONTRACT_TARGETS`: a name and
an async context manager factory that receives ``tmp_path`` and yields a
:class:`ContractTarget`. A target whose service is absent calls :func:`require_service`,
which skips with the reason — except under ``CI=true`` (the CI starts every service, so a
missing one is a failure there, not a silent skip).

``NEMORUN_CONTRACT_TARGETS=local,slurm-local`` runs a subset.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from services import require_service

from core.engine.executors import ExecutorProfile, LocalExecutor
from core.engine.protocol import Backend, Handle, JobSpec
from core.engine.states import JobState

#: The experiment id of every contract job, unique per test process: the Slurm teardown cancels
#: every job of this experiment, which must never hit another run of the suite on the cluster.
CONTRACT_EXPERIMENT = f"contract-{os.getpid()}"


@dataclass
class ContractTarget:
    """One backend under test, plus what the scenarios need to drive it generically.

    ``make_spec`` builds a JobSpec whose ``job_dir``/``workdir`` live where this backend
    runs jobs. Files written by jobs are read back with ``read_file`` (a remote target reads
    them over its transport). ``leftover_pids`` lists processes of a job still alive after it
    ended, when the target can know it (None: use the generic marker-file check only).
    """

    name: str
    backend: Backend
    make_spec: Callable[..., JobSpec]
    workdir: str
    unknown_handle: Handle
    read_file: Callable[[str], Awaitable[bytes | None]]
    timeout: float = 30.0
    poll_interval: float = 0.05
    python: str = sys.executable
    leftover_pids: Callable[[Handle], Awaitable[list[int]]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


ContractFactory = Callable[[Path], contextlib.AbstractAsyncContextManager[ContractTarget]]


def spec_factory(
    tmp_path: Path,
    executor: ExecutorProfile,
    *,
    jobs_root: str | None = None,
    workdir: str | None = None,
) -> tuple[Callable[..., JobSpec], str]:
    """A ``make_spec`` that gives every job its own job dir under ``jobs_root``.

    Returns the factory and the shared workdir. By default both live in ``tmp_path`` (the
    workdir is created); a remote target passes paths on its host and creates them itself.
    """
    root = jobs_root or str(tmp_path / "store")
    if workdir is None:
        (tmp_path / "work").mkdir(exist_ok=True)
        workdir = str(tmp_path / "work")
    counter = itertools.count()

    def make_spec(
        argv: list[str],
        name: str = "job",
        env: dict[str, str] | None = None,
        dependencies: list[Handle] | None = None,
        secret_env: dict[str, str] | None = None,
    ) -> JobSpec:
        n = next(counter)
        return JobSpec(
            experiment_id=CONTRACT_EXPERIMENT,
            job_name=name,
            run_tag=f"contract-{name}-{n}",
            argv=list(argv),
            executor=executor,
            job_dir=os.path.join(root, f"{n:03d}-{name}"),
            workdir=workdir,
            env=dict(env or {}),
            secret_env=dict(secret_env or {}),
            dependencies=list(dependencies or []),
        )

    return make_spec, workdir


async def read_local_file(path: str) -> bytes | None:
    """``read_file`` for targets whose jobs write to this machine's filesystem."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------------- local


@contextlib.asynccontextmanager
async def local_target(tmp_path: Path) -> AsyncIterator[ContractTarget]:
    """The local backend; jobs left running by a failed test are cancelled on teardown."""
    from backends.local import LocalBackend
    from backends.local import supervisor as sv

    executor = LocalExecutor(cancel_grace_seconds=2.0)
    backend = LocalBackend.from_profile(executor)
    make_spec, workdir = spec_factory(tmp_path, executor)

    async def leftover_pids(handle: Handle) -> list[int]:
        pids = sv.read_json(os.path.join(handle.job_id, sv.PIDS)) or {}
        alive = []
        if sv.is_alive(pids.get("supervisor"), pids.get("boot_id")):
            alive.append(pids["supervisor"]["pid"])
        if sv.is_alive(pids.get("child"), pids.get("boot_id")):
            alive.append(pids["child"]["pid"])
        if isinstance(pids.get("pgid"), int):  # anything the job forked, even after it exited
            alive.extend(p for p in sv.group_members(pids["pgid"]) if p not in alive)
        return alive

    try:
        yield ContractTarget(
            name="local",
            backend=backend,
            make_spec=make_spec,
            workdir=workdir,
            unknown_handle=Handle("local", "local", str(tmp_path / "no-such-job")),
            read_file=read_local_file,
            timeout=20.0,
            poll_interval=0.02,
            leftover_pids=leftover_pids,
        )
    finally:
        store = tmp_path / "store"
        handles = [Handle("local", "local", str(p)) for p in store.glob("*") if p.is_dir()]
        if handles:
            reports = await backend.poll(handles)
            for handle, report in reports.items():
                if not report.state.is_terminal and report.state is not JobState.UNKNOWN:
                    await backend.cancel(handle)
        await backend.close()


# --------------------------------------------------------------------------- slurm


def _slurm_target(over_ssh: bool) -> ContractFactory:
    """Slurm on the CI cluster, from the login node or over SSH (same machine, shared paths)."""

    @contextlib.asynccontextmanager
    async def factory(tmp_path: Path) -> AsyncIterator[ContractTarget]:
        from ci_services import slurm_available, sshd_available, sshd_service

        from backends.slurm import SlurmBackend
        from core.engine.executors import LocalTunnel, SlurmExecutor, SSHTunnel

        require_service(*slurm_available())
        tunnel: LocalTunnel | SSHTunnel = LocalTunnel()
        if over_ssh:
            require_service(*sshd_available())
            sshd = sshd_service()
            tunnel = SSHTunnel(
                host=sshd.alias, ssh_config=sshd.ssh_config, job_dir=str(tmp_path / "remote")
            )
        executor = SlurmExecutor(tunnel=tunnel, poll_rate=10.0, poll_burst=2)
        backend = SlurmBackend.from_profile(executor)
        make_spec, workdir = spec_factory(tmp_path, executor)
        try:
            yield ContractTarget(
                name="slurm-ssh" if over_ssh else "slurm-local",
                backend=backend,
                make_spec=make_spec,
                workdir=workdir,
                unknown_handle=Handle("slurm", executor.target(), "999999990"),
                read_file=read_local_file,
                timeout=60.0,
                poll_interval=0.2,
            )
        finally:
            with contextlib.suppress(Exception):
                await backend.cancel_experiment(CONTRACT_EXPERIMENT)
            await backend.close()

    return factory


# --------------------------------------------------------------------------- kubernetes


def kube_client_available() -> tuple[bool, str]:
    """Whether the official client and kmock (the emulated API server) are installed."""
    import importlib.util

    missing = [m for m in ("kubernetes", "kmock") if importlib.util.find_spec(m) is None]
    return not missing, f"not installed: {', '.join(missing)} (pip install -e '.[test]')"


@contextlib.asynccontextmanager
async def kubernetes_target(tmp_path: Path) -> AsyncIterator[ContractTarget]:
    """The Kubernetes backend against an EMULATED API server (kmock + tests/kube_controller).

    No real API server installs here: the emulated kubelet runs each container's command as
    a process on this machine, so the scenarios exercise the backend's API traffic, watch,
    logs and cancel for real, but not a container runtime or a real scheduler.
    """
    require_service(*kube_client_available())
    from kube_controller import EmulatedCluster

    from backends.kubernetes import KubernetesBackend
    from core.engine.executors_kubernetes import KubernetesExecutor

    with EmulatedCluster(tmp_path / "kube") as cluster:
        executor = KubernetesExecutor(
            image="ci/local:latest",
            kubeconfig=str(cluster.kubeconfig),
            context=cluster.context,
            python=sys.executable,
            qps=100.0,
            burst=50,
        )
        backend = KubernetesBackend.from_profile(executor)
        make_spec, workdir = spec_factory(tmp_path, executor)
        try:
            yield ContractTarget(
                name="kubernetes-emulated",
                backend=backend,
                make_spec=make_spec,
                workdir=workdir,
                unknown_handle=Handle("kubernetes", executor.target(), "no-such-job-0a1b2c3d"),
                read_file=read_local_file,
                timeout=30.0,
                poll_interval=0.05,
                extra={"cluster": cluster},
            )
        finally:
            with contextlib.suppress(Exception):
                await backend.cancel_experiment(CONTRACT_EXPERIMENT)
            await backend.close()
            assert cluster.emu is not None and cluster.emu.invalid == [], cluster.emu.invalid


# --------------------------------------------------------------------------- docker


@contextlib.asynccontextmanager
async def docker_target(tmp_path: Path) -> AsyncIterator[ContractTarget]:
    """The Docker backend on podman's Docker-API service (``.ci/services/podman.sh``).

    Jobs run in ``localhost/python:ci`` (busybox + bash + CPython). The test's work dir is
    mounted at the same path inside the containers, so marker files a job writes (or must
    not write) land where ``read_file`` looks.
    """
    from ci_services import PYTHON_IMAGE, docker_available, docker_url

    from backends.docker import DockerBackend
    from core.engine.executors_docker import DockerExecutor

    require_service(*docker_available())
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    executor = DockerExecutor(
        container_image=PYTHON_IMAGE,
        base_url=docker_url(),
        volumes=[f"{work}:{work}"],
        stop_grace_seconds=2.0,
        pull="never",
    )
    backend = DockerBackend.from_profile(executor)
    make_spec, workdir = spec_factory(tmp_path, executor)
    try:
        yield ContractTarget(
            name="docker",
            backend=backend,
            make_spec=make_spec,
            workdir=workdir,
            unknown_handle=Handle("docker", executor.target(), str(tmp_path / "no-such-job")),
            read_file=read_local_file,
            timeout=40.0,
            poll_interval=0.1,
            python="python3",
        )
    finally:
        with contextlib.suppress(Exception):
            for row in await backend.client.list_managed():
                labels = row.get("Labels") or {}
                if str(labels.get("nemorun.job_dir", "")).startswith(str(tmp_path)):
                    await backend.client.remove(row["Id"])
        await backend.close()


# --------------------------------------------------------------------------- ray


@contextlib.asynccontextmanager
async def ray_target(tmp_path: Path) -> AsyncIterator[ContractTarget]:
    """Ray Jobs on the CI head (same machine: job dirs and markers are local files)."""
    from ci_services import ray_available, ray_service

    from backends.ray import RayBackend
    from core.engine.executors_ray import RayExecutor

    require_service(*ray_available())
    executor = RayExecutor(address=ray_service().address, log_interval=0.2)
    backend = RayBackend.from_profile(executor)
    make_spec, workdir = spec_factory(tmp_path, executor)
    submitted: list[Handle] = []
    real_submit = backend.submit

    async def submit(job: JobSpec) -> Handle:
        handle = await real_submit(job)
        submitted.append(handle)
        return handle

    backend.submit = submit  # type: ignore[method-assign]  # remember jobs to stop on teardown
    try:
        yield ContractTarget(
            name="ray",
            backend=backend,
            make_spec=make_spec,
            workdir=workdir,
            unknown_handle=Handle("ray", executor.target(), "nrt-no-such-job-0"),
            read_file=read_local_file,
            timeout=60.0,
            poll_interval=0.2,
        )
    finally:
        with contextlib.suppress(Exception):
            reports = await backend.poll(submitted)
            for handle, report in reports.items():
                if not report.state.is_terminal and report.state is not JobState.UNKNOWN:
                    await backend.cancel(handle)
        await backend.close()


#: name -> factory. Add a backend here (see the module docstring); nothing else changes.
CONTRACT_TARGETS: dict[str, ContractFactory] = {
    "local": local_target,
    "slurm-local": _slurm_target(over_ssh=False),
    "slurm-ssh": _slurm_target(over_ssh=True),
    "kubernetes-emulated": kubernetes_target,
    "docker": docker_target,
    "ray": ray_target,
}


def _selected_targets() -> list[str]:
    wanted = os.environ.get("NEMORUN_CONTRACT_TARGETS")
    names = list(CONTRACT_TARGETS)
    if wanted:
        names = [n for n in names if n in {w.strip() for w in wanted.split(",")}]
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize at collection time, so entries added after this module loaded count too."""
    if "contract_backend" in metafunc.fixturenames:
        metafunc.parametrize("contract_backend", _selected_targets(), indirect=True)


@pytest.fixture
async def contract_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ContractTarget]:
    """The backend under test (one per contract target), set up and torn down per test."""
    factory = CONTRACT_TARGETS[request.param]
    async with factory(tmp_path) as target:
        yield target
