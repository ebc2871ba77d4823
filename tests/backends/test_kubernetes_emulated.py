"""The Kubernetes backend against the EMULATED API server (kmock + tests/kube_controller.py).

No real Kubernetes installs on this machine kind; the emulator speaks the REST API the
official client uses, and its small control plane runs each container's command as a local
process. These tests cover what the contract suite does not: the watch's re-list on 410,
OOMKilled, ImagePullBackOff, Unschedulable, a dropped log stream resumed exactly, a 2-node
Indexed Job with its Service, idempotent submit, and clear errors for a dead server or bad
credentials (without blocking the event loop).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from services import require_service

from core.engine.protocol import BackendError, Handle, JobSpec
from core.engine.states import JobState, StatusReport

kube_controller = pytest.importorskip("kube_controller")
pytest.importorskip("kubernetes")

from kube_support import PY, backend_for, emulated_cluster, executor  # noqa: E402

from backends.kubernetes import KubernetesBackend, manifest  # noqa: E402
from core.engine.executors_kubernetes import KubernetesExecutor  # noqa: E402

EmulatedCluster = kube_controller.EmulatedCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    with emulated_cluster(tmp_path / "kube") as c:
        yield c


_n = iter(range(10_000))


def job(ex: KubernetesExecutor, argv: list[str], name: str = "job", **kw: Any) -> JobSpec:
    n = next(_n)
    return JobSpec(
        experiment_id="kube-tests",
        job_name=name,
        run_tag=f"kube-{name}-{n}-{time.time_ns()}",
        argv=argv,
        executor=ex,
        job_dir=f"/unused/{n}",
        workdir="/unused",
        **kw,
    )


async def wait_for(
    backend: KubernetesBackend,
    handle: Handle,
    done: Callable[[StatusReport], bool],
    timeout: float = 30.0,
) -> StatusReport:
    deadline = time.monotonic() + timeout
    while True:
        report = (await backend.poll([handle]))[handle]
        if done(report):
            return report
        if time.monotonic() > deadline:
            pytest.fail(f"{handle}: last report {report}")
        await asyncio.sleep(0.05)


async def read(backend: KubernetesBackend, handle: Handle, **kw: Any) -> bytes:
    return b"".join([c async for c in backend.logs(handle, **kw)])


# --------------------------------------------------------------------------- watch


async def test_watch_relists_after_410_gone_and_keeps_reporting(cluster: Any) -> None:
    """Compaction ends the watch with 410; the backend lists again and sees later changes."""
    ex = executor(cluster)
    async with backend_for(ex) as backend:
        handle = await backend.submit(job(ex, ["bash", "-c", "echo go; sleep 1.5"]))
        await wait_for(backend, handle, lambda r: r.state is JobState.RUNNING)
        lists_before = cluster.counts()["LIST jobs"]

        cluster.compact()  # every version so far is gone: open watches get ERROR 410

        report = await wait_for(backend, handle, lambda r: r.state.is_terminal)
        stats = backend.cache.stats()

    counts = cluster.counts()
    assert report.state is JobState.SUCCEEDED, (report, stats, counts)
    assert stats["relists_after_gone"] >= 2, (stats, counts)  # jobs and pods both re-listed
    assert counts["LIST jobs"] >= lists_before + 1, counts
    assert counts["WATCH jobs"] >= 2, counts


async def test_many_jobs_share_one_watch_per_kind_and_polls_cost_no_request(cluster: Any) -> None:
    ex = executor(cluster)
    async with backend_for(ex) as backend:
        handles = [await backend.submit(job(ex, ["true"], name=f"j{i}")) for i in range(5)]
        for h in handles:
            await wait_for(backend, h, lambda r: r.state is JobState.SUCCEEDED)
        before = sum(cluster.counts().values())
        for _ in range(20):
            reports = await backend.poll(handles)
        after = sum(cluster.counts().values())

    assert all(r.state is JobState.SUCCEEDED for r in reports.values())
    assert after == before, "a refresh must be answered from the watch cache"
    assert cluster.counts()["WATCH jobs"] == 1 and cluster.counts()["WATCH pods"] == 1


# --------------------------------------------------------------------------- failures


async def test_oomkilled_pod_fails_with_reason_and_exit_137(cluster: Any) -> None:
    ex = executor(cluster, memory="64Mi")
    code = "import time; b = b'x' * (400 * 2**20); print('allocated', flush=True); time.sleep(30)"
    async with backend_for(ex) as backend:
        handle = await backend.submit(job(ex, [PY, "-c", code], name="hog"))
        report = await wait_for(backend, handle, lambda r: r.state.is_terminal)

    assert report.state is JobState.FAILED, report
    assert report.exit_code == 137
    assert report.reason is not None and report.reason.startswith("OOMKilled"), report


async def test_image_pull_backoff_is_pending_with_the_reason_and_can_be_cancelled(
    cluster: Any,
) -> None:
    ex = executor(cluster, image="registry.invalid/missing:1")
    async with backend_for(ex) as backend:
        handle = await backend.submit(job(ex, ["true"], name="noimage"))
        report = await wait_for(
            backend, handle, lambda r: (r.reason or "").startswith("ImagePullBackOff")
        )
        assert report.state is JobState.PENDING, report
        assert "registry.invalid/missing:1" in (report.reason or "")

        await backend.cancel(handle)
        after = (await backend.poll([handle]))[handle]
        await asyncio.sleep(0.3)

    assert after.state is JobState.CANCELLED
    assert cluster.jobs() == [], "cancel deletes the Job"
    assert cluster.objects(kube_controller.PODS) == [], "its pods are garbage-collected"


async def test_unschedulable_gpu_request_is_pending_with_the_schedulers_message(
    cluster: Any,
) -> None:
    ex = executor(cluster, gpus=4)
    async with backend_for(ex) as backend:
        handle = await backend.submit(job(ex, ["true"], name="gpu"))
        report = await wait_for(backend, handle, lambda r: bool(r.reason) and "Unsched" in r.reason)
        await backend.cancel(handle)

    assert report.state is JobState.PENDING
    assert report.reason == "Unschedulable: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu."


async def test_retries_follow_backoff_limit(cluster: Any) -> None:
    ex = executor(cluster, retries=2)
    async with backend_for(ex) as backend:
        handle = await backend.submit(job(ex, ["bash", "-c", "echo try; exit 5"], name="flaky"))
        report = await wait_for(backend, handle, lambda r: r.state.is_terminal)

    assert report.state is JobState.FAILED and report.exit_code == 5
    assert report.restarts == 2, report
    assert len(cluster.objects(kube_controller.PODS)) == 3


# --------------------------------------------------------------------------- logs


async def test_dropped_log_stream_resumes_without_repeats_or_gaps(cluster: Any) -> None:
    ex = executor(cluster)
    lines = 60
    code = (
        f"import time\nfor i in range({lines}):\n"
        "    print(f'line {i:03d} ' + 'x' * 40, flush=True); time.sleep(0.02)"
    )
    expected = b"".join(f"line {i:03d} {'x' * 40}\n".encode() for i in range(lines))
    async with backend_for(ex) as backend:
        spec = job(ex, [PY, "-c", code], name="talker")
        name = manifest.build(spec, ex).name
        cluster.controller.drop_log_after(name, 777)  # mid-line, on purpose
        handle = await backend.submit(spec)
        got = await asyncio.wait_for(read(backend, handle, follow=True), 30)
        assert (await backend.poll([handle]))[handle].state is JobState.SUCCEEDED

    assert got == expected
    assert cluster.counts()["FETCH pods/log"] >= 2, "the stream was cut and reopened"


async def test_log_offset_and_streams(cluster: Any) -> None:
    ex = executor(cluster)
    async with backend_for(ex) as backend:
        handle = await backend.submit(job(ex, ["bash", "-c", "printf abcdef; printf E >&2"]))
        await wait_for(backend, handle, lambda r: r.state is JobState.SUCCEEDED)

        assert await read(backend, handle, offset=2) == b"cdef"
        assert await read(backend, handle, stream="stderr") == b"E"
        assert await read(backend, handle, offset=99) == b""


# --------------------------------------------------------------------------- multi-node


async def test_two_node_indexed_job_with_headless_service(cluster: Any) -> None:
    ex = executor(cluster, nodes=2, nproc_per_node=2)
    code = (
        "import os; print(os.environ['NODE_RANK'], os.environ['JOB_RANK_CHECK'], "
        "os.environ['MASTER_ADDR'], os.environ['MASTER_PORT'], os.environ['WORLD_SIZE'])"
    )
    async with backend_for(ex) as backend:
        spec = job(ex, [PY, "-c", code], name="ddp", env={"JOB_RANK_CHECK": "ok"})
        handle = await backend.submit(spec)
        report = await wait_for(backend, handle, lambda r: r.state.is_terminal)
        rank0 = await read(backend, handle, rank=0)
        rank1 = await read(backend, handle, rank=1)
        services = cluster.objects(kube_controller.SERVICES)

    name = handle.job_id
    addr = "127.0.0.1"  # <job>-0.<job>.default.svc, by the emulator's DNS stand-in
    assert report.state is JobState.SUCCEEDED, report
    assert rank0 == f"0 ok {addr} 29500 4\n".encode()
    assert rank1 == f"1 ok {addr} 29500 4\n".encode()
    assert [s["metadata"]["name"] for s in services] == [name]
    assert services[0]["spec"]["clusterIP"] == "None"
    pods = cluster.objects(kube_controller.PODS)
    assert sorted(p["spec"]["hostname"] for p in pods) == [f"{name}-0", f"{name}-1"]
    assert {p["spec"]["subdomain"] for p in pods} == {name}


# --------------------------------------------------------------------------- submit


async def test_retried_submit_never_creates_a_second_job(cluster: Any) -> None:
    ex = executor(cluster)
    async with backend_for(ex) as backend:
        spec = job(ex, ["true"], name="once", secret_env={"TOKEN": "t0ps3cret"})
        first = await backend.submit(spec)
        second = await backend.submit(spec)
        other = await backend.submit(job(ex, ["true"], name="once"))  # a new run tag

        found = await backend.find(spec.run_tag, spec.job_dir)

    assert first == second == found
    assert other != first
    assert len(cluster.jobs()) == 2


async def test_held_job_starts_only_on_release(cluster: Any) -> None:
    ex = executor(cluster)
    async with backend_for(ex) as backend:
        spec = job(ex, ["true"], name="held")
        spec.held = True
        handle = await backend.submit(spec)
        await asyncio.sleep(0.5)
        held = (await backend.poll([handle]))[handle]
        pods_while_held = cluster.objects(kube_controller.PODS)

        await backend.release(handle)
        report = await wait_for(backend, handle, lambda r: r.state.is_terminal)

    assert held.state is JobState.PENDING and "held" in (held.reason or "")
    assert pods_while_held == []
    assert report.state is JobState.SUCCEEDED


async def test_job_env_names_the_run(cluster: Any) -> None:
    ex = executor(cluster)
    code = (
        "import json, os; print(json.dumps({k: os.environ[k] for k in ("
        "'NEMORUN_EXPERIMENT_ID', 'NEMORUN_JOB_NAME', 'NEMORUN_RUN_TAG', 'NEMORUN_JOB_DIR')}))"
    )
    async with backend_for(ex) as backend:
        spec = job(ex, [PY, "-c", code], name="env")
        handle = await backend.submit(spec)
        await wait_for(backend, handle, lambda r: r.state is JobState.SUCCEEDED)
        env = json.loads(await read(backend, handle))

    assert env == {
        "NEMORUN_EXPERIMENT_ID": "kube-tests",
        "NEMORUN_JOB_NAME": "env",
        "NEMORUN_RUN_TAG": spec.run_tag,
        "NEMORUN_JOB_DIR": "/nemorun/job",
    }


# --------------------------------------------------------------------------- errors


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _heartbeat(gaps: list[float], stop: asyncio.Event) -> None:
    last = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


async def test_unreachable_server_is_a_clear_error_and_never_blocks_the_loop(
    cluster: Any, tmp_path: Path
) -> None:
    dead = cluster.write_kubeconfig(
        tmp_path / "dead.json", cluster.token, server=f"http://127.0.0.1:{_free_port()}"
    )
    ex = executor(cluster, kubeconfig=str(dead))
    gaps: list[float] = []
    stop = asyncio.Event()
    beat = asyncio.create_task(_heartbeat(gaps, stop))
    async with backend_for(ex) as backend:
        started = time.monotonic()
        with pytest.raises(BackendError, match="unreachable"):
            await backend.poll([Handle("kubernetes", ex.target(), "x")])
        first = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(BackendError, match="unreachable"):
            await backend.poll([Handle("kubernetes", ex.target(), "x")])
        second = time.monotonic() - started
        # Meanwhile a healthy backend (here: the emulator itself) still answers.
        async with backend_for(executor(cluster)) as healthy:
            h = await healthy.submit(job(healthy.executor, ["true"]))
            assert (await wait_for(healthy, h, lambda r: r.state.is_terminal)).exit_code == 0
    stop.set()
    await beat

    assert first < 5.0 and second < 0.5, (first, second)
    assert max(gaps) < 0.5, "a blocking client call ran on the event loop"


async def test_bad_credentials_say_so(cluster: Any, tmp_path: Path) -> None:
    bad = cluster.write_kubeconfig(tmp_path / "bad.json", "wrong-token")
    ex = executor(cluster, kubeconfig=str(bad))
    async with backend_for(ex) as backend:
        with pytest.raises(BackendError, match="expired or invalid credentials"):
            await backend.poll([Handle("kubernetes", ex.target(), "x")])
        with pytest.raises(BackendError, match="credentials"):
            await backend.submit(job(ex, ["true"]))


async def test_missing_kubeconfig_context_is_named(tmp_path: Path) -> None:
    ex = KubernetesExecutor(image="i", kubeconfig=str(tmp_path / "nope"), context="prod")
    async with backend_for(ex) as backend:
        with pytest.raises(BackendError, match="cannot load"):
            await backend.poll([Handle("kubernetes", ex.target(), "x")])


async def test_client_side_rate_limit_caps_requests_per_second(cluster: Any) -> None:
    ex = executor(cluster, qps=10.0, burst=2)
    async with backend_for(ex) as backend:
        await backend.poll([])
        started = time.monotonic()
        for i in range(12):  # a submit is 1 create (no Secret, no Service)
            await backend.submit(job(ex, ["true"], name=f"r{i}"))
        took = time.monotonic() - started

    assert took >= 0.9, f"12 creates at 10/s with a burst of 2 took only {took:.2f} s"


# --------------------------------------------------------------------------- kubectl


def test_every_manifest_passes_kubectl_client_dry_run(cluster: Any, tmp_path: Path) -> None:
    """``kubectl create --dry-run=client --validate=false`` accepts what we send."""
    kubectl = shutil.which("kubectl")
    require_service(kubectl is not None, "kubectl not installed (.ci/services/kubectl.sh)")
    assert kubectl is not None
    ex = executor(
        cluster,
        nodes=2,
        gpus=1,
        memory="1Gi",
        volumes=[{"name": "d", "mount_path": "/d", "pvc": "data"}],
    )
    built = manifest.build(job(ex, ["true"], secret_env={"S": "v"}), ex)
    docs = [d for d in (built.secret_with_values(), built.service, built.job) if d]
    for doc in docs:
        out = subprocess.run(
            [
                kubectl,
                "--kubeconfig",
                str(cluster.kubeconfig),
                "create",
                "--dry-run=client",
                "--validate=false",
                "-o",
                "json",
                "-f",
                "-",
            ],
            input=json.dumps(doc),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        echoed = json.loads(out.stdout)
        assert echoed["kind"] == doc["kind"]
        assert echoed["metadata"]["name"] == doc["metadata"]["name"]


async def test_reports_from_a_broken_watch_say_when_they_were_last_true(tmp_path: Path) -> None:
    """After the server goes away, a refresh still answers, but dated when the watch broke."""
    with EmulatedCluster(tmp_path / "kube") as c:
        ex = executor(c)
        backend = KubernetesBackend(ex)
        handle = await backend.submit(job(ex, ["sleep", "30"], name="orphan"))
        await wait_for(backend, handle, lambda r: r.state is JobState.RUNNING)
    gone_at = time.time()  # the emulator (and its process) is gone
    try:
        await asyncio.sleep(1.5)
        report = (await backend.poll([handle]))[handle]
    finally:
        await backend.close()

    assert report.state is JobState.RUNNING  # the last state known, not a guess
    assert report.observed_at <= gone_at + 0.5, (report.observed_at, gone_at)


# --------------------------------------------------------------------------- Kubeflow


async def test_kubeflow_pytorchjob_runs_two_replicas_and_reports_from_conditions(
    cluster: Any,
) -> None:
    """Optional kind: a PyTorchJob custom object (the emulator plays the training operator)."""
    ex = executor(cluster, kind="PyTorchJob", nodes=2, nproc_per_node=2)
    code = (
        "import os; print(os.environ['RANK'], os.environ['WORLD_SIZE'], os.environ['MASTER_ADDR'])"
    )
    async with backend_for(ex) as backend:
        dry = await backend.dryrun(job(ex, [PY, "-c", code], name="ptj"))
        handle = await backend.submit(job(ex, [PY, "-c", code], name="ptj"))
        report = await wait_for(backend, handle, lambda r: r.state.is_terminal)
        rank0 = await read(backend, handle, rank=0)
        rank1 = await read(backend, handle, rank=1)
        failing = await backend.submit(job(ex, ["bash", "-c", "exit 7"], name="ptj-fail"))
        failed = await wait_for(backend, failing, lambda r: r.state.is_terminal)
        sleeper = await backend.submit(job(ex, ["sleep", "30"], name="ptj-cancel"))
        await wait_for(backend, sleeper, lambda r: r.state is JobState.RUNNING)
        await backend.cancel(sleeper)
        cancelled = (await backend.poll([sleeper]))[sleeper]

    assert "kind: PyTorchJob" in dry.artifacts["manifest.yaml"]
    assert handle.target.endswith("/pytorchjob")
    assert report.state is JobState.SUCCEEDED, report
    assert rank0 == f"0 2 {handle.job_id}-master-0\n".encode()
    assert rank1 == f"1 2 {handle.job_id}-master-0\n".encode()
    assert failed.state is JobState.FAILED and failed.exit_code == 7, failed
    assert cancelled.state is JobState.CANCELLED
    names_left = {o["metadata"]["name"] for o in cluster.objects(kube_controller.PYTORCHJOBS)}
    assert sleeper.job_id not in names_left
    assert cluster.objects(kube_controller.SERVICES) == []  # the operator's job, not ours


async def test_rotated_credentials_are_picked_up_after_a_401(cluster: Any) -> None:
    """A token that expires mid-session: errors say so, then the refreshed kubeconfig works."""
    ex = executor(cluster)
    async with backend_for(ex) as backend:
        first = await backend.submit(job(ex, ["true"], name="before"))
        cluster.emu.token = "rotated-token"  # the old token is no longer accepted
        with pytest.raises(BackendError, match="expired or invalid credentials"):
            await backend.submit(job(ex, ["true"], name="during"))
        cluster.write_kubeconfig(cluster.kubeconfig, "rotated-token")  # e.g. a refreshed file
        after = await backend.submit(job(ex, ["true"], name="after"))
        report = await wait_for(backend, after, lambda r: r.state.is_terminal)

    assert first != after and report.state is JobState.SUCCEEDED, report
