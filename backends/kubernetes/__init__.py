"""Kubernetes backend: one batch/v1 Job per task, watched per namespace, logs from the pods.

The official ``kubernetes`` client (the ``kubernetes`` extra) is imported only inside this
package's functions; the profile type lives in ``core.engine.executors_kubernetes``.
"""

from backends.kubernetes.backend import KubernetesBackend
from core.engine.executors_kubernetes import KubernetesExecutor

__all__ = ["KubernetesBackend", "KubernetesExecutor"]
