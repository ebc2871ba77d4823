"""The emulated kubelet's own rules (tests/kube_controller.py): ``$(VAR)`` expansion of a
container's command as Kubernetes does it, and the stand-in for cluster DNS."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from core.engine.executors_kubernetes import KubernetesExecutor
from core.engine.protocol import JobSpec
from core.engine.states import JobState

pytest.importorskip("kubernetes")
kube_controller = pytest.importorskip("kube_controller")

from backends.kubernetes import KubernetesBackend  # noqa: E402

ENV = {"A": "x", "B": "y", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("$(A)", "x"),
        ("$(A):$(B)", "x:y"),
        ("pre-$(A)-post", "pre-x-post"),
        ("$(EMPTY)", ""),
        ("$(UNKNOWN)", "$(UNKNOWN)"),  # left as written
        ("$$(A)", "$(A)"),  # the escape
        ("$$$(A)", "$x"),
        ("$$", "$"),
        ("$$$$", "$$"),
        ("a$b ${A} $", "a$b ${A} $"),  # a `$` that starts no reference is kept
        ("$(A", "$(A"),  # unclosed
        ("$()", "$()"),
        ("", ""),
    ],
)
def test_expand_follows_the_kubelets_rules(text: str, expanded: str) -> None:
    assert kube_controller.expand(text, ENV) == expanded


@pytest.mark.parametrize(
    ("value", "service"),
    [
        ("job-0.job.default.svc", "job"),
        ("job.default.svc.cluster.local", "job"),
        ("job-0.job.default.svc.cluster.local", "job"),
    ],
)
def test_service_host_names_the_dns_stand_in_knows(value: str, service: str) -> None:
    found = kube_controller._SVC_HOST.match(value)
    assert found is not None and found.group("svc") == service
    assert found.group("ns") == "default"


@pytest.mark.parametrize("value", ["job-master-0", "example.com", "job.default", "a.b.c.svc.x"])
def test_other_values_are_not_service_hosts(value: str) -> None:
    assert kube_controller._SVC_HOST.match(value) is None


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    from kube_support import emulated_cluster

    with emulated_cluster(tmp_path / "kube") as c:
        yield c


async def test_a_jobs_own_dollar_words_reach_the_process_as_written(cluster: Any) -> None:
    """The backend escapes what the kubelet would expand (command words and env values);
    the emulated kubelet expands."""
    value = "$(NEMORUN_JOB_NAME) $$ $(HOME)"
    ex = KubernetesExecutor(
        env_vars={"MINE": value},
        image="ci/local:latest",
        kubeconfig=str(cluster.kubeconfig),
        context=cluster.context,
        python=sys.executable,
        qps=100.0,
        burst=50,
    )
    words = ["$(NEMORUN_JOB_NAME)", "$$", "a$b", "$$(X)", "${HOME}"]
    job = JobSpec(
        experiment_id="kube-expand",
        job_name="words",
        run_tag=f"kube-words-{time.time_ns()}",
        argv=[
            sys.executable,
            "-c",
            "import os, sys; print(sys.argv[1:], os.environ['MINE'])",
            *words,
        ],
        executor=ex,
        job_dir="/unused/words",
        workdir="/unused",
    )
    backend = KubernetesBackend(ex)
    try:
        handle = await backend.submit(job)
        deadline = time.monotonic() + 60
        while not (report := (await backend.poll([handle]))[handle]).state.is_terminal:
            assert time.monotonic() < deadline, report
            await asyncio.sleep(0.05)
        out = b"".join([c async for c in backend.logs(handle)])
    finally:
        await backend.close()

    assert report.state is JobState.SUCCEEDED, report
    assert out.decode() == f"{words!r} {value}\n"
