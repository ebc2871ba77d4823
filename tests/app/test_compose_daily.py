"""Compose as a daily driver: enter right after picking a recipe, title/tags/note before
launch, profiles that say what they are, reload of config.toml and the workspace, and a
confirmation before a relaunch goes to a cluster."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app_helpers import wait_for, wait_for_screen
from textual.widgets import Input, OptionList, Select, Static

from core.engine.executors import SlurmExecutor
from core.store import Store
from nemorun_tui.screens.confirm import ConfirmScreen
from nemorun_tui.screens.text_input import TextInputScreen

SIZE = (150, 42)
TRAIN = "train-20250601-090000-a1b2"


async def _compose(pilot: Any, recipe: str | None = None) -> Any:
    app = pilot.app
    await wait_for(pilot, lambda: app.runs_table.loaded, what="listing")
    await pilot.press("2")
    pane = app.compose_pane
    await wait_for(pilot, lambda: pane.workspace is not None, what="workspace")
    if recipe is not None:
        recipes = pane.query_one("#recipes", OptionList)
        recipes.highlighted = recipes.get_option_index(recipe)
        recipes.focus()
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: pane.built is not None, what="plan")
    return pane


def _options(pane: Any) -> list[tuple[str, str]]:
    select = pane.query_one("#profile", Select)
    return [(str(label), value) for label, value in select._options if isinstance(value, str)]


async def test_enter_right_after_picking_a_recipe_edits_the_first_field(demo_app: Any) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        pane = await _compose(pilot)
        assert demo_app.focused is pane.query_one("#recipes", OptionList)
        await pilot.press("enter")  # pick the highlighted recipe
        await wait_for(pilot, lambda: pane.built is not None, what="plan")
        await wait_for(pilot, lambda: pane.config_tree.cursor_line >= 0, what="cursor")
        await pilot.press("enter")  # no arrow key first
        await wait_for(pilot, lambda: pane.has_class("-editing"), what="editor open")


async def test_title_tags_and_note_set_in_compose_are_recorded_at_launch(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    home = tmp_path / "store"
    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        pane = await _compose(pilot, "quick_train")
        await pilot.press("m")
        await wait_for_screen(pilot, TextInputScreen)
        values = ["nightly check", "nightly, smoke", "before the refactor"]
        for box, value in zip(app.screen.query(Input), values, strict=True):
            box.value = value
            box.focus()
            await pilot.press("enter")
        await wait_for(pilot, lambda: pane.source.note == "before the refactor", what="info")
        await wait_for(pilot, lambda: pane.built.plan.title == "nightly check", what="rebuilt")
        heading = pane.query_one("#compose-heading", Static)
        assert "nightly, smoke" in str(heading.content)
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: app.runs_table.row_count == 1, what="launched")
        record = Store(home).load(app.runs_table.order[0])
        assert record.title == "nightly check"
        assert record.tags == ["nightly", "smoke"]
        assert record.note == "before the refactor"


async def test_profiles_say_where_they_run_and_what_default_means(demo_app: Any) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        pane = await _compose(pilot)
        assert ("local · local", "local") in _options(pane)
        select = pane.query_one("#profile", Select)
        assert select.prompt == "default (local)"
        help_text = str(pane.query_one("#profile-help", Static).content)
        assert "default_executor" in help_text and "local" in help_text


async def test_config_toml_change_is_reloaded_without_a_restart(
    demo_app: Any, monkeypatch: Any
) -> None:
    config = Path(os.environ["NEMORUN_TUI_CONFIG"])
    async with demo_app.run_test(size=SIZE) as pilot:
        pane = await _compose(pilot)
        assert [v for _, v in _options(pane)] == ["local"]
        await wait_for(pilot, lambda: demo_app.reload_watcher._seen, what="watcher primed")
        config.write_text('[executors.gpu]\nbackend = "local"\nenv_vars = { A = "1" }\n')
        await wait_for(
            pilot, lambda: "gpu" in [v for _, v in _options(pane)], 10, "gpu profile listed"
        )
        assert demo_app.reload_watcher.reloads >= 1
        config.write_text("[executors.gpu\n")  # broken: reported, the settings in use stay
        await wait_for(pilot, lambda: demo_app.reload_watcher.reloads >= 2, 10, "second look")
        await pilot.pause(0.2)
        assert "gpu" in demo_app.engine.settings.profile_names()


async def test_palette_reload_reads_config_toml_again(demo_app: Any) -> None:
    config = Path(os.environ["NEMORUN_TUI_CONFIG"])
    async with demo_app.run_test(size=SIZE) as pilot:
        pane = await _compose(pilot)
        demo_app.reload_watcher.enabled = False  # the palette's reload, not the watcher's
        config.write_text('[executors.big]\nbackend = "local"\n')
        await pilot.pause(2.5)
        assert "big" not in [v for _, v in _options(pane)]
        demo_app.action_reload()
        await wait_for(pilot, lambda: "big" in [v for _, v in _options(pane)], what="reloaded")


async def test_relaunch_to_a_cluster_asks_first(demo_app: Any, demo_home: Path) -> None:
    executor = SlurmExecutor(profile_name="ci", partition="debug").to_dict()
    path = Store(demo_home).job_dir(TRAIN, "train") / "executor.json"
    path.write_text(json.dumps(executor))
    async with demo_app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: demo_app.runs_table.loaded, what="listing")
        demo_app.runs_table.move_cursor_to(TRAIN)
        await pilot.press("r")
        await wait_for_screen(pilot, ConfirmScreen)
        assert "submitted to the cluster" in demo_app.screen.question
        assert "train on ci" in demo_app.screen.question
        await pilot.press("n")
        await pilot.pause(0.3)
        assert demo_app.runs_table.total_count == 5  # nothing launched


async def _free_override(pilot: Any, pane: Any, text: str) -> None:
    pane.config_tree.focus()
    await pilot.press("o")
    await wait_for(pilot, lambda: pane.has_class("-editing"), what="override editor")
    pane.query_one("#field-editor", Input).value = text
    await pilot.press("enter")


async def test_executor_settings_per_launch_and_the_dry_run_follows_edits(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    home = tmp_path / "store"
    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        pane = await _compose(pilot, "quick_train")
        await wait_for(pilot, lambda: "max_steps" in pane._dryrun_text, what="dry run")
        assert "trainer.max_steps      = 5" in pane._dryrun_text
        await _free_override(pilot, pane, "trainer.max_steps=7")
        await wait_for(pilot, lambda: "= 7" in pane._dryrun_text, what="dry run re-rendered")
        await _free_override(pilot, pane, "executor.nodez=2")
        error = pane.query_one("#field-error", Static)
        await wait_for(pilot, lambda: error.has_class("-shown"), what="inline error")
        assert "did you mean `executor.nodes`" in str(error.content)
        pane.query_one("#field-editor", Input).value = "executor.env.GREETING=hi"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "GREETING=hi" in pane._dryrun_text, what="env in preview")
        assert pane.built.plan.jobs[0].executor.env_vars == {"GREETING": "hi"}
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: app.runs_table.row_count == 1, what="launched")
        exp_id = app.runs_table.order[0]
        store = Store(home)
        stored = json.loads((store.job_dir(exp_id, "quick_train") / "executor.json").read_text())
        assert stored["env_vars"] == {"GREETING": "hi"}
        assert "executor.env.GREETING=hi" in store.load(exp_id).overrides


async def test_slash_finds_a_field_in_compose(demo_app: Any) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        pane = await _compose(pilot, "train")
        await pilot.press("slash")
        await wait_for(pilot, lambda: pane.has_class("-editing"), what="find box")
        await pilot.press(*"weight", "enter")
        await wait_for(pilot, lambda: not pane.has_class("-editing"), what="find closed")
        node = pane.config_tree.cursor_node
        assert node is not None and node.data.path == "optimizer.weight_decay"
        await pilot.press("enter")  # enter on the found field edits it
        await wait_for(pilot, lambda: pane.has_class("-editing"), what="editor")
        assert pane.query_one("#field-editor", Input).border_title == "optimizer.weight_decay"
