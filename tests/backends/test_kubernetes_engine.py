"""The Kubernetes backend through the engine (launch, hold/release, logs, cancel, relaunch) and
a ``backend = "kubernetes"`` config.toml profile, on the EMULATED API server (kmock)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from core.config import Script
from core.engine import Engine, Plan, registry
from core.engine.states import JobState
from core.settings import build_profile
from core.store import Store

kube_controller = pytest.importorskip("kube_controller")
pytest.importorskip("kubernetes")

from core.engine.executors_kubernetes import KubernetesExecutor  # noqa: E402


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    with kube_controller.EmulatedCluster(tmp_path / "kube") as c:
        yield c
        assert c.emu.invalid == [], c.emu.invalid


@pytest.fixture
async def engine(tmp_path: Path) -> Any:
    yield Engine(Store(tmp_path / "home"))
    await registry.close_all()


def profile(cluster: Any) -> KubernetesExecutor:
    """As a user writes it in config.toml (built by the settings loader)."""
    built = build_profile(
        "k8s",
        {
            "backend": "kubernetes",
            "image": "ci/local:latest",
            "kubeconfig": str(cluster.kubeconfig),
            "context": cluster.context,
            "namespace": "default",
            "qps": 100.0,
            "burst": 50,
        },
    )
    assert isinstance(built, KubernetesExecutor)
    return built


async def test_engine_launches_logs_and_relaunches_on_kubernetes(
    cluster: Any, engine: Engine
) -> None:
    plan = Plan(title="kube-engine")
    plan.add(
        Script(inline="echo job=$NEMORUN_JOB_NAME dir=$NEMORUN_JOB_DIR"),
        profile(cluster),
        name="hello",
    )

    first = await engine.wait((await engine.launch(plan)).id, max_interval=0.2)
    out = b"".join([c async for c in engine.logs(first.id)])

    assert first.state is JobState.SUCCEEDED, first.jobs[0].reason
    assert out == b"job=hello dir=/nemorun/job\n"
    job = cluster.jobs()[0]
    # Held at submit, released once the store had the handle: the hold annotation is off.
    assert job["metadata"]["annotations"]["nemorun.dev/held"] == "false"

    again = await engine.wait(
        (await engine.launch(engine.relaunch_plan(first.id))).id, max_interval=0.2
    )
    assert again.state is JobState.SUCCEEDED
    assert len(cluster.jobs()) == 2, "a relaunch is a new Job (new run tag)"


async def test_engine_cancel_deletes_the_job(cluster: Any, engine: Engine) -> None:
    plan = Plan(title="kube-cancel")
    plan.add(Script(inline="echo started; sleep 60"), profile(cluster), name="sleeper")
    exp = await engine.launch(plan)
    deadline = asyncio.get_running_loop().time() + 30
    while not any(
        p.get("status", {}).get("phase") == "Running" for p in cluster.objects(kube_controller.PODS)
    ):
        assert asyncio.get_running_loop().time() < deadline, "the pod never ran"
        await asyncio.sleep(0.05)

    await engine.cancel(exp.id)
    final = await engine.wait(exp.id, max_interval=0.2)

    assert final.state is JobState.CANCELLED
    assert cluster.jobs() == []
