"""Ask for one or a few lines of text in a modal: tags, a note, a run's title.

Enter on the last field answers with every field's value; escape answers None (nothing
changes). The values are plain text: shown and stored as typed, never read as markup.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class TextInputScreen(ModalScreen[list[str] | None]):
    """One input per ``(label, value, placeholder)``; dismisses with the values or None."""

    DEFAULT_CSS = """
    TextInputScreen { align: center middle; }
    TextInputScreen > Vertical {
        width: 80; max-width: 95%; height: auto;
        border: thick $accent; background: $surface; padding: 1 2;
    }
    TextInputScreen .label { margin-top: 1; color: $text-muted; }
    TextInputScreen #text-title { text-style: bold; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "refuse", "Cancel")]

    def __init__(self, title: str, fields: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.fields = fields

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Content(self.title_text), id="text-title")
            for i, (label, value, placeholder) in enumerate(self.fields):
                yield Static(Content(label), classes="label")
                yield Input(value=value, placeholder=placeholder, id=f"text-{i}")
            yield Static(Content("enter: save · escape: cancel"), classes="label")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        index = inputs.index(event.input)
        if index + 1 < len(inputs):
            inputs[index + 1].focus()
        else:
            self.dismiss([i.value for i in inputs])

    def action_refuse(self) -> None:
        """Escape: change nothing."""
        self.dismiss(None)


def split_tags(text: str) -> list[str]:
    """``a, b c`` → ``[a, b, c]``: commas or spaces separate tags (the store checks each)."""
    return [t for t in text.replace(",", " ").split() if t]
