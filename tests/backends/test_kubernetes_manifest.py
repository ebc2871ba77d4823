"""Kubernetes manifests, names and profile: built without any server.

Every manifest is also checked against the official client's OpenAPI models (types, and no
unknown field), and by ``kubectl create --dry-run=client`` in test_kubernetes_emulated.py.
"""

from __future__ import annotations

import asyncio
import re
import sys

import pytest
import yaml

from backends.kubernetes import KubernetesBackend, manifest, names
from core.engine import executors
from core.engine.executors_kubernetes import KubernetesExecutor
from core.engine.protocol import BackendError, Handle, JobSpec

pytest.importorskip("kubernetes")
from kube_controller import schema_problems

DNS = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def spec(ex: KubernetesExecutor, **kw: object) -> JobSpec:
    base: dict[str, object] = dict(
        experiment_id="exp_2026-12-01_ÜBER/long" + "x" * 80,
        job_name="Train Model #1 (large)",
        run_tag="run-abc-123",
        argv=["python", "-c", "print('hi')"],
        executor=ex,
        job_dir="/store/exp/job",
        workdir="/work",
    )
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    ["Train Model #1", "UPPER", "9starts-with-digit", "---", "", "ü" * 10, "a" * 200, "x.y_z"],
)
def test_names_are_valid_dns_labels_with_a_unique_suffix(text: str) -> None:
    name = names.job_object_name("tag-1", text)
    other = names.job_object_name("tag-2", text)

    assert DNS.match(name) and len(name) <= 57, name  # room for "-<rank>" host names
    assert name != other, "two run tags must never share a Job name"
    assert names.job_object_name("tag-1", text) == name, "stable: a retried submit finds it"


@pytest.mark.parametrize("text", ["ok", "with space", "ü", "a" * 100, "-lead", "x/y"])
def test_label_values_are_valid_and_distinct(text: str) -> None:
    value = names.label_value(text)
    assert LABEL.match(value) and len(value) <= 63, value
    assert names.label_value(text + "!") != value


def test_single_node_job_carries_identity_env_and_resources() -> None:
    ex = KubernetesExecutor(
        image="nvcr.io/nvidia/pytorch:24.01",
        namespace="team-a",
        cpu="4",
        memory="16Gi",
        gpus=2,
        volumes=[
            {"name": "data", "mount_path": "/data", "pvc": "datasets", "read_only": True},
            {"name": "scratch", "mount_path": "/scratch", "host_path": "/mnt/scratch"},
            {"name": "cfg", "mount_path": "/cfg", "config_map": "train-config"},
        ],
        node_selector={"gpu": "a100"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        service_account="trainer",
        labels={"team": "a"},
        annotations={"owner": "me"},
        env_vars={"PLAIN": "1"},
        image_pull_secrets=["regcred"],
        ttl_seconds_after_finished=3600,
        retries=2,
        job_dir_claim="runs",
    )
    built = manifest.build(spec(ex, env={"EXTRA": "e"}), ex)
    job = built.job
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}

    assert built.service is None and built.secret is None
    assert job["metadata"]["namespace"] == "team-a"
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["ttlSecondsAfterFinished"] == 3600
    assert "completionMode" not in job["spec"] and "suspend" not in job["spec"]
    labels = job["metadata"]["labels"]
    assert labels[names.RUN_TAG] == "run-abc-123" and labels["team"] == "a"
    assert all(LABEL.match(v) and len(v) <= 63 for v in labels.values())
    assert job["metadata"]["annotations"][names.ANN_JOB_NAME] == "Train Model #1 (large)"
    assert env["NEMORUN_RUN_TAG"] == "run-abc-123"
    assert env["NEMORUN_JOB_NAME"] == "Train Model #1 (large)"
    assert env["NEMORUN_EXPERIMENT_ID"].startswith("exp_2026-12-01_ÜBER")
    assert env["NEMORUN_JOB_DIR"] == "/nemorun/job"
    assert env["PLAIN"] == "1" and env["EXTRA"] == "e"
    assert container["command"] == ["python", "-c", "print('hi')"]
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"},
    }
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["nemorun-job-dir"]["mountPath"] == "/nemorun/job"
    assert mounts["nemorun-job-dir"]["subPath"].endswith(built.name)
    assert mounts["data"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["nemorun-job-dir"]["persistentVolumeClaim"] == {"claimName": "runs"}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "datasets"}
    assert volumes["scratch"]["hostPath"] == {"path": "/mnt/scratch"}
    assert volumes["cfg"]["configMap"] == {"name": "train-config"}
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["serviceAccountName"] == "trainer"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["restartPolicy"] == "Never"
    assert schema_problems(job) == []


def test_multi_node_is_an_indexed_job_with_a_headless_service() -> None:
    ex = KubernetesExecutor(image="img", nodes=3, nproc_per_node=4, master_port=29400)
    built = manifest.build(spec(ex), ex)
    job, svc = built.job, built.service
    assert svc is not None
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}

    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 3
    assert pod["subdomain"] == svc["metadata"]["name"]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"][names.RUN_TAG] == job["metadata"]["labels"][names.RUN_TAG]
    assert env["MASTER_ADDR"]["value"] == f"{built.name}-0.{built.name}.default.svc"
    assert env["MASTER_PORT"]["value"] == "29400"
    assert env["WORLD_SIZE"]["value"] == "12"
    assert "job-completion-index" in env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert schema_problems(job) == [] and schema_problems(svc) == []


