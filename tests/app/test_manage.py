"""Run management in the app: tags and notes, archive, delete (never a live run, always
confirmed), bulk cancel of marked runs, copy an id or a path, open a shell in a run's folder."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from app_helpers import wait_for, wait_for_screen
from textual.widgets import Input

from core.store import Store
from nemorun_tui.screens.confirm import ConfirmScreen
from nemorun_tui.screens.text_input import TextInputScreen, split_tags

TRAIN = "train-20250601-090000-a1b2"
FAIL = "fail-20250601-100000-e5f6"
SWEEP = "sweep-lr-20250601-110000-0a0b"
HELLO = "hello-20250601-114500-1c1d"
SIZE = (120, 34)


async def _loaded(pilot: Any) -> None:
    await wait_for(pilot, lambda: pilot.app.runs_table.loaded, what="listing")


async def _answer(pilot: Any, *values: str) -> None:
    """Fill the text modal's fields and press enter on each."""
    await wait_for_screen(pilot, TextInputScreen)
    inputs = list(pilot.app.screen.query(Input))
    for box, value in zip(inputs, values, strict=True):
        box.value = value
        box.focus()
        await pilot.press("enter")


async def _yes(pilot: Any) -> str:
    await wait_for_screen(pilot, ConfirmScreen)
    question = str(pilot.app.screen.question)
    await pilot.press("y")
    return question


def test_tags_split_on_spaces_and_commas() -> None:
    assert split_tags(" a, b  c,,d ") == ["a", "b", "c", "d"]
    assert split_tags("") == []


async def test_tag_one_run_replaces_its_tags(demo_app: Any, demo_home: Path) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        demo_app.runs_table.move_cursor_to(TRAIN)
        await pilot.press("t")
        await wait_for_screen(pilot, TextInputScreen)
        assert demo_app.screen.query_one(Input).value == "demo"  # pre-filled
        await _answer(pilot, "baseline, keep")
        await wait_for(pilot, lambda: Store(demo_home).load(TRAIN).tags == ["baseline", "keep"])
        await wait_for(
            pilot,
            lambda: demo_app.runs_table.summary(TRAIN).tags == ("baseline", "keep"),
            what="listing shows the tags",
        )
        demo_app.runs_pane.open_filter()
        await pilot.press(*"tag:baseline")
        await wait_for(pilot, lambda: demo_app.runs_table.order == [TRAIN], what="tag filter")


async def test_tag_marked_runs_adds_and_removes(demo_app: Any, demo_home: Path) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        for exp_id in (TRAIN, SWEEP):
            demo_app.runs_table.move_cursor_to(exp_id)
            await pilot.press("space")
        await pilot.press("t")
        await _answer(pilot, "x -demo")
        store = Store(demo_home)
        await wait_for(pilot, lambda: store.load(SWEEP).tags == ["sweep", "x"], what="sweep")
        assert store.load(TRAIN).tags == ["x"]
        assert store.load(FAIL).tags == []  # not marked: untouched


async def test_note_edited_in_detail(demo_app: Any, demo_home: Path) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        demo_app.runs_table.move_cursor_to(FAIL)
        await pilot.press("enter")
        await wait_for(pilot, lambda: demo_app.detail_pane.data is not None, what="detail")
        await pilot.press("n")
        await _answer(pilot, "NaN at step 3: [lr] too high")
        await wait_for(pilot, lambda: Store(demo_home).load(FAIL).note != "", what="note")
        assert Store(demo_home).load(FAIL).note == "NaN at step 3: [lr] too high"
        await wait_for(
            pilot,
            lambda: getattr(demo_app.detail_pane.data.record, "note", "") != "",
            what="detail reloaded",
        )


async def test_escape_in_the_prompt_changes_nothing(demo_app: Any, demo_home: Path) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        demo_app.runs_table.move_cursor_to(TRAIN)
        await pilot.press("t")
        await wait_for_screen(pilot, TextInputScreen)
        demo_app.screen.query_one(Input).value = "other"
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert Store(demo_home).load(TRAIN).tags == ["demo"]


