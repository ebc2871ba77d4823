"""core.overrides under generated input: only OverrideError escapes, and what passes fits.

Two generators feed :func:`apply_overrides`: arbitrary text (any code point, surrogates
included, as undecodable command-line bytes arrive), and near-valid overrides built from the
configs' real field paths with hostile values (deep or unbalanced brackets, ``{[]}``, huge
and hex integers, floats past the float range, quotes, unicode, stray ``=`` and ``.``).

For every example: either one :class:`OverrideError` whose message is one short printable
line, or a task whose every field still matches its annotation (checked here by a walker
independent of the parser's own checker) and that the store can write and read back.

CI runs at least 5,000 examples of each generator (``CI`` set); a local run, 500.
"""

from __future__ import annotations

import collections
import collections.abc
import dataclasses
import enum
import functools
import os
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Literal

import fiddle as fdl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import serialize
from core.config import Config, Partial
from core.overrides import MAX_DEPTH, OverrideError, apply_overrides

EXAMPLES = 5000 if os.environ.get("CI") else 500
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Inner:
    size: int = 1
    ratio: float = 0.5
    flag: bool = False
    label: str = "x"


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    maybe: int | None = None
    where: Path = Path("/tmp/data")
    mode: Literal["a", "b"] = "a"
    color: Color = Color.RED
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    pair: tuple[int, float] = (1, 1.0)
    table: dict[str, float] = field(default_factory=lambda: {"k": 1.0})


def fit(
    outer: Outer,
    inner: Inner,
    lr: float = 0.1,
    steps: int = 10,
    tags: list[str] | None = None,
    grid: list[list[int]] | None = None,
    names: Sequence[str] = (),
    either: int | str = 0,
    opt: float | None = None,
    ids: set[int] | None = None,
    anything: Any = None,
    untyped=None,
) -> None:
    del outer, inner, lr, steps, tags, grid, names, either, opt, ids, anything, untyped


def small_inner() -> Config:
    return Config(Inner, size=2)


FACTORIES = {"small_inner": small_inner, "big": lambda: Config(Inner, size=1000)}


def fiddle_task() -> Partial:
    """Fields held by fiddle Configs all the way down."""
    return Partial(fit, outer=Config(Outer, inner=Config(Inner)), inner=Config(Inner), tags=["t"])


def dataclass_task() -> Partial:
    """The same fields held by plain dataclass instances (set by ``dataclasses.replace``)."""
    return Partial(fit, outer=Outer(), inner=Inner(), grid=[[1], [2, 3]])


TASKS = (fiddle_task, dataclass_task)

# Paths that exist in both tasks, plus element paths into the lists and the dict.
PATHS = [
    "lr",
    "steps",
    "tags",
    "tags.0",
    "grid",
    "grid.0",
    "grid.1.1",
    "names",
    "either",
    "opt",
    "ids",
    "anything",
    "untyped",
    "inner",
    "inner.size",
    "inner.ratio",
    "inner.flag",
    "inner.label",
    "outer",
    "outer.inner",
    "outer.inner.size",
    "outer.inner.ratio",
    "outer.maybe",
    "outer.where",
    "outer.mode",
    "outer.color",
    "outer.sizes",
    "outer.sizes.1",
    "outer.pair",
    "outer.pair.0",
    "outer.table",
    "outer.table.k",
    "outer.table.new",
]

# -- generators -----------------------------------------------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # every code point, lone surrogates too
WORDS = st.sampled_from(
    [
        "None",
        "True",
        "false",
        "inf",
        "-inf",
        "nan",
        "a",
        "b",
        "RED",
        "blue",
        "small_inner",
        "big",
        "smal_inner",
        "fast",
        "/tmp/x",
        "s3://b/k",
        "1_000",
        "0x10",
        "0o7",
        "0b1",
        "1j",
        "-0.0",
        "1e400",
        "-1e400",
        "1e-400",
        "=",
        ".",
        ":",
        ",",
        "é",
        "\u202e",
        "\x1b[31m",
        "\n",
        "\x00",
    ]
)


def _digits(n: int) -> str:
    return "9" * n


HUGE = st.one_of(
    st.sampled_from([309, 400, 4300, 4301, 6000]).map(_digits),  # float range, int/text limit
    st.integers(min_value=1, max_value=6000).map(_digits),
    st.integers(min_value=1, max_value=5000).map(lambda n: "0x" + "f" * n),
    st.integers(min_value=300, max_value=5000).map(lambda n: "1" + "0" * n + ".0"),
    st.integers(min_value=-(10**400), max_value=10**400).map(str),
)
NUMBERS = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    HUGE,
)
QUOTED = st.builds(
    lambda quote, body, close: quote + body + close,
    st.sampled_from(["'", '"']),
    st.text(st.sampled_from(list("ab =,[]{}()'\"\\xn")) | ANY_CHAR, max_size=12),
    st.sampled_from(["'", '"', ""]),
)
# Shapes a recursive generator reaches only rarely: unhashable set items and dict keys.
UNHASHABLE = st.sampled_from(["{[]}", "{[1], 2}", "{([],): 1}", "{(1, [2])}", "{{}}", "{a: {[]}}"])
ATOM = st.one_of(WORDS, NUMBERS, QUOTED, UNHASHABLE, st.text(ANY_CHAR, max_size=8))


