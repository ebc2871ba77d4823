"""Compose's `o` path (build_plan) meets hostile overrides: only OverrideError, one line.

build_plan is what the Compose pane runs for every edited or typed override, for a recipe and
for a relaunch; overrides are applied in the workspace helper process, which reports the
refusal by its type name. The pane shows ``str(exc)`` as its notice, so that text must be
one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.engine import Engine
from core.engine.workspace_helper import WorkspaceCallError, WorkspaceHelper
from nemorun_tui.cli import DEMO_WORKSPACE
from nemorun_tui.widgets.compose_pane import ComposeSource, build_plan

BIG = "9" * 4000
HOSTILE = [
    ["seed=" + "[" * 500],
    ["tags={[]}"],
    ["optimizer.lr=" + "9" * 400],
    ["optimizer.lr*=" + "9" * 400],
    ["seed=" + "9" * 4301],
    [f"seed={BIG}", f"seed*={BIG}"],
    ["tags=[\udcff]"],
    ["seed=\x1b]0;title\x07\nx"],
]


@pytest.mark.parametrize("overrides", HOSTILE, ids=lambda o: o[-1][:20])
async def test_hostile_overrides_in_compose_are_one_override_error_line(
    tmp_path: Path, overrides: list[str]
) -> None:
    engine = Engine.from_environment(tmp_path / "home")
    helper = WorkspaceHelper()
    try:
        source = ComposeSource(recipe="quick_train", overrides=overrides)
        with pytest.raises(WorkspaceCallError) as info:
            await build_plan(engine, helper, DEMO_WORKSPACE, source)
        assert info.value.kind == "OverrideError"
        message = str(info.value)
        assert message.isprintable() and len(message.splitlines()) == 1 and len(message) <= 500
        assert not list((tmp_path / "home").glob("experiments/*"))  # nothing recorded
        # The same helper is fine once the text is well formed: the recipe itself builds.
        built = await build_plan(engine, helper, DEMO_WORKSPACE, ComposeSource("quick_train"))
        assert built.plan.jobs
    finally:
        await helper.close()
