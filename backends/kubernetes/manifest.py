"""Manifests for one task: a batch/v1 Job, plus a headless Service when it has several nodes.

Plain dicts (the API's JSON), built here without the ``kubernetes`` package so a dry run
needs no client, and rendered as YAML by a dumper small enough to read (:func:`to_yaml`).

Multi-node: an *Indexed* Job with ``completions = parallelism = nodes``; pod ``i`` gets the
host name ``<job>-<i>`` in the headless Service's domain (``subdomain``), so every rank
reaches rank 0 at ``<job>-0.<service>`` — torchrun's ``MASTER_ADDR``. Secrets never appear in
a manifest: their values go into a Secret object that the container reads by reference.

The kubelet expands ``$(VAR)`` in a container's ``command``/``args`` from its environment
(and turns ``$$`` into ``$``), so every ``$`` of the job's own words is doubled: they reach
the process as written. The one word meant to be expanded is a launcher's rendezvous flag,
``--rdzv-endpoint=$(MASTER_ADDR):$(MASTER_PORT)`` (the Indexed Job's variables, or the ones
Kubeflow's operator sets), on a multi-node launch.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from backends.kubernetes import names
from core.engine import launch_guard
from core.engine.executors_kubernetes import KubernetesExecutor
from core.engine.protocol import BackendError, JobSpec

CONTAINER = "main"
#: Kubeflow's training operator (optional ``kind = "PyTorchJob"``) names its container so.
KUBEFLOW_CONTAINER = "pytorch"
KUBEFLOW_KIND = "PyTorchJob"
KUBEFLOW_GROUP = "kubeflow.org"
KUBEFLOW_VERSION = "v1"
KUBEFLOW_PLURAL = "pytorchjobs"
_INDEX = "batch.kubernetes.io/job-completion-index"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


@dataclass
class Manifests:
    """What one submission creates, in creation order (Secret, Service, then the Job)."""

    job: dict[str, Any]
    service: dict[str, Any] | None = None
    secret: dict[str, Any] | None = None
    #: Secret values by key; kept out of ``secret`` until it is sent, so nothing prints them.
    secret_values: dict[str, str] = field(default_factory=dict)
    #: The container's command as sent (every pod runs it; the kubelet expands ``$(VAR)``).
    command: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.job["metadata"]["name"])

    def shown(self) -> list[dict[str, Any]]:
        """The objects as a dry run shows them (the Secret with its keys only)."""
        return [m for m in (self.secret, self.service, self.job) if m is not None]

    def secret_with_values(self) -> dict[str, Any] | None:
        if self.secret is None:
            return None
        return {**self.secret, "stringData": dict(self.secret_values)}


def identity_labels(job: JobSpec) -> dict[str, str]:
    """The labels that identify a submission (a retried submit finds its Job by them)."""
    return {
        names.MANAGED: "true",
        names.EXPERIMENT: names.label_value(job.experiment_id),
        names.JOB_NAME: names.label_value(job.job_name),
        names.RUN_TAG: names.label_value(job.run_tag),
    }


def _resources(ex: KubernetesExecutor) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    if ex.cpu:
        requests["cpu"] = limits["cpu"] = str(ex.cpu)
    if ex.memory:
        requests["memory"] = limits["memory"] = str(ex.memory)
    if ex.gpus:
        limits["nvidia.com/gpu"] = str(int(ex.gpus))  # a quantity: a string in the schema
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _volumes(ex: KubernetesExecutor, job_subpath: str) -> tuple[list[Any], list[Any]]:
    """(pod volumes, container mounts): the job dir first, then the profile's volumes."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    job_dir: dict[str, Any] = {"name": "nemorun-job-dir"}
    if ex.job_dir_claim:
        job_dir["persistentVolumeClaim"] = {"claimName": ex.job_dir_claim}
        mounts.append(
            {"name": "nemorun-job-dir", "mountPath": ex.job_dir_mount, "subPath": job_subpath}
        )
    else:
        job_dir["emptyDir"] = {}
        mounts.append({"name": "nemorun-job-dir", "mountPath": ex.job_dir_mount})
    volumes.append(job_dir)
    for i, spec in enumerate(ex.volumes):
        if not isinstance(spec, dict):
            raise BackendError(f"volumes[{i}] must be a table, not {spec!r}")
        name = str(spec.get("name") or f"vol-{i}")
        mount_path = spec.get("mount_path") or spec.get("mountPath")
        if not mount_path:
            raise BackendError(f"volumes[{i}] ({name}) needs a mount_path")
        volume: dict[str, Any] = {"name": name}
        if spec.get("pvc"):
            volume["persistentVolumeClaim"] = {"claimName": str(spec["pvc"])}
        elif spec.get("host_path"):
            volume["hostPath"] = {"path": str(spec["host_path"])}
        elif spec.get("config_map"):
            volume["configMap"] = {"name": str(spec["config_map"])}
        else:
            raise BackendError(f"volumes[{i}] ({name}) needs one of pvc, host_path, config_map")
        mount: dict[str, Any] = {"name": name, "mountPath": str(mount_path)}
        if spec.get("read_only"):
            mount["readOnly"] = True
        if spec.get("sub_path"):
            mount["subPath"] = str(spec["sub_path"])
        volumes.append(volume)
        mounts.append(mount)
    return volumes, mounts


