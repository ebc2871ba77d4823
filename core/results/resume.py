"""Relaunch from a checkpoint: which config field takes the checkpoint, and the override.

The field is the recipe's ``checkpoint_field`` (``[recipes.<name>]`` in config.toml) when
declared; otherwise the one field of the stored config named like a resume argument
(``resume_from``, ``ckpt_path``, NeMo's ``restore_from_path``…). The override is an
ordinary one (the path as a quoted string), so the child's overrides record it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.results.artifacts import absolute
from core.results.locate import declared

if TYPE_CHECKING:
    from core.engine import Engine

#: Field names that mean "resume from this checkpoint", in the order they are preferred.
RESUME_NAMES = (
    "resume_from",
    "resume_from_checkpoint",
    "ckpt_path",
    "checkpoint_path",
    "restore_from_path",
    "resume_if_exists",
)


class NoCheckpointField(ValueError):
    """The recipe names no field for a checkpoint and none looks like one."""


def checkpoint_field(engine: Engine, exp_id: str, job: str) -> str:
    """The dotted config path a checkpoint goes into for this job's recipe."""
    named = declared(engine, exp_id, job).checkpoint_field
    if named:
        return named
    flat = engine.task_view(exp_id, job).flat
    for name in RESUME_NAMES:
        found = [path for path in flat if path.rsplit(".", 1)[-1] == name]
        if len(found) == 1:
            return str(found[0])
    raise NoCheckpointField(
        f"the recipe of {exp_id} names no checkpoint field; set checkpoint_field in "
        f'config.toml [recipes.<name>] (e.g. checkpoint_field = "resume_from")'
    )


def resume_override(engine: Engine, exp_id: str, job: str, job_dir: str, path: str) -> str:
    """``<field>='<absolute checkpoint path>'`` for edit-and-relaunch."""
    return f"{checkpoint_field(engine, exp_id, job)}={absolute(job_dir, path)!r}"