def test_secrets_go_to_a_secret_by_reference_and_never_into_the_shown_yaml() -> None:
    ex = KubernetesExecutor(image="img")
    built = manifest.build(spec(ex, secret_env={"API_TOKEN": "hunter2-secret"}), ex)
    shown = manifest.to_yaml(built.shown())
    env = {e["name"]: e for e in built.job["spec"]["template"]["spec"]["containers"][0]["env"]}

    assert "hunter2-secret" not in shown
    assert env["API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{built.name}-env",
        "key": "API_TOKEN",
    }
    sent = built.secret_with_values()
    assert sent is not None and sent["stringData"] == {"API_TOKEN": "hunter2-secret"}
    assert schema_problems(sent) == []


def test_dependencies_and_hold_create_a_suspended_job() -> None:
    ex = KubernetesExecutor(image="img")
    dep = Handle("kubernetes", ex.target(), "prep-00000000")
    held = manifest.build(spec(ex, held=True), ex)
    waiting = manifest.build(spec(ex, dependencies=[dep]), ex)

    assert held.job["spec"]["suspend"] is True
    assert held.job["metadata"]["annotations"][names.ANN_HELD] == "true"
    assert waiting.job["spec"]["suspend"] is True
    assert waiting.job["metadata"]["annotations"][names.ANN_DEPENDS] == '["prep-00000000"]'


def test_this_machines_interpreter_becomes_the_images_python() -> None:
    ex = KubernetesExecutor(image="img", python="/opt/conda/bin/python")
    built = manifest.build(spec(ex, argv=[sys.executable, "-m", "train"]), ex)
    assert built.job["spec"]["template"]["spec"]["containers"][0]["command"][0] == (
        "/opt/conda/bin/python"
    )


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"archive": "/cache/abc.tar.gz"}, "packaged code"),
        ({"task_file": "/store/task.json"}, "Python function task"),
        ({"argv": []}, "no command"),
        ({"env": {"BAD NAME": "x"}}, "invalid environment variable"),
    ],
)
def test_what_cannot_run_is_refused_with_a_reason(kw: dict[str, object], message: str) -> None:
    ex = KubernetesExecutor(image="img")
    with pytest.raises(BackendError, match=message):
        manifest.build(spec(ex, **kw), ex)


def test_an_image_is_required() -> None:
    ex = KubernetesExecutor()
    with pytest.raises(BackendError, match="image"):
        manifest.build(spec(ex), ex)


def test_dryrun_yaml_is_exactly_the_objects_sent() -> None:
    """The YAML a dry run shows parses back to the very dicts submit sends."""
    ex = KubernetesExecutor(image="img:1", nodes=2, env_vars={"WEIRD": "a: b\n'c' \"d\" #e"})
    job = spec(ex, argv=["bash", "-c", "echo 'x: y' # not a comment", "", "true", "null", "1"])
    backend = KubernetesBackend(ex)

    dry = asyncio.run(backend.dryrun(job))
    built = manifest.build(job, ex)

    docs = list(yaml.safe_load_all(dry.artifacts["manifest.yaml"]))
    assert docs == built.shown()
    assert "Indexed" in dry.summary and built.name in dry.summary


def test_profile_round_trips_and_is_found_by_backend_name() -> None:
    import nemorun_tui as run

    ex = run.KubernetesExecutor(image="img", namespace="ns", context="prod", nodes=2, gpus=8)
    stored = ex.to_dict()
    again = executors.profile_from_dict(stored)

    assert stored["backend"] == "kubernetes"
    assert again == ex
    assert executors.profile_class("kubernetes") is KubernetesExecutor
    assert ex.target() == "prod/ns"
    with pytest.raises(ValueError, match="nodes"):
        KubernetesExecutor(image="img", nodes=0)


def test_importing_the_backend_does_not_import_the_client() -> None:
    """The client (tens of ms, many modules) loads on the first API call, not at import."""
    import subprocess

    code = (
        "import sys, backends.kubernetes, core.engine.executors_kubernetes; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'urllib3')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_pytorchjob_kind_has_master_and_workers_and_no_service() -> None:
    ex = KubernetesExecutor(image="img", kind="PyTorchJob", nodes=3, nproc_per_node=8, gpus=8)
    built = manifest.build(spec(ex, held=True), ex)
    ptj = built.job
    replicas = ptj["spec"]["pytorchReplicaSpecs"]
    master = replicas["Master"]["template"]["spec"]["containers"][0]
    env = {e["name"] for e in master["env"]}

    assert ptj["apiVersion"] == "kubeflow.org/v1" and ptj["kind"] == "PyTorchJob"
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 2
    assert master["name"] == "pytorch"  # the training operator finds its container by name
    assert master["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert ptj["spec"]["nprocPerNode"] == "8"
    assert ptj["spec"]["runPolicy"]["suspend"] is True
    assert "MASTER_ADDR" not in env  # the operator sets it
    assert built.service is None
    assert schema_problems(ptj) == []
    assert ex.target() == "-/default/pytorchjob"
    with pytest.raises(ValueError, match="kind"):
        KubernetesExecutor(image="img", kind="TFJob")
