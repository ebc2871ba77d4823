"""Render every pane of the app from the fixed demo store to screenshots/ (SVG and PNG).

``make screenshots`` runs this. The demo store is the one the snapshot tests use (fixed ids,
times and clock), so the pictures only change when the app's look does. PNGs are drawn from
the SVGs by ``rsvg-convert`` (Debian: ``apt-get install librsvg2-bin fonts-dejavu-core``);
without it the SVGs are still written and the script says what is missing.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "app"))

OUT = ROOT / "screenshots"
HOME = Path("/tmp/nemorun-tui-screenshot-store")
SIZE = (150, 42)
#: The real interpreter, for the app's workspace helper process (main() pins sys.executable
#: to a fixed path for the dry run on screen).
REAL_PYTHON = sys.executable


async def _wait(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("screenshot setup timed out")
        await asyncio.sleep(0.02)


async def runs(pilot: Any) -> None:
    """The Runs pane as it opens."""


async def runs_filtered(pilot: Any) -> None:
    """Runs with a filter typed."""
    await pilot.press("slash", *"state:succeeded")


async def detail(pilot: Any) -> None:
    """Detail of a relaunched run: the diff against its parent is near the top."""
    app = pilot.app
    app.runs_table.move_cursor_to("train-20250601-093000-c3d4")
    await pilot.press("enter")
    await _wait(lambda: app.detail_pane.data is not None)
    await _wait(lambda: app.detail_pane.query_one("#detail-results").loaded_at is not None)


async def logs(pilot: Any) -> None:
    """Logs of a training run, a search highlighted."""
    app = pilot.app
    app.runs_table.move_cursor_to("train-20250601-090000-a1b2")
    await pilot.press("l")
    await _wait(lambda: app.logs_pane.view is not None)
    view = app.logs_pane.view
    await _wait(lambda: view.window.line_count > 0)
    await pilot.press("slash", *"loss 0", "enter")


async def compose(pilot: Any) -> None:
    """Compose: the train recipe with one field edited and its dry run."""
    from nemorun_tui.widgets.compose_pane import ComposeSource

    app = pilot.app
    await pilot.press("2")
    pane = app.compose_pane
    await _wait(lambda: pane.workspace is not None)
    pane.start(ComposeSource(recipe="train", overrides=["trainer.max_steps=50"]))
    await _wait(lambda: pane.built is not None and pane._dryrun_text)


async def help_screen(pilot: Any) -> None:
    """The ? help for the Runs pane."""
    await pilot.press("question_mark")


async def palette(pilot: Any) -> None:
    """ctrl+p, looking for a run by id."""
    await pilot.press("ctrl+p")
    await pilot.pause(0.2)
    await pilot.press(*"train-2025")


async def detail_failed(pilot: Any) -> None:
    """Detail of a failed run: why it failed, with the log lines it came from."""
    app = pilot.app
    app.runs_table.move_cursor_to("fail-20250601-100000-e5f6")
    await pilot.press("enter")
    await _wait(lambda: app.detail_pane.query_one("#detail-results").loaded_at is not None)
    await pilot.pause(0.2)
    app.detail_pane.scroll_end(animate=False)  # the cause and artifacts close the page


async def metrics(pilot: Any) -> None:
    """The Metrics view of a training run (M)."""
    app = pilot.app
    app.runs_table.move_cursor_to("train-20250601-093000-c3d4")
    await pilot.press("M")
    await _wait(lambda: getattr(app.screen, "refreshes", 0) >= 1)


async def compare(pilot: Any) -> None:
    """Compare two runs of train (C with two runs marked)."""
    app = pilot.app
    app.runs_table.marked = {"train-20250601-090000-a1b2", "train-20250601-093000-c3d4"}
    await pilot.press("C")
    await _wait(lambda: getattr(app.screen, "comparison", None) is not None)


SHOTS: list[tuple[str, Callable[[Any], Awaitable[None]]]] = [
    ("runs", runs),
    ("runs-filter", runs_filtered),
    ("detail", detail),
    ("detail-failed", detail_failed),
    ("metrics", metrics),
    ("compare", compare),
    ("logs", logs),
    ("compose", compose),
    ("help", help_screen),
    ("palette", palette),
]


async def shoot(name: str, steps: Callable[[Any], Awaitable[None]]) -> str:
    """Run the app headless on the demo store, do ``steps``, return the SVG."""
    from demo_store import DEMO_WORKSPACE, NOW, build_demo_store

    from core.engine import Engine
    from core.settings import Settings, UISettings
    from core.store import Store
    from nemorun_tui.app import NemorunApp

    build_demo_store(HOME)
    engine = Engine(Store(HOME), Settings(ui=UISettings(bell=False)))
    app = NemorunApp(
        engine, workspace=DEMO_WORKSPACE, clock=lambda: NOW, monitor=False, listing_seconds=3600
    )
    app.workspace_helper.python = REAL_PYTHON
    async with app.run_test(size=SIZE) as pilot:
        await _wait(lambda: app.runs_table.loaded and app.runs_pane.jobs.record is not None)
        await steps(pilot)
        await pilot.pause(0.3)
        return app.export_screenshot(title=f"nemorun-tui — {name}")


_LEADING = re.compile(
    r'(<text class="[^"]*" x=")([\d.]+)(" y="[^"]*" textLength=")([\d.]+)("[^>]*>)((?:&#160;)+)'
)


def fix_leading_spaces(svg: str) -> str:
    """rsvg-convert drops leading non-breaking spaces of a text run; move the run instead."""
    width = _char_width(svg)

    def shift(match: re.Match[str]) -> str:
        count = match.group(6).count("&#160;")
        x = float(match.group(2)) + count * width
        length = max(0.0, float(match.group(4)) - count * width)
        return f"{match.group(1)}{x:g}{match.group(3)}{length:g}{match.group(5)}"

    return _LEADING.sub(shift, svg)


def _char_width(svg: str) -> float:
    match = re.search(r'x="([\d.]+)" y="[^"]*" textLength="([\d.]+)"[^>]*>([^<]+)<', svg)
    if not match:
        return 12.2
    text = match.group(3).replace("&#160;", " ").replace("&amp;", "&")
    return float(match.group(2)) / max(1, len(text))


def main() -> int:
    os.environ.setdefault("TZ", "UTC")
    time.tzset()
    os.chdir("/tmp")  # paths shown in the dry run are the same on every machine
    sys.executable = "/opt/venv/bin/python3"  # likewise the interpreter (nothing is run)
    OUT.mkdir(exist_ok=True)
    converter = shutil.which("rsvg-convert")
    for name, steps in SHOTS:
        svg = asyncio.run(shoot(name, steps))
        svg_path = OUT / f"{name}.svg"
        svg_path.write_text(svg)
        line = f"wrote {svg_path.relative_to(ROOT)}"
        if converter:
            png_path = OUT / f"{name}.png"
            fixed = OUT / f".{name}.rsvg.svg"
            fixed.write_text(fix_leading_spaces(svg))
            try:
                subprocess.run(
                    [converter, "--format", "png", "--output", str(png_path), str(fixed)],
                    check=True,
                )
            finally:
                fixed.unlink(missing_ok=True)
            line += f" and {png_path.relative_to(ROOT)}"
        print(line)
    if not converter:
        print(
            "rsvg-convert not found: PNGs were not drawn. Install it with\n"
            "  apt-get install -y librsvg2-bin fonts-dejavu-core\n"
            "and run `make screenshots` again.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
