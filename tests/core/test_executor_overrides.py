"""Per-launch executor settings (``executor.FIELD=VALUE``): typed, checked, one spelling."""

from __future__ import annotations

import pytest

from core.engine.executor_overrides import (
    ExecutorOverrideError,
    apply_executor_overrides,
    split_overrides,
)
from core.engine.executors import LocalExecutor, SlurmExecutor


def test_slurm_settings_are_typed_and_the_profile_keeps_its_name() -> None:
    base = SlurmExecutor(profile_name="ci", partition="debug")
    changed = apply_executor_overrides(
        base,
        [
            "executor.nodes=2",
            "executor.time=01:00:00",
            "executor.partition=gpu",
            "executor.gpus=4",
            "executor.exclusive=yes",
            "executor.srun_args=[--mpi=pmix, -l]",
            "executor.env.WANDB_MODE=offline",
        ],
    )
    assert (changed.nodes, changed.time, changed.partition) == (2, "01:00:00", "gpu")
    assert changed.gpus_per_node == 4 and changed.exclusive is True
    assert changed.srun_args == ["--mpi=pmix", "-l"]
    assert changed.env_vars == {"WANDB_MODE": "offline"}
    assert changed.profile_name == "ci"
    assert base.nodes == 1 and base.env_vars == {}  # the profile itself is untouched


def test_split_keeps_task_and_executor_overrides_apart_in_order() -> None:
    task, executor = split_overrides(["a=1", "executor.nodes=2", "b.c=3", " executor.time=1"])
    assert task == ["a=1", "b.c=3"]
    assert executor == ["executor.nodes=2", " executor.time=1"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("executor.nodez=2", "did you mean `executor.nodes`"),
        ("executor.nodes=two", "expects int, got `two`"),
        ("executor.exclusive=maybe", "expects bool"),
        ("executor.backend=local", "cannot be set per launch"),
        ("executor.secret_env.TOKEN=x", "cannot be set per launch"),
        ("executor.env_vars=1", "is a table"),
        ("executor.nodes.x=1", "is not a table"),
        ("executor.nodes", "expected executor.FIELD=VALUE"),
    ],
)
def test_bad_settings_say_why(override: str, message: str) -> None:
    with pytest.raises(ExecutorOverrideError, match=None) as info:
        apply_executor_overrides(SlurmExecutor(), [override])
    assert message in str(info.value)


def test_local_executor_env_and_optional_none() -> None:
    local = apply_executor_overrides(LocalExecutor(), ["executor.env_vars.A=1", "executor.env.B=2"])
    assert local.env_vars == {"A": "1", "B": "2"}
    slurm = apply_executor_overrides(SlurmExecutor(time="1:00"), ["executor.time=none"])
    assert slurm.time is None


def test_an_alias_never_hides_a_field_the_profile_has() -> None:
    """``gpus`` is short for Slurm's ``gpus_per_node``; Kubernetes has its own ``gpus``."""
    from core.engine.executors_kubernetes import KubernetesExecutor

    kube = apply_executor_overrides(KubernetesExecutor(image="busybox"), ["executor.gpus=2"])
    assert kube.gpus == 2
    slurm = apply_executor_overrides(SlurmExecutor(), ["executor.gpus=3"])
    assert slurm.gpus_per_node == 3
