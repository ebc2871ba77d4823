"""Shared by the Kubernetes tests that run jobs on the emulated cluster (kube_controller):
the cluster as a fixture body, a profile pointing at it, and a backend closed afterwards."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from backends.kubernetes import KubernetesBackend
from core.engine.executors_kubernetes import KubernetesExecutor

#: The interpreter the emulated pods run (the kubelet runs commands on this machine).
PY = sys.executable
#: The one image the emulated node "pulls".
IMAGE = "ci/local:latest"


@contextlib.contextmanager
def emulated_cluster(root: Path) -> Iterator[Any]:
    """An emulated cluster; on exit, checks every object sent was valid (the client's models
    and, where kubectl is installed, its client-side dry run) and the controller had no error."""
    import kube_controller

    with kube_controller.EmulatedCluster(root) as c:
        yield c
        assert c.emu.invalid == [], c.emu.invalid
        if c.emu.kubectl is not None:
            assert c.emu.kubectl_checked >= c.emu.created
        assert c.controller.errors == [], c.controller.errors


def executor(cluster: Any, **kw: Any) -> KubernetesExecutor:
    base: dict[str, Any] = dict(
        image=IMAGE,
        kubeconfig=str(cluster.kubeconfig),
        context=cluster.context,
        python=PY,
        qps=100.0,
        burst=50,
    )
    base.update(kw)
    return KubernetesExecutor(**base)


@contextlib.asynccontextmanager
async def backend_for(ex: KubernetesExecutor) -> AsyncIterator[KubernetesBackend]:
    backend = KubernetesBackend(ex)
    try:
        yield backend
    finally:
        await backend.close()
