"""The flattened-config walk shared by Compose's editable tree and Detail's read-only one."""

from __future__ import annotations

from rich.console import Console

from nemorun_tui.widgets.config_outline import config_outline, root_fn
from nemorun_tui.widgets.detail_pane import config_tree

FLAT = {
    "__fn__": "partial(train)",
    "layers.0.__fn__": "Linear",
    "layers.0.width": "64",
    "layers.1.__fn__": "Linear",
    "layers.1.width": "<required>",
    "opt.__fn__": "Adam",
    "opt.lr": "0.001",
    "seed": "0",
}


def test_groups_come_before_their_children_with_their_callable() -> None:
    nodes = [(n.path, n.parent, n.value, n.fn) for n in config_outline(FLAT)]
    assert nodes == [
        ("layers", "", None, ""),
        ("layers.0", "layers", None, "Linear"),
        ("layers.0.width", "layers.0", "64", ""),
        ("layers.1", "layers", None, "Linear"),
        ("layers.1.width", "layers.1", "<required>", ""),
        ("opt", "", None, "Adam"),
        ("opt.lr", "opt", "0.001", ""),
        ("seed", "", "0", ""),
    ]
    assert root_fn(FLAT) == "partial(train)" and root_fn({"x": "1"}) == ""


def test_detail_tree_renders_every_leaf_under_its_group() -> None:
    console = Console(width=60, record=True, color_system=None)
    console.print(config_tree(FLAT, explicit={"opt.lr"}))
    lines = console.export_text().splitlines()
    assert lines[0] == "partial(train)"
    opt = next(i for i, line in enumerate(lines) if "opt: Adam" in line)
    assert "lr = 0.001" in lines[opt + 1]
    assert lines[opt + 1].index("lr") > lines[opt].index("opt"), "children are indented"
    assert any("width = <required>" in line for line in lines)
