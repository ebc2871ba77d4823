"""Compose's `o` path (build_plan) meets hostile overrides: only OverrideError, one line.

build_plan is what the Compose pane runs for every edited or typed override, for a recipe and
for a relaunch; the pane shows ``str(exc)`` as its notice, so that text must be one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.engine import Engine
from core.overrides import OverrideError
from core.recipes import discover
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
def test_hostile_overrides_in_compose_are_one_override_error_line(
    tmp_path: Path, overrides: list[str]
) -> None:
    engine = Engine.from_environment(tmp_path / "home")
    workspace = discover(DEMO_WORKSPACE)
    source = ComposeSource(recipe="quick_train", overrides=overrides)
    with pytest.raises(OverrideError) as info:
        build_plan(engine, workspace, source)
    message = str(info.value)
    assert message.isprintable() and len(message.splitlines()) == 1 and len(message) <= 500
    assert not list((tmp_path / "home").glob("experiments/*"))  # nothing recorded
    # The same text is fine once it is well formed: the recipe itself builds.
    assert build_plan(engine, workspace, ComposeSource(recipe="quick_train")).plan.jobs