def build(job: JobSpec, ex: KubernetesExecutor) -> Manifests:
    """The objects that run ``job`` under ``ex``; raises BackendError for what cannot run."""
    if not ex.image:
        raise BackendError("a Kubernetes job needs an image (profile field `image`)")
    if not job.argv:
        raise BackendError("the job has no command (empty argv)")
    if job.archive:
        raise BackendError(
            "the Kubernetes backend does not ship packaged code: build the code into the "
            "image (or mount it as a volume) and use no packager for this profile"
        )
    if job.task_file:
        raise BackendError(
            "the Kubernetes backend cannot run a Python function task yet (its task file lives "
            "on this machine): use run.Script or a command built into the image"
        )
    name = names.job_object_name(job.run_tag, job.job_name)
    ns = ex.namespace
    labels = {**ex.labels, **identity_labels(job)}
    annotations = {
        **ex.annotations,
        names.ANN_EXPERIMENT: job.experiment_id,
        names.ANN_JOB_NAME: job.job_name,
        names.ANN_RUN_TAG: job.run_tag,
    }
    if job.dependencies:
        annotations[names.ANN_DEPENDS] = json.dumps([h.job_id for h in job.dependencies])
    if job.held:
        annotations[names.ANN_HELD] = "true"

    argv = list(job.argv)
    if argv[0] == sys.executable:
        argv[0] = ex.python  # this machine's interpreter means nothing inside the image
    kubeflow = ex.kind == KUBEFLOW_KIND
    command, nproc, launch_env = _command(job, ex, argv, kubeflow)

    env_values = {
        **launch_guard.job_env(),
        **ex.env_vars,
        **job.env,
        **launch_env,
        "NEMORUN_EXPERIMENT_ID": job.experiment_id,
        "NEMORUN_JOB_NAME": job.job_name,
        "NEMORUN_RUN_TAG": job.run_tag,
        "NEMORUN_JOB_DIR": ex.job_dir_mount,
    }
    secret_name = f"{name}-env"
    env: list[dict[str, Any]] = []
    secret_values: dict[str, str] = {}
    for key, value in env_values.items():
        if not _ENV_NAME.match(key):
            raise BackendError(f"invalid environment variable name {key!r}")
        if key in job.secret_env:
            continue
        # Env values are expanded by the kubelet too (``$(VAR)`` of earlier variables).
        env.append({"name": key, "value": literal(str(value))})
    for key, value in job.secret_env.items():
        if not _ENV_NAME.match(key):
            raise BackendError(f"invalid environment variable name {key!r}")
        secret_values[key] = str(value)
        env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}})

    service_name = None
    if ex.nodes > 1 and not kubeflow:  # the training operator sets MASTER_ADDR itself
        service_name = name
        env += [
            {"name": "MASTER_ADDR", "value": f"{name}-0.{service_name}.{ns}.svc"},
            {"name": "MASTER_PORT", "value": str(ex.master_port)},
            {"name": "WORLD_SIZE", "value": str(ex.nodes * nproc)},
            {"name": "NNODES", "value": str(ex.nodes)},
            {"name": "NPROC_PER_NODE", "value": str(nproc)},
            {
                "name": "NODE_RANK",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{_INDEX}']"}},
            },
        ]

    volumes, mounts = _volumes(ex, f"{names.label_value(job.experiment_id)}/{name}")
    container: dict[str, Any] = {
        "name": KUBEFLOW_CONTAINER if kubeflow else CONTAINER,
        "image": ex.image,
        "command": command,
        "env": env,
        "volumeMounts": mounts,
    }
    if ex.launcher is not None:
        # A failed container's message is its log's end, so the status can say why (e.g. the
        # image's python has no torch: backends.kubernetes.status.launcher_hint).
        container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    if ex.working_dir:
        container["workingDir"] = ex.working_dir
    resources = _resources(ex)
    if resources:
        container["resources"] = resources
    if service_name:
        container["ports"] = [{"name": "rendezvous", "containerPort": ex.master_port}]

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
    }
    if service_name:
        pod_spec["subdomain"] = service_name
    if ex.service_account:
        pod_spec["serviceAccountName"] = ex.service_account
    if ex.node_selector:
        pod_spec["nodeSelector"] = dict(ex.node_selector)
    if ex.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in ex.tolerations]
    if ex.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in ex.image_pull_secrets]

    if kubeflow:
        template = {
            "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
            "spec": pod_spec,
        }
        manifests = Manifests(
            job=_pytorchjob(job, ex, name, labels, annotations, template, nproc),
            command=command,
        )
        _add_secret(manifests, ex, secret_name, labels, secret_values)
        return manifests

    spec: dict[str, Any] = {
        "backoffLimit": int(ex.retries),
        "template": {
            "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
            "spec": pod_spec,
        },
    }
    if ex.nodes > 1:
        spec.update(completions=ex.nodes, parallelism=ex.nodes, completionMode="Indexed")
    if job.held or job.dependencies:
        spec["suspend"] = True  # started by release() / once its dependencies succeeded
    if ex.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = int(ex.ttl_seconds_after_finished)

    manifests = Manifests(
        job={
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": labels,
                "annotations": annotations,
            },
            "spec": spec,
        },
        command=command,
    )
    if service_name:
        manifests.service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service_name, "namespace": ns, "labels": dict(labels)},
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": {names.RUN_TAG: labels[names.RUN_TAG], names.MANAGED: "true"},
                "ports": [{"name": "rendezvous", "port": ex.master_port}],
            },
        }
    _add_secret(manifests, ex, secret_name, labels, secret_values)
    return manifests