def _container(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pairs = st.tuples(children, st.sampled_from([": ", ":", " "]), children).map("".join)
    return st.one_of(
        st.builds(
            lambda open_, items, sep, close: open_ + sep.join(items) + close,
            st.sampled_from(["[", "(", "{"]),
            st.lists(children, max_size=4),
            st.sampled_from([", ", ",", " ", ",,"]),
            st.sampled_from(["]", ")", "}", "", ",]", ")]"]),
        ),
        st.lists(pairs, max_size=3).map(lambda items: "{" + ", ".join(items) + "}"),
    )


VALUE = st.recursive(ATOM, _container, max_leaves=12)
DEEP = st.builds(
    lambda opener, n, inner, m, closer: opener * n + inner + closer * m,
    st.sampled_from(["[", "(", "{", "[(", "{["]),
    st.integers(min_value=MAX_DEPTH - 2, max_value=600),
    st.sampled_from(["", "1", "[]", "a", "{}", "1:2"]),
    st.integers(min_value=0, max_value=600),
    st.sampled_from(["]", ")", "}", ")]", "]}"]),
)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """``base`` with a few characters that break structure spliced in at random places."""
    text = draw(base)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):  # most stay well-formed
        at = draw(st.integers(min_value=0, max_value=len(text)))
        piece = draw(st.sampled_from(list("[]{}()'\",:=.\\ ")) | ANY_CHAR)
        text = text[:at] + piece + text[at:]
    return text


REAL_PATH = st.sampled_from(PATHS)
JUNK_PATH = st.one_of(
    REAL_PATH.map(lambda p: p + ".x"),
    REAL_PATH.map(lambda p: p + "." + "9" * 30),
    st.text(st.sampled_from(list("ab._0é")), min_size=1, max_size=10),
    st.integers(min_value=200, max_value=400).map(lambda n: "a" * n),
)
# Mostly real paths, so that the values get to be checked against an annotation.
PATH = st.integers(min_value=0, max_value=9).flatmap(lambda i: JUNK_PATH if i == 0 else REAL_PATH)
OPERATOR = st.sampled_from(["="] * 6 + ["+=", "-=", "*=", "/=", "==", " = ", "=+", ""])


@functools.cache
def ann_of(path: str) -> Any:
    """The annotation at a dotted path of ``fit`` (element types for list/dict items)."""
    ann: Any = fit
    for part in path.split("."):
        ann = _strip_optional(ann)
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        if origin in (list, collections.abc.Sequence):
            ann = args[0]
        elif origin is tuple:
            ann = args[int(part)]
        elif origin is dict:
            ann = args[1]
        else:
            ann = hints_of(ann).get(part, Any)
    return ann


def _strip_optional(ann: Any) -> Any:
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return ann


