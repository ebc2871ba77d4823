"""``?``: every key of the current pane, then the keys that work everywhere.

Built from the live bindings (with the user's ``[keys]`` remapping applied), so the help can
never drift from what the keys really do.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from nemorun_tui.widgets.format import plain_row

PANE_TITLES = {"runs": "Runs", "compose": "Compose", "logs": "Logs", "detail": "Detail"}


def _key_label(app: Any, key: str) -> str:
    labels = []
    for part in key.split(","):
        part = part.strip()
        labels.append(app.get_key_display(Binding(part, "")) if part else part)
    return " / ".join(labels)


def collect_bindings(app: Any, root: Any) -> list[tuple[str, str]]:
    """(keys, description) for every binding of ``root`` and its descendants."""
    keymap = getattr(app, "_keymap", {}) or {}
    seen: set[tuple[str, str]] = set()
    rows: list[tuple[str, str]] = []
    if isinstance(root, _Only):
        nodes = [root.node]
    else:
        nodes = [root, *root.walk_children()] if root is not None else []
    for node in nodes:
        for binding in own_bindings(node):
            key = keymap.get(binding.id, binding.key) if binding.id else binding.key
            description = binding.description or binding.action
            item = (_key_label(app, key), description)
            if item not in seen:
                seen.add(item)
                rows.append(item)
    return rows


def own_bindings(node: Any) -> list[Binding]:
    """Bindings declared by nemorun-tui classes (a text box's editing keys are not news)."""
    out: list[Binding] = []
    for cls in reversed(type(node).__mro__):
        if not cls.__module__.startswith("nemorun_tui"):
            continue
        declared = cls.__dict__.get("BINDINGS")
        if declared:
            out.extend(Binding.make_bindings(declared))
    return out


class HelpScreen(ModalScreen[None]):
    """A modal list of keys; any of escape, ? or q closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 80;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    HelpScreen Static.title { text-style: bold; color: $accent; margin-top: 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close help"),
    ]

    def __init__(self, pane: str) -> None:
        super().__init__()
        self.pane = pane

    def compose(self) -> ComposeResult:
        app = self.app
        main = app.screen_stack[0] if app.screen_stack else None
        pane_widget = None
        if main is not None:
            try:
                pane_widget = main.query_one(f"#{self.pane}")
            except Exception:
                pane_widget = None
        with VerticalScroll():
            yield Static(f"{PANE_TITLES.get(self.pane, self.pane)} pane", classes="title")
            yield Static(self._table(collect_bindings(app, pane_widget)))
            yield Static("Everywhere", classes="title")
            app_rows = collect_bindings(app, _Only(app))
            app_rows.append(("ctrl+p", "Command palette: open run by id, panes, theme"))
            yield Static(self._table(app_rows))
            yield Static(
                Content('Keys are remappable in config.toml under [keys], e.g. relaunch = "R".'),
                classes="hint",
                markup=False,  # "[keys]" is text, not a markup tag
            )

    @staticmethod
    def _table(rows: list[tuple[str, str]]) -> Table:
        table = Table(box=None, show_header=False, pad_edge=False, expand=True)
        table.add_column("key", style="bold", no_wrap=True, width=18)
        table.add_column("what")
        for key, description in rows:
            plain_row(table, key, description)
        if not rows:
            plain_row(table, "", "(no keys of its own)")
        return table


class _Only:
    """Adapter so :func:`collect_bindings` looks at one node without its children."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def walk_children(self) -> list[Any]:
        return []