#: The rendezvous of a multi-node launch, expanded by the kubelet from the pod's env.
MULTI_NODE_ENDPOINT = "$(MASTER_ADDR):$(MASTER_PORT)"
_ENDPOINT_PLACEHOLDER = "NEMORUN_RDZV_ENDPOINT_PLACEHOLDER"


def literal(word: str) -> str:
    """``word`` as a ``command``/``args`` item or env value the kubelet passes through
    unchanged: it expands ``$(VAR)`` and turns ``$$`` into ``$``, so every ``$`` is doubled."""
    return word.replace("$", "$$")


def _command(
    job: JobSpec, ex: KubernetesExecutor, argv: list[str], kubeflow: bool
) -> tuple[list[str], int, dict[str, str]]:
    """(container command, ranks per pod, env the launcher adds).

    Without a launcher the container runs the job's command as one process: a single-node
    Job asking for several ranks is refused instead of silently running one (on several
    nodes, and on Kubeflow, ``nproc_per_node`` reaches the job as ``NPROC_PER_NODE`` /
    ``nprocPerNode`` for a launcher the command starts itself). With one, every pod runs
    it (core.launchers.launch_argv): one node rendezvous on loopback, several on rank 0's
    pod through ``$(MASTER_ADDR)``.
    """
    launcher = ex.launcher
    if launcher is None:
        if ex.nproc_per_node > 1 and ex.nodes == 1 and not kubeflow:
            raise BackendError(
                f"job {job.job_name!r}: nproc_per_node={ex.nproc_per_node} needs a launcher "
                "(launcher='torchrun'); a plain container runs one process"
            )
        return [literal(w) for w in argv], ex.nproc_per_node, {}
    from core.launchers import (
        RANK_PREFIX_ENV,
        LauncherError,
        launch_argv,
        ranks_per_node,
        single_node_endpoint,
    )

    nproc = ranks_per_node(launcher, ex.nproc_per_node)
    if ex.nodes == 1:
        endpoint = single_node_endpoint(launcher)
    else:
        endpoint = (
            f"$(MASTER_ADDR):{launcher.rdzv_port}" if launcher.rdzv_port else MULTI_NODE_ENDPOINT
        )
    try:
        line = launch_argv(
            launcher,
            argv,
            python=ex.python,
            nnodes=ex.nodes,
            nproc_per_node=nproc,
            rdzv_endpoint=_ENDPOINT_PLACEHOLDER,
            rdzv_id=job.run_tag,
        )
    except LauncherError as exc:
        raise BackendError(f"job {job.job_name!r}: {exc}") from None
    flag = f"--rdzv-endpoint={_ENDPOINT_PLACEHOLDER}"
    command: list[str] = []
    replaced = False
    for word in line:
        if word == flag and not replaced:  # the launcher's own flag, never the job's words
            command.append(f"--rdzv-endpoint={endpoint}")
            replaced = True
        else:
            command.append(literal(word))
    return command, nproc, dict(RANK_PREFIX_ENV)


