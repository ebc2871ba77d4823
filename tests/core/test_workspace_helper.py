"""The workspace helper process: answers belong to the call that asked."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.engine.workspace_helper import WorkspaceHelper

WS = """
import time
import nemorun_tui as run
time.sleep({delay})

def f() -> None:
    pass

@run.recipe
def {name}() -> run.Partial:
    return run.Partial(f)
"""


async def test_a_cancelled_call_never_hands_its_answer_to_the_next(tmp_path: Path) -> None:
    slow = tmp_path / "slow.py"
    slow.write_text(WS.format(delay=1.5, name="slow_recipe"))
    quick = tmp_path / "quick.py"
    quick.write_text(WS.format(delay=0, name="quick_recipe"))
    helper = WorkspaceHelper()
    try:
        first = asyncio.ensure_future(helper.build(str(slow), "slow_recipe", []))
        await asyncio.sleep(0.8)  # the request is written; the helper is importing
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        built = await helper.build(str(quick), "quick_recipe", [])
        assert built.recipe == "quick_recipe"
        await asyncio.sleep(1.5)  # long after the cancelled answer would have arrived
        again = await helper.build(str(quick), "quick_recipe", [])
        assert again.recipe == "quick_recipe"
    finally:
        await helper.close()
