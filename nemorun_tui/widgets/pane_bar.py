"""The top bar: pane names with their number keys, the active one highlighted.

Not focusable on purpose: switching panes is a key (1-4) or a click, never a focus stop.
"""

from __future__ import annotations

from textual import events
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

PANES: tuple[tuple[str, str], ...] = (
    ("runs", "Runs"),
    ("compose", "Compose"),
    ("logs", "Logs"),
    ("detail", "Detail"),
)


class PaneBar(Widget):
    """``nemorun-tui  1 Runs  2 Compose  3 Logs  4 Detail      <context>``."""

    DEFAULT_CSS = """
    PaneBar {
        height: 1;
        background: $panel;
        color: $text-muted;
    }
    """

    active: reactive[str] = reactive("runs")
    context: reactive[str] = reactive("")

    class Clicked(Message):
        """A pane name was clicked."""

        def __init__(self, pane: str) -> None:
            super().__init__()
            self.pane = pane

    def render(self) -> Content:
        """The bar as styled content."""
        parts: list[Content | str | tuple[str, str]] = [("nemorun-tui ", "bold $accent")]
        for index, (key, label) in enumerate(PANES, start=1):
            if key == self.active:
                parts.append((f" {index} {label} ", "bold reverse $primary"))
            else:
                parts.append((f" {index} {label} ", ""))
        left = Content.assemble(*parts)
        right = Content(self.context)
        gap = max(1, self.size.width - left.cell_length - right.cell_length - 1)
        return Content.assemble(left, " " * gap, right)

    def on_click(self, event: events.Click) -> None:
        """Switch pane by clicking its name."""
        x = len("nemorun-tui ")
        for index, (key, label) in enumerate(PANES, start=1):
            width = len(f" {index} {label} ")
            if x <= event.x < x + width:
                self.post_message(self.Clicked(key))
                return
            x += width