def _add_secret(
    manifests: Manifests,
    ex: KubernetesExecutor,
    secret_name: str,
    labels: dict[str, str],
    values: dict[str, str],
) -> None:
    if values:
        manifests.secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": secret_name, "namespace": ex.namespace, "labels": dict(labels)},
        }
        manifests.secret_values = values


def _pytorchjob(
    job: JobSpec,
    ex: KubernetesExecutor,
    name: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    template: dict[str, Any],
    nproc: int,
) -> dict[str, Any]:
    """A Kubeflow ``PyTorchJob`` (training operator, kubeflow.org/v1): one Master, workers.

    The operator gives every replica MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK; its status is
    read from ``status.conditions`` (Created, Running, Restarting, Succeeded, Failed).
    """
    run_policy: dict[str, Any] = {"cleanPodPolicy": "None", "backoffLimit": int(ex.retries)}
    if job.held or job.dependencies:
        run_policy["suspend"] = True
    if ex.ttl_seconds_after_finished is not None:
        run_policy["ttlSecondsAfterFinished"] = int(ex.ttl_seconds_after_finished)
    replicas: dict[str, Any] = {
        "Master": {"replicas": 1, "restartPolicy": "Never", "template": copy.deepcopy(template)}
    }
    if ex.nodes > 1:
        replicas["Worker"] = {
            "replicas": ex.nodes - 1,
            "restartPolicy": "Never",
            "template": copy.deepcopy(template),
        }
    return {
        "apiVersion": f"{KUBEFLOW_GROUP}/{KUBEFLOW_VERSION}",
        "kind": KUBEFLOW_KIND,
        "metadata": {
            "name": name,
            "namespace": ex.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "runPolicy": run_policy,
            "nprocPerNode": str(nproc),
            "pytorchReplicaSpecs": replicas,
        },
    }


# --------------------------------------------------------------------------- YAML

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        for key, item in value.items():
            k = _scalar(str(key))
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{k}:")
                lines.extend(_yaml_lines(item, indent + 1))
            else:
                lines.append(f"{pad}{k}: {_inline(item)}")
        return lines
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        for item in value:
            if isinstance(item, dict | list) and item:
                sub = _yaml_lines(item, indent + 1)
                first = sub[0].lstrip()
                lines.append(f"{pad}- {first}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {_inline(item)}")
        return lines
    return [pad + _scalar(value)]


def _inline(item: Any) -> str:
    if isinstance(item, dict):
        return "{}"
    if isinstance(item, list):
        return "[]"
    return _scalar(item)


def to_yaml(documents: list[dict[str, Any]]) -> str:
    """Block-style YAML, one ``---`` document per object (strings JSON-quoted when needed)."""
    return "".join("---\n" + "\n".join(_yaml_lines(doc, 0)) + "\n" for doc in documents)
