"""SSH 2FA questions asked on the engine thread are answered in a modal in the app."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app_helpers import wait_for, wait_for_screen

from core.transport.prompts import prompt_handler
from nemorun_tui.screens.prompt import AuthPromptScreen


async def test_a_keyboard_interactive_question_is_answered_in_a_modal(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    app = make_app(tmp_path / "store", poll_seconds=5, listing_seconds=5)
    answers: list[Any] = []
    async with app.run_test(size=(120, 40)) as pilot:
        handler = prompt_handler()
        assert handler is not None  # the app installed its handler at start-up

        def engine_side() -> None:  # what the SSH transport does on the engine thread
            result = asyncio.run(handler("2FA", "Enter the code", [("Code: ", False)]))
            answers.append(result)

        thread = threading.Thread(target=engine_side)
        thread.start()
        await wait_for_screen(pilot, AuthPromptScreen)
        field = app.screen.query_one("#answer-0")
        assert field.password  # a hidden prompt is not echoed
        await pilot.press(*"424242", "enter")
        await wait_for(pilot, lambda: not thread.is_alive(), what="answer delivered")
    assert answers == [["424242"]]
    assert prompt_handler() is None  # removed when the app exits


async def test_the_servers_strings_are_shown_as_text(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    """A hostile server's name, instructions and prompts are neither markup nor sequences."""
    app = make_app(tmp_path / "store", poll_seconds=5, listing_seconds=5)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = AuthPromptScreen(
            "[link=http://evil]2FA[/link]", "\x1b]52;c;eA==\x07type [b]it[/b]", [("Code: [", True)]
        )
        app.push_screen(screen)
        await wait_for_screen(pilot, AuthPromptScreen)
        shown = {w.id or "label": str(w.render()) for w in screen.query("Static")}
    assert shown == {
        "auth-title": "[link=http://evil]2FA[/link]",
        "auth-instructions": "type [b]it[/b]",
        "label": "Code: [",
    }