async def test_archive_hides_a_run_until_asked_for(demo_app: Any, demo_home: Path) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        demo_app.runs_table.move_cursor_to(HELLO)
        await pilot.press("a")
        assert "Archive hello" in await _yes(pilot)
        await wait_for(pilot, lambda: HELLO not in demo_app.runs_table.order, what="hidden")
        assert Store(demo_home).load(HELLO).archived
        status = str(demo_app.runs_pane.query_one("#runs-status").content)
        assert "1 archived hidden" in status
        demo_app.runs_pane.open_filter()
        await pilot.press(*"archived:yes")
        await wait_for(pilot, lambda: demo_app.runs_table.order == [HELLO], what="shown")
        await pilot.press("enter", "a")  # all shown are archived: a brings them back
        assert "back into the list" in await _yes(pilot)
        await wait_for(pilot, lambda: not Store(demo_home).load(HELLO).archived)


async def test_delete_removes_finished_runs_and_never_a_live_one(
    demo_app: Any, demo_home: Path
) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        for exp_id in (SWEEP, FAIL):  # sweep is RUNNING/PENDING
            demo_app.runs_table.move_cursor_to(exp_id)
            await pilot.press("space")
        await pilot.press("D")
        question = await _yes(pilot)
        assert FAIL in question and SWEEP not in question
        await wait_for(pilot, lambda: FAIL not in demo_app.runs_table.order, what="deleted")
        store = Store(demo_home)
        with pytest.raises(Exception):  # noqa: B017 - any "not found" is fine
            store.load(FAIL)
        assert store.load(SWEEP).id == SWEEP
        assert not store.exp_dir(FAIL).exists()
        assert demo_app.marked == [SWEEP]


async def test_delete_of_only_live_runs_asks_nothing_and_deletes_nothing(
    demo_app: Any, demo_home: Path
) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        demo_app.runs_table.move_cursor_to(SWEEP)
        await pilot.press("D")
        await pilot.pause(0.3)
        assert not isinstance(demo_app.screen, ConfirmScreen)
        assert Store(demo_home).load(SWEEP).id == SWEEP


async def test_declining_the_delete_keeps_the_run(demo_app: Any, demo_home: Path) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        demo_app.runs_table.move_cursor_to(TRAIN)
        await pilot.press("D")
        await wait_for_screen(pilot, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause(0.2)
        assert Store(demo_home).load(TRAIN).id == TRAIN


async def test_copy_id_and_path_go_to_the_clipboard(demo_app: Any, demo_home: Path) -> None:
    async with demo_app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        demo_app.runs_table.move_cursor_to(TRAIN)
        await pilot.press("y")
        await wait_for(pilot, lambda: demo_app.clipboard == TRAIN, what="id copied")
        await pilot.press("Y")
        job_dir = str(Store(demo_home).job_dir(TRAIN, "train"))
        await wait_for(pilot, lambda: demo_app.clipboard == job_dir, what="path copied")
        assert Path(job_dir, "logs", "stdout.log").exists()


@pytest.fixture
def fake_shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """$SHELL is a script that writes where it was started, then exits."""
    out = tmp_path / "cwd.txt"
    script = tmp_path / "shell.sh"
    script.write_text(f"#!/bin/sh\npwd > {out}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("SHELL", str(script))
    yield out


async def test_shell_opens_in_the_run_folder_with_the_app_suspended(
    demo_app: Any, demo_home: Path, fake_shell: Path
) -> None:
    suspended: list[bool] = []

    @contextlib.contextmanager
    def suspend() -> Iterator[None]:  # the headless driver cannot suspend; record it
        suspended.append(True)
        yield

    demo_app.suspend = suspend
    async with demo_app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        demo_app.runs_table.move_cursor_to(FAIL)
        await pilot.press("o")
        await wait_for(pilot, fake_shell.exists, what="shell ran")
        expected = os.path.realpath(Store(demo_home).job_dir(FAIL, "fail"))
        assert fake_shell.read_text().strip() == expected
        assert suspended == [True]


async def test_bulk_cancel_of_marked_live_runs(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    from test_flows import _launch_script

    home = tmp_path / "store"
    first = await _launch_script(home, "sleep 60", "sleeper-a")
    second = await _launch_script(home, "sleep 60", "sleeper-b")
    app = make_app(home, poll_seconds=0.2, listing_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runs_table.row_count == 2, what="listing")
        await pilot.press("space", "space")
        assert set(app.marked) == {first, second}
        await pilot.press("c")
        question = await _yes(pilot)
        assert first in question and second in question
        store = Store(home)
        await wait_for(
            pilot,
            lambda: all(store.load(i).state.value == "CANCELLED" for i in (first, second)),
            30,
            "both cancelled",
        )
