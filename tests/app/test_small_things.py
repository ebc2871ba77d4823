"""Small things a new user tripped over: help text markup, the ctrl+c toast, the theme that
was forgotten, a ``[keys]`` remap that silently took ``q`` from Quit, unreadable handles."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app_helpers import wait_for, wait_for_screen
from textual.widgets import Static

from core.engine.protocol import Handle
from core.settings import Settings, UISettings
from nemorun_tui.screens.help import HelpScreen
from nemorun_tui.ui_state import STATE_FILE
from nemorun_tui.widgets.detail_pane import handle_text, handle_text_of, setting_text

HELLO = "hello-20250601-114500-1c1d"


def _capture(app: Any) -> list[str]:
    """Every toast's text (the app's notify is wrapped, the real one still runs)."""
    seen: list[str] = []
    real = app.notify

    def notify(message: str, **kwargs: Any) -> None:
        seen.append(message)
        real(message, **kwargs)

    app.notify = notify
    return seen


async def test_help_hint_keeps_its_brackets(demo_app: Any) -> None:
    async with demo_app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: demo_app.runs_table.loaded)
        await pilot.press("question_mark")
        await wait_for_screen(pilot, HelpScreen)
        hint = demo_app.screen.query_one(".hint", Static)
        assert "config.toml under [keys], e.g." in str(hint.content)


async def test_ctrl_c_says_how_to_quit_in_plain_words(demo_app: Any) -> None:
    seen = _capture(demo_app)
    async with demo_app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: demo_app.runs_table.loaded)
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: any("to quit" in s for s in seen), what="quit toast")
        text = next(s for s in seen if "to quit" in s)
        assert "[b]" not in text and "q" in text


async def test_chosen_theme_is_remembered_in_the_store_home(
    demo_home: Path, make_app: Callable[..., Any]
) -> None:
    first = make_app(demo_home, monitor=False, listing_seconds=3600)
    async with first.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: first.runs_table.loaded)
        assert first.theme == "textual-dark"
        first.theme = "nord"
        state = demo_home / STATE_FILE
        await wait_for(
            pilot,
            lambda: state.exists() and json.loads(state.read_text()).get("theme") == "nord",
            what="theme saved",
        )
    second = make_app(demo_home, monitor=False, listing_seconds=3600)
    async with second.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: second.runs_table.loaded)
        assert second.theme == "nord"


async def test_a_keys_remap_that_takes_q_from_quit_is_warned_about(
    demo_home: Path, make_app: Callable[..., Any]
) -> None:
    settings = Settings(ui=UISettings(bell=False), keys={"relaunch": "q"})
    app = make_app(demo_home, monitor=False, listing_seconds=3600, settings=settings)
    seen = _capture(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.panes_ready.is_set(), what="panes")
        await wait_for(pilot, lambda: any("q no longer quits" in s for s in seen), what="warn")


async def test_no_warning_when_q_still_quits(demo_home: Path, make_app: Callable[..., Any]) -> None:
    settings = Settings(ui=UISettings(bell=False), keys={"relaunch": "R"})
    app = make_app(demo_home, monitor=False, listing_seconds=3600, settings=settings)
    seen = _capture(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.panes_ready.is_set(), what="panes")
        await pilot.pause(0.2)
        assert not any("quits" in s for s in seen)


def test_handles_read_as_words_not_urls() -> None:
    assert handle_text(Handle("local", "local", "/tmp/x/proc")) == "/tmp/x/proc  (local)"
    slurm = Handle("slurm", "ssh://me@login", "12345")
    assert handle_text(slurm) == "12345  (slurm at ssh://me@login)"
    assert handle_text_of(str(slurm)) == handle_text(slurm)
    assert handle_text_of("local://local//tmp/x/proc") == "/tmp/x/proc  (local)"


def test_a_tunnel_reads_as_ssh_not_json() -> None:
    tunnel = {"__type__": "SSHTunnel", "host": "login", "user": "me", "port": 2222}
    tunnel |= {"job_dir": "/scratch/me", "identity": None}
    text = setting_text("tunnel", tunnel)
    assert text == "ssh me@login:2222 (job dir /scratch/me)"
    assert "{" not in setting_text("tunnel", {"__type__": "LocalTunnel", "job_dir": ""})
    assert setting_text("env_vars", {"A": "1", "B": "2"}) == "A=1, B=2"


def test_a_launcher_reads_with_its_type() -> None:
    from core.launchers import FaultTolerance

    stored = FaultTolerance(rank_heartbeat_timeout=60).to_dict()
    assert setting_text("launcher", stored) == (
        "FaultTolerance(max_restarts=3, rank_heartbeat_timeout=60, rdzv_backend=c10d)"
    )


async def test_detail_shows_the_handle_readably(demo_app: Any) -> None:
    async with demo_app.run_test(size=(140, 60)) as pilot:
        await wait_for(pilot, lambda: demo_app.runs_table.loaded)
        demo_app.runs_table.move_cursor_to(HELLO)
        await pilot.press("enter")
        await wait_for(pilot, lambda: demo_app.detail_pane.data is not None, what="detail")
        pane = demo_app.detail_pane
        executor = pane.query_one("#detail-executor", Static)
        events = pane.query_one("#detail-events", Static)
        from rich.console import Console

        console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
        console.print(executor.content)
        console.print(events.content)
        text = console.export_text()
        assert "/demo/hello  (local)" in text and "local://" not in text


async def test_slash_means_find_in_the_pane_on_screen(demo_app: Any) -> None:
    async with demo_app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: demo_app.runs_table.loaded)
        await pilot.press("slash")  # Runs: the filter
        assert demo_app.runs_pane.has_class("-filtering")
        await pilot.press("escape")
        demo_app.runs_table.move_cursor_to(HELLO)
        await pilot.press("l")
        await wait_for(pilot, lambda: demo_app.active_pane == "logs", what="logs")
        await wait_for(pilot, lambda: demo_app.logs_pane.view is not None)
        await pilot.press("slash")  # Logs: the search box
        assert demo_app.logs_pane.has_class("-searching")
        await pilot.press("escape", "4")
        await pilot.press("slash")  # Detail: no list of its own, the Runs filter
        await wait_for(pilot, lambda: demo_app.active_pane == "runs", what="runs")
        assert demo_app.runs_pane.has_class("-filtering")
