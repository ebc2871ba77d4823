"""Relaunch from a checkpoint: the recipe's field gets the path, the child records it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from core.engine import Engine
from core.recipes import discover
from core.results.artifacts import list_artifacts
from core.results.locate import locate
from core.results.resume import NoCheckpointField, checkpoint_field, resume_override
from core.settings import Settings
from core.store import Store

WORKSPACE = textwrap.dedent(
    """
    import json, os
    from core.config import Partial
    from core.recipes import recipe

    def fit(steps: int = 2, resume_from: str = "") -> None:
        out = os.environ["NEMORUN_JOB_DIR"]
        os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
        with open(os.path.join(out, "checkpoints", "last.ckpt"), "w") as fh:
            fh.write("weights")
        with open(os.path.join(out, "resumed.json"), "w") as fh:
            json.dump({"resume_from": resume_from}, fh)

    def other(steps: int = 2) -> None:
        pass

    @recipe
    def train() -> Partial:
        return Partial(fit)

    @recipe
    def plain() -> Partial:
        return Partial(other)
    """
)


async def test_relaunch_from_a_checkpoint_records_it_in_the_childs_overrides(
    tmp_path: Path,
) -> None:
    ws_file = tmp_path / "ws.py"
    ws_file.write_text(WORKSPACE)
    workspace = discover(str(ws_file))
    engine = Engine(Store(tmp_path / "home"), Settings())
    first = await engine.launch(engine.recipe_plan(workspace, "train", ["steps=3"]))
    await engine.wait(first.id, max_interval=0.3)
    outputs = await locate(engine, first.id, "train")
    ckpt = next(a for a in (await list_artifacts(outputs)).artifacts if a.path.endswith(".ckpt"))
    assert checkpoint_field(engine, first.id, "train") == "resume_from"
    override = resume_override(engine, first.id, "train", outputs.job_dir, ckpt.path)
    full = str(Path(outputs.job_dir) / "checkpoints" / "last.ckpt")
    assert override == f"resume_from={full!r}"

    child = await engine.launch(engine.relaunch_plan(first.id, [override]))
    child = await engine.wait(child.id, max_interval=0.3)
    assert child.parent == first.id
    assert child.overrides == ["steps=3", override]
    child_dir = (await locate(engine, child.id, "train")).job_dir
    assert json.loads((Path(child_dir) / "resumed.json").read_text()) == {"resume_from": full}


async def test_no_field_for_a_checkpoint_is_said_plainly(tmp_path: Path) -> None:
    ws_file = tmp_path / "ws.py"
    ws_file.write_text(WORKSPACE)
    engine = Engine(Store(tmp_path / "home"), Settings())
    rec = await engine.launch(engine.recipe_plan(discover(str(ws_file)), "plain"))
    await engine.wait(rec.id, max_interval=0.3)
    with pytest.raises(NoCheckpointField, match="checkpoint_field"):
        checkpoint_field(engine, rec.id, "plain")
    config = tmp_path / "config.toml"
    config.write_text('[recipes.plain]\ncheckpoint_field = "steps"\n')
    engine.settings = Settings(path=config)
    assert checkpoint_field(engine, rec.id, "plain") == "steps"
