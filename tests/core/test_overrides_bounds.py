"""core.overrides at its bounds: each input that once escaped as a foreign exception.

Every case here used to raise RecursionError, TypeError or OverflowError out of the parser,
or to pass and then fail when the experiment was recorded; now each is one OverrideError
line naming the field, and what is accepted can be stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core import serialize
from core.config import Config, Partial
from core.overrides import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    OverrideError,
    apply_overrides,
    parse_override,
    parse_value,
)


@dataclass
class Optimizer:
    lr: float = 3e-4


@dataclass
class Data:
    root: Path = Path("/data")
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    weights: dict[str, float] = field(default_factory=dict)


def train(
    optimizer: Optimizer,
    data: Data,
    seed: int = 0,
    name: str = "run",
    tags: list[str] | None = None,
    ids: set[int] | None = None,
    anything: Any = None,
) -> None:
    del optimizer, data, seed, name, tags, ids, anything


def base() -> Partial:
    return Partial(train, optimizer=Config(Optimizer), data=Config(Data))


def apply(*overrides: str) -> Any:
    return apply_overrides(base(), overrides, factories={"opt": lambda: Config(Optimizer)})


def error(*overrides: str) -> str:
    with pytest.raises(OverrideError) as info:
        apply(*overrides)
    message = str(info.value)
    assert message.isprintable() and len(message) <= 500, message
    return message


def digits(n: int) -> str:
    return "9" * n


# -- nesting -------------------------------------------------------------------------------


def test_brackets_nested_500_deep_are_one_error_not_a_recursion_error() -> None:
    message = error("anything=" + "[" * 500)
    assert message == (
        f"cannot parse value for `anything`: brackets nest more than {MAX_DEPTH} levels deep"
    )
    assert "more than 100" in error("anything=" + "{" * 101 + "}" * 101)
    with pytest.raises(OverrideError, match="nest more than"):
        parse_value("(" * 10_000)


def test_nesting_up_to_the_bound_is_accepted_and_stored() -> None:
    task = apply("anything=" + "[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH)
    value = task.anything
    for _ in range(MAX_DEPTH):
        (value,) = value
    assert value == 1
    assert serialize.loads(serialize.dumps(task)).anything == task.anything


# -- set items and dict keys ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tags={[]}", "cannot parse value for `tags`: set items must be scalars, got list"),
        ("anything={[1], 2}", "set items must be scalars, got list"),
        ("anything={(1, [2])}", "set items must be scalars, got list"),
        ("anything={([],): 1}", "dict keys must be scalars, got list"),
        ("anything={opt}", "`anything`: Config[Optimizer] cannot be a set item or key"),
        ("ids={1, 2}", "`ids`: a set cannot be stored in a task; use a list"),
        ("anything={1: a}", "`anything`: dict keys must be strings to be stored, got int 1"),
    ],
)
def test_unhashable_or_unstorable_containers_are_refused(override: str, message: str) -> None:
    assert message in error(override)


# -- floats --------------------------------------------------------------------------------


def test_a_400_digit_int_into_a_float_field_is_refused() -> None:
    message = error(f"optimizer.lr={digits(400)}")
    assert message.startswith("`optimizer.lr` expects float, got int 999")
    assert message.endswith("... (too large for a float)")


@pytest.mark.parametrize(
    "override",
    [f"optimizer.lr*={digits(400)}", "optimizer.lr*=1e308", f"optimizer.lr+={digits(400)}"],
)
def test_lr_times_huge_is_refused_not_overflow_or_inf(override: str) -> None:
    task = base()
    task.optimizer.lr = 1e10  # 1e10 * 1e308 overflows to inf
    with pytest.raises(OverrideError) as info:
        apply_overrides(task, [override])
    assert str(info.value).endswith("`: the result is too large for a float")


def test_a_float_literal_past_the_range_is_refused_but_inf_is_a_choice() -> None:
    assert error("optimizer.lr=1e400") == (
        "`optimizer.lr`: `1e400` is too large for a float (write `inf`)"
    )
    assert apply("optimizer.lr=inf").optimizer.lr == float("inf")
    assert apply("optimizer.lr=inf", "optimizer.lr*=2").optimizer.lr == float("inf")
    assert apply("optimizer.lr*=1e300").optimizer.lr == pytest.approx(3e296)
    assert apply("name=1e400").name == "1e400"  # a string field takes the text


# -- integers and Python's int/text limit --------------------------------------------------


def test_an_int_past_the_digit_limit_is_refused_at_parse_time() -> None:
    message = error(f"seed={digits(MAX_INT_DIGITS + 1)}")
    assert message.startswith("`seed`: the integer `999")
    assert message.endswith(f"has more than {MAX_INT_DIGITS} digits")
    assert "digits" in error("seed=0x" + "f" * 4000)  # not in base 10: no limit when read
    assert "digits" in error(f"anything=[{digits(5000)}]")
    with pytest.raises(OverrideError, match="digits"):
        parse_value(digits(5000))


def test_arithmetic_past_the_digit_limit_is_refused_before_recording() -> None:
    big = digits(4000)
    message = error(f"seed={big}", f"seed*={big}")
    assert message == f"`seed*=`: the result has more than {MAX_INT_DIGITS} digits"


def test_the_largest_int_allowed_is_stored_and_read_back() -> None:
    task = apply(f"seed={digits(MAX_INT_DIGITS)}")
    assert serialize.loads(serialize.dumps(task)).seed == 10**MAX_INT_DIGITS - 1


def test_a_long_digit_string_is_still_text_for_a_string_field() -> None:
    assert apply(f"name={digits(5000)}").name == digits(5000)


# -- names, text and paths -----------------------------------------------------------------


def test_over_long_field_names_and_indices_are_refused() -> None:
    assert "is 300 characters long (at most 255)" in error("a" * 300 + "=1")
    assert "at most 255" in error("data.sizes." + "9" * 5000 + "=1")
    assert "index 99999 is out of range" in error("data.sizes.99999=1")


def test_undecodable_bytes_are_refused_before_they_reach_the_store() -> None:
    bad = b"tags=[\xff]".decode("utf-8", "surrogateescape")  # how argv delivers them
    assert error(bad) == "override `tags=[\\udcff]` is not valid UTF-8 text"


def test_messages_are_one_printable_line_whatever_was_typed() -> None:
    message = error("seed=\x1b[31mred\nline\u2028two")
    assert message == "`seed` expects int, got str '\\x1b[31mred\\nline\\u2028two'"
    with pytest.raises(OverrideError) as info:
        parse_override("x" * 10_000)
    assert len(str(info.value)) < 200


def test_path_fields_take_text_and_refuse_nul() -> None:
    task = apply("data.root=/scratch/run 1")
    assert task.data.root == Path("/scratch/run 1")
    assert serialize.loads(serialize.dumps(task)).data.root == Path("/scratch/run 1")
    assert "without NUL" in error("data.root='a\\x00b'")


def test_dotted_override_into_a_default_factory_field_starts_from_its_default() -> None:
    task = apply("data.sizes.0=5", "data.weights.a=0.5")
    assert task.data.sizes == [5, 2]
    assert task.data.weights == {"a": 0.5}
    assert apply("data.sizes+=[3]").data.sizes == [1, 2, 3]
    assert "sizes" not in base().data.__arguments__
