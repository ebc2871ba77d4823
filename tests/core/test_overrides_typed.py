"""Typed fields a new user tripped over: Path fields, default_factory fields, list hints."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core.config import Config, Partial
from core.overrides import OverrideError, apply_overrides, path_text
from core.serialize import flatten


@dataclass
class Data:
    path: Path = Path("/data/train")
    maybe: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=lambda: [1, 2])


class Untyped:
    def __init__(self, where=Path("/x")) -> None:  # type: ignore[no-untyped-def]  # on purpose
        self.where = where


def fit(data: Data, tags: list[str] | None = None, steps: int = 3) -> None:
    del data, tags, steps


def make_data() -> Data:
    return Data(path=Path("/small"))


def task() -> Any:
    return Partial(fit, data=Config(Data))


@pytest.mark.parametrize(
    "text", ["/data/val", "Path('/data/val')", 'PosixPath("/data/val")', "PurePath('/data/val')"]
)
def test_path_fields_take_text_and_the_display_of_a_path(text: str) -> None:
    result = apply_overrides(task(), [f"data.path={text}", f"data.maybe={text}"])
    assert result.data.path == Path("/data/val") and isinstance(result.data.path, Path)
    assert result.data.maybe == Path("/data/val")


def test_the_value_the_app_prefills_is_accepted_back() -> None:
    """The app shows flatten()'s text and applies it unchanged when the user keeps it."""
    shown = flatten(task(), include_defaults=True)["data.path"]
    assert shown == "Path('/data/train')"
    assert apply_overrides(task(), [f"data.path={shown}"]).data.path == Path("/data/train")


def test_an_unannotated_path_parameter_stays_a_path() -> None:
    result = apply_overrides(Config(Untyped), ["where=Path('/y')"])
    assert result.where == pathlib.PurePath("/y") and isinstance(result.where, Path)


def test_path_text_leaves_everything_else_alone() -> None:
    assert path_text("/plain/dir") == "/plain/dir"
    assert path_text("Path('a') + Path('b')") == "Path('a') + Path('b')"
    assert path_text("Path('it\\'s')") == "it's"
    assert path_text("Path(x)") == "Path(x)"


def test_default_factory_fields_show_their_value() -> None:
    flat = flatten(task(), include_defaults=True)
    assert flat["data.extra"] == "{}" and flat["data.sizes"] == "[1, 2]"
    assert "<factory>" not in "".join(flat.values())


def test_a_failing_default_factory_is_named_not_leaked() -> None:
    def broken() -> list[int]:
        raise RuntimeError("no")

    @dataclass
    class Broken:
        items: list[int] = field(default_factory=broken)

    flat = flatten(Partial(fit, data=Config(Broken)), include_defaults=True)
    assert flat["data.items"] == "<factory failed: RuntimeError>"


@pytest.mark.parametrize(
    ("override", "expected"),
    [("data.extra.a=1", {"a": 1}), ("data.extra={b: 2}", {"b": 2})],
)
def test_default_factory_dict_takes_keys(override: str, expected: dict[str, int]) -> None:
    assert apply_overrides(task(), [override]).data.extra == expected


@pytest.mark.parametrize(
    "override", ["data.extra.a.b=1", "data.sizes.5=1", "data.sizes.x=1", "data.extra=[1]"]
)
def test_default_factory_fields_fail_cleanly(override: str) -> None:
    with pytest.raises(OverrideError) as info:
        apply_overrides(task(), [override])
    assert "_HAS_DEFAULT_FACTORY" not in str(info.value)
    assert "\n" not in str(info.value)


def test_comma_separated_text_for_a_list_suggests_brackets() -> None:
    with pytest.raises(OverrideError, match=r"for a list, write `tags=\[a,b\]`"):
        apply_overrides(task(), ["tags=a, b"])
    assert apply_overrides(task(), ["tags=[a,b]"]).tags == ["a", "b"]


def test_a_comma_in_text_for_a_str_field_is_just_text() -> None:
    def named(label: str = "") -> None:
        del label

    assert apply_overrides(Partial(named), ["label=a,b"]).label == "a,b"


def test_an_unknown_factory_lists_the_known_ones() -> None:
    factories = {"make_data": make_data, "other_data": make_data}
    with pytest.raises(OverrideError, match=r"\(factories: make_data, other_data\)"):
        apply_overrides(task(), ["data=zzz_unrelated"], factories=factories)
    with pytest.raises(OverrideError, match="did you mean factory `make_data`"):
        apply_overrides(task(), ["data=make_dat"], factories=factories)
    assert apply_overrides(task(), ["data=make_data"], factories=factories).data.path == Path(
        "/small"
    )
