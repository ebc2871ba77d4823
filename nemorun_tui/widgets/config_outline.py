"""A flattened config (``core.serialize.flatten``) walked as a tree, for Compose and Detail.

Compose builds an editable Textual ``Tree`` from it and Detail a read-only Rich tree; both
need the same grouping of dotted paths into nodes, so it lives here once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from rich.text import Text

from core.textsafe import escape_cell

FN = "__fn__"


@dataclass(frozen=True)
class OutlineNode:
    """One node: a group (a nested Config, dict or list) or a leaf value."""

    path: str  # dotted path of this node
    parent: str  # dotted path of its parent group ("" = the root)
    name: str  # the last part of the path
    value: str | None  # a leaf's display value; None for a group
    fn: str = ""  # a group's callable (``Trainer``), when it builds one


def config_outline(flat: Mapping[str, str]) -> Iterator[OutlineNode]:
    """Groups before their children, in ``flat``'s order (``flatten`` sorts paths)."""
    seen: set[str] = {""}
    for path, value in flat.items():
        parts = path.split(".")
        if parts[-1] == FN:
            continue
        for depth in range(len(parts) - 1):
            group = ".".join(parts[: depth + 1])
            if group not in seen:
                seen.add(group)
                yield OutlineNode(
                    path=group,
                    parent=".".join(parts[:depth]),
                    name=parts[depth],
                    value=None,
                    fn=flat.get(f"{group}.{FN}", ""),
                )
        yield OutlineNode(path=path, parent=".".join(parts[:-1]), name=parts[-1], value=value)


def root_fn(flat: Mapping[str, str]) -> str:
    """What the whole task builds (``partial(train)``, ``Script``), or ""."""
    return flat.get(FN, "")


def node_label(node: OutlineNode, value_style: str = "") -> Text:
    """How both trees show a node: ``name: Callable`` for a group, ``name = value`` for a leaf
    (the value in ``value_style``: set, default or edited)."""
    if node.value is None:
        label = Text(escape_cell(node.name), style="bold")
        if node.fn:
            label.append(f": {escape_cell(node.fn)}", style="italic")
        return label
    label = Text(f"{escape_cell(node.name)} = ")
    label.append(escape_cell(node.value), style=value_style)
    return label
