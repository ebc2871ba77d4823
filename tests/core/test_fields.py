"""core.fields: what `recipes RECIPE` shows: every field, its type and its value."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.config import Config, Partial
from core.fields import describe_fields


@dataclass
class Optim:
    lr: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)


@dataclass
class Data:
    root: Path = Path("/data")
    extra: dict[str, int] = field(default_factory=dict)


def train(optim: Optim, data: Data, steps: int = 10, tags: list[str] | None = None) -> None:
    del optim, data, steps, tags


def test_every_field_with_type_value_and_whether_set() -> None:
    task = Partial(train, optim=Config(Optim, lr=0.5), data=Config(Data), steps=3)
    fields = {f.path: f for f in describe_fields(task)}
    assert (fields["optim"].type, fields["optim"].value) == ("Optim", "Optim")
    assert (fields["optim.lr"].type, fields["optim.lr"].value) == ("float", "0.5")
    assert fields["optim.lr"].explicit is True
    assert (fields["optim.betas"].type, fields["optim.betas"].value) == (
        "tuple[float, float]",
        "(0.9, 0.99)",
    )
    assert fields["optim.betas"].explicit is False
    assert (fields["data.root"].type, fields["data.root"].value) == ("Path", "Path('/data')")
    assert fields["data.extra"].value == "{}"
    assert (fields["steps"].value, fields["steps"].explicit) == ("3", True)
    assert fields["tags"].type == "list[str] | None" and fields["tags"].value == "None"
    assert "__fn__" not in "".join(fields)


def test_a_required_field_says_so() -> None:
    fields = {f.path: f for f in describe_fields(Partial(train))}
    assert fields["optim"].value == "<required>" and fields["optim"].type == "Optim"