def typed_text(ann: Any) -> st.SearchStrategy[str]:
    """Override text that should fit ``ann`` (the parser's success path gets exercised)."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([typed_text(a) for a in args])
    if ann is type(None):
        return st.just("None")
    if origin is Literal:
        return st.sampled_from([repr(a) if isinstance(a, str) else str(a) for a in args] + ["a"])
    if ann is bool:
        return st.sampled_from(["True", "False", "true", "FALSE"])
    if ann is int:
        return st.one_of(st.integers().map(str), st.integers(0, 255).map(hex), HUGE)
    if ann is float:
        return st.one_of(st.floats().map(repr), st.integers().map(str), HUGE, WORDS)
    if ann is str:
        return st.one_of(WORDS, QUOTED, st.text(ANY_CHAR, max_size=10))
    if origin in (list, set, collections.abc.Sequence, tuple) or ann is Any:
        items = [typed_text(a) for a in args if a is not Ellipsis] or [ATOM]
        return st.lists(st.one_of(items), max_size=4).map(
            lambda xs: ("[{}]" if origin is not set else "{{{}}}").format(", ".join(xs))
        )
    if origin is dict:
        pair = st.tuples(st.text("abk", min_size=1, max_size=3), typed_text(args[1]))
        return st.lists(pair, max_size=3).map(
            lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"
        )
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return st.sampled_from([*ann.__members__, "red", "GREEN"])
    if isinstance(ann, type) and issubclass(ann, PurePath):
        return st.one_of(WORDS, QUOTED)
    return st.sampled_from([*FACTORIES, "smal_inner"])  # a nested config


@st.composite
def typed_override(draw: st.DrawFn) -> str:
    path = draw(REAL_PATH)
    return path + draw(OPERATOR) + draw(typed_text(ann_of(path)))


STRUCTURED = st.one_of(
    typed_override(),
    st.builds(
        lambda path, op, value: path + op + value,
        PATH,
        OPERATOR,
        mutated(st.one_of(VALUE, ATOM, HUGE, DEEP)),
    ),
)
ARBITRARY = st.one_of(
    st.text(ANY_CHAR, max_size=200),
    st.builds(lambda path, rest: path + "=" + rest, PATH, st.text(ANY_CHAR, max_size=200)),
)

# -- the independent check of "matches its annotation" ---------------------------------------


def matches(value: Any, ann: Any) -> bool:
    """Whether ``value`` is what ``ann`` describes (our own walker, not the parser's)."""
    if ann is Any or ann is None:
        return True
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if ann is type(None):
        return value is None
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if ann is bool:
        return type(value) is bool
    if ann is int:
        return type(value) is int
    if ann is float:
        return type(value) is float
    if ann is str:
        return type(value) is str
    if origin is list:
        return type(value) is list and all(matches(v, args[0]) for v in value)
    if origin is collections.abc.Sequence:
        return isinstance(value, list | tuple) and all(matches(v, args[0]) for v in value)
    if origin is set:
        return isinstance(value, set) and all(matches(v, args[0]) for v in value)
    if origin is tuple:
        return (
            type(value) is tuple
            and len(value) == len(args)
            and all(matches(v, a) for v, a in zip(value, args, strict=True))
        )
    if origin is dict:
        return type(value) is dict and all(
            matches(k, args[0]) and matches(v, args[1]) for k, v in value.items()
        )
    if isinstance(ann, type) and issubclass(ann, PurePath):
        return isinstance(value, ann)
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return isinstance(value, ann)
    if isinstance(ann, type) and dataclasses.is_dataclass(ann):
        if isinstance(value, fdl.Config):
            return issubclass(fdl.get_callable(value), ann)
        return isinstance(value, ann)
    raise AssertionError(f"the test does not know annotation {ann!r}")


hints_of = functools.cache(typing.get_type_hints)


def conforms(node: Any) -> None:
    """Every field of every Config/Partial/dataclass in ``node`` matches its annotation."""
    if isinstance(node, fdl.Buildable):
        hints = hints_of(fdl.get_callable(node))
        for name, value in node.__arguments__.items():
            assert matches(value, hints.get(name)), (name, value, hints.get(name))
            conforms(value)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        hints = hints_of(type(node))
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            assert matches(value, hints[f.name]), (f.name, value, hints[f.name])
            conforms(value)
    elif isinstance(node, list | tuple):
        for item in node:
            conforms(item)
    elif isinstance(node, dict):
        for item in node.values():
            conforms(item)


def finite_text(task: Any) -> dict[str, str]:
    """The flattened view, with nan spelt one way (nan != nan, but their text is equal)."""
    return serialize.flatten(task, include_defaults=True)


#: Per generator: how often each kind of message came back, and "applied".
OUTCOMES: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
_GIST = re.compile(r"`[^`]*`|\d+")  # a message with its particulars blanked: its kind


_BEFORE: dict[Any, str] = {}  # each task's document, untouched (made once: it costs)


def check(kind: str, overrides: list[str], make: Any) -> None:
    original = make()
    before = _BEFORE.get(make) or _BEFORE.setdefault(make, serialize.dumps(make()))
    try:
        result = apply_overrides(original, overrides, factories=FACTORIES)
    except OverrideError as exc:
        message = str(exc)
        assert message and message.isprintable() and len(message) <= 500, message
        assert len(message.splitlines()) == 1
        assert serialize.dumps(original) == before  # a failed override changed nothing
        OUTCOMES[kind][_GIST.sub("`…`", message)[:80]] += 1
        return
    OUTCOMES[kind]["applied"] += 1
    conforms(result)
    text = serialize.dumps(result)  # the store can write it ...
    again = serialize.loads(text)  # ... and the job can read it back
    assert finite_text(again) == finite_text(result)
    assert serialize.dumps(original) == before


def report(kind: str) -> collections.Counter[str]:
    """Print the outcome counts (``pytest -s`` shows them) and check enough examples ran."""
    outcomes = OUTCOMES[kind]
    total = sum(outcomes.values())
    print(
        f"\n{kind}: {total} examples; " + "; ".join(f"{n} {k}" for k, n in outcomes.most_common(12))
    )
    assert total >= EXAMPLES
    return outcomes


@pytest.mark.slow
def test_arbitrary_text_raises_only_override_error() -> None:
    @SETTINGS
    @given(st.lists(ARBITRARY, min_size=1, max_size=2), st.sampled_from(TASKS))
    def run(overrides: list[str], make: Any) -> None:
        check("arbitrary", overrides, make)

    OUTCOMES.pop("arbitrary", None)
    run()
    report("arbitrary")


@pytest.mark.slow
def test_near_valid_overrides_raise_only_override_error_or_fit_the_annotation() -> None:
    @SETTINGS
    @given(st.lists(STRUCTURED, min_size=1, max_size=2), st.sampled_from(TASKS))
    def run(overrides: list[str], make: Any) -> None:
        check("structured", overrides, make)

    OUTCOMES.pop("structured", None)
    run()
    outcomes = report("structured")
    # The generator reaches what it is for: values that get applied, and each bound.
    assert outcomes["applied"] >= EXAMPLES // 10
    for kind in ("brackets nest", "digits", "too large for a float", "must be scalars"):
        assert any(kind in gist for gist in outcomes), kind
