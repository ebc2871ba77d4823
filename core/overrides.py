"""Dotted overrides (``trainer.max_steps=10``), parsed and type-checked before anything is set.

The CLI and the app's config editor both go through :func:`apply_overrides`, so a value that
would only fail deep inside a job (a string where an int belongs, ``None`` in a required
field, a misspelt field) is rejected at the keyboard with one actionable line.

Value syntax: Python literals (numbers, ``None``, ``True``, quoted strings, lists, tuples,
dicts), bare words as strings (``mode=fast``, ``tags=[a, b]``), enum members by name
(``precision=bf16``) and factory names (``trainer=small_trainer``). Only the first operator
after the dotted path splits, so ``arg='a=b c'`` is the string ``a=b c``. Besides ``=``,
``+= -= *= /=`` update numbers (``+=`` also extends lists and strings).

Hostile or careless input is bounded here, so it fails at the keyboard with one line rather
than later, when the experiment is recorded or the job reads it back: containers nest at most
:data:`MAX_DEPTH` deep, integers have at most :data:`MAX_INT_DIGITS` digits (Python's own
int/text limit, which ``json`` hits when the task is stored), a number too large for a float
field is refused instead of becoming ``inf``, and a value must be storable (no sets, no
non-string dict keys, UTF-8 text). :class:`OverrideError` is the only error that escapes.

fiddle is never imported here: a task that holds fiddle objects already imported it.
"""

from __future__ import annotations

import ast
import collections.abc
import copy
import dataclasses
import difflib
import enum
import functools
import inspect
import math
import pathlib
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.config import fiddle_kind

if TYPE_CHECKING:
    from core.config import Task

__all__ = ["Override", "OverrideError", "apply_overrides", "parse_override", "parse_value"]


#: Deepest nesting of ``[ ( {`` in a value: deep enough for any config, shallow enough that
#: parsing, checking, copying and storing never approach Python's recursion limit.
MAX_DEPTH = 100
#: Most digits an integer may have: Python's default int<->text limit
#: (``sys.set_int_max_str_digits``), past which the task could not be stored or read back.
MAX_INT_DIGITS = 4300
#: Longest field name in a dotted path (a file name's limit; no real field is near it).
MAX_FIELD_NAME = 255
#: How much of the user's text an error message quotes.
_SHOWN = 60
_MESSAGE_LIMIT = 500
_INT_LIMIT = 10**MAX_INT_DIGITS
_DECIMAL_INT = re.compile(r"[+-]?\d(?:_?\d)*")


def _one_line(text: str) -> str:
    """``text`` with every non-printable character escaped (newlines, ESC, surrogates...)."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def _shown(text: str, limit: int = _SHOWN) -> str:
    """The user's text as quoted in a message: clipped, so one bad value gives a short line."""
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OverrideError(ValueError):
    """An override cannot be parsed or does not fit the config; ``str()`` is one line.

    The message is made one printable line here, whatever it quotes, so no caller (the CLI's
    stderr line, the app's notice) can be split or steered by the text the user typed.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(_shown(str(message), _MESSAGE_LIMIT))


OPERATORS = ("=", "+=", "-=", "*=", "/=")

_OVERRIDE = re.compile(
    r"\s*(?P<path>[A-Za-z_]\w*(?:\.\w+)*)\s*(?P<op>\+=|-=|\*=|/=|=)(?P<value>.*)\Z",
    re.DOTALL,
)


@dataclass(frozen=True)
class Override:
    """One parsed ``path op value`` override; the value is parsed when it is applied."""

    path: tuple[str, ...]
    op: str
    raw_value: str

    @property
    def dotted(self) -> str:
        """The path as the user wrote it (``trainer.max_steps``)."""
        return ".".join(self.path)

    def __str__(self) -> str:
        return f"{self.dotted}{self.op}{self.raw_value}"


def parse_override(text: str) -> Override:
    """Split ``trainer.max_steps=10`` into path, operator and raw value."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Undecodable bytes on the command line arrive as lone surrogates; stored, they
        # would fail when the experiment is written, so refuse them here.
        raise OverrideError(f"override `{_shown(text)}` is not valid UTF-8 text") from None
    match = _OVERRIDE.match(text)
    if match is None:
        if "=" not in text:
            raise OverrideError(
                f"cannot parse override `{_shown(text)}`: expected `path=value` "
                "(e.g. `trainer.max_steps=10`)"
            )
        left = text.split("=", 1)[0].rstrip("+-*/ ")
        raise OverrideError(
            f"cannot parse override `{_shown(text)}`: `{_shown(left)}` is not a dotted field path"
        )
    path = tuple(match["path"].split("."))
    for name in path:
        if len(name) > MAX_FIELD_NAME:
            raise OverrideError(
                f"cannot parse override `{_shown(text)}`: field name `{_shown(name)}` is "
                f"{len(name)} characters long (at most {MAX_FIELD_NAME})"
            )
    return Override(path=path, op=match["op"], raw_value=match["value"])


# --------------------------------------------------------------------------- value parsing


_NO_LITERAL: Any = object()


@dataclass(frozen=True)
class _Bare:
    """An unquoted token: its text, and its literal value if it is a number/bool/None.

    Keeping both lets the type check decide: ``name=1.10`` for a ``str`` field is the text
    ``"1.10"``, for a ``float`` field the number; ``trainer=small_trainer`` is a factory when
    the field wants a config, and the string when it wants a ``str``.
    """

    text: str
    literal: Any = _NO_LITERAL
    #: Why the token is not a usable number although it reads as one (too many digits, too
    #: large for a float); it may still be text where the field takes a string.
    problem: str | None = None

    @property
    def has_literal(self) -> bool:
        return self.literal is not _NO_LITERAL


class _ParseError(Exception):
    """Internal: why a value did not parse (wrapped into an OverrideError with the path)."""


def _bare(token: str) -> _Bare:
    try:
        value = ast.literal_eval(token)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if _DECIMAL_INT.fullmatch(token):  # Python refuses to read it: too many digits
            return _Bare(token, problem=_too_many_digits(token))
        return _Bare(token)
    if type(value) is int and not -_INT_LIMIT < value < _INT_LIMIT:  # hex/octal/binary
        return _Bare(token, problem=_too_many_digits(token))
    if type(value) is float and not math.isfinite(value):  # 1e400: a typo, not a wish for inf
        return _Bare(token, problem=f"`{_shown(token)}` is too large for a float (write `inf`)")
    if value is None or type(value) in (bool, int, float):
        return _Bare(token, value)
    return _Bare(token)


def _too_many_digits(token: str) -> str:
    return f"the integer `{_shown(token)}` has more than {MAX_INT_DIGITS} digits"


def _quoted(token: str) -> str:
    try:
        value = ast.literal_eval(token)
    except (ValueError, SyntaxError):
        raise _ParseError(f"malformed quoted string {token}") from None
    if not isinstance(value, str):
        raise _ParseError(f"malformed quoted string {token}")
    return value


class _Parser:
    """Recursive descent over lists/tuples/dicts/sets whose items may be bare words."""

    _CLOSE = {"[": "]", "(": ")", "{": "}"}

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

    def _ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> Any:
        value = self._value(stops="")
        self._ws()
        if self.pos < len(self.text):
            raise _ParseError(f"unexpected `{self.text[self.pos :]}` after the value")
        return value

    def _value(self, stops: str) -> Any:
        self._ws()
        char = self._peek()
        if char in self._CLOSE and char:
            return self._container(char)
        if char in ("'", '"'):
            return self._string()
        return self._word(stops)

    def _string(self) -> str:
        quote = self.text[self.pos]
        start = self.pos
        self.pos += 1
        while self.pos < len(self.text) and self.text[self.pos] != quote:
            self.pos += 2 if self.text[self.pos] == "\\" else 1
        if self.pos >= len(self.text):
            raise _ParseError(f"unterminated string {self.text[start:]}")
        self.pos += 1
        return _quoted(self.text[start : self.pos])

    def _word(self, stops: str) -> _Bare:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in stops:
            self.pos += 1
        token = self.text[start : self.pos].strip()
        if not token:
            shown = self.text[start : start + 1] or "end of input"
            raise _ParseError(f"expected a value before `{shown}`")
        return _bare(token)

    def _container(self, opener: str) -> Any:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _ParseError(f"brackets nest more than {MAX_DEPTH} levels deep")
        try:
            return self._items(opener)
        finally:
            self.depth -= 1

    def _items(self, opener: str) -> Any:
        closer = self._CLOSE[opener]
        start = self.pos
        self.pos += 1
        items: list[Any] = []
        pairs: list[tuple[Any, Any]] = []
        is_dict: bool | None = None
        trailing_comma = False
        while True:
            self._ws()
            if self._peek() == closer:
                self.pos += 1
                break
            if not self._peek():
                raise _ParseError(f"missing `{closer}` in `{_shown(self.text[start:])}`")
            if opener == "{":
                key = self._value(stops=",:}")
                self._ws()
                if is_dict is None:
                    is_dict = self._peek() == ":"
                if is_dict:
                    if self._peek() != ":":
                        raise _ParseError(
                            f"expected `:` after dict key in `{_shown(self.text[start:])}`"
                        )
                    self.pos += 1
                    pairs.append((_hashable_key(key, "dict keys"), self._value(stops=",}")))
                else:
                    items.append(key)
            else:
                items.append(self._value(stops="," + closer))
            self._ws()
            char = self._peek()
            if char == ",":
                self.pos += 1
                trailing_comma = True
            elif char == closer:
                self.pos += 1
                trailing_comma = False
                break
            elif not char:
                raise _ParseError(f"missing `{closer}` in `{_shown(self.text[start:])}`")
            else:
                raise _ParseError(f"expected `,` or `{closer}` but found `{_shown(char)}`")
        if opener == "[":
            return items
        if opener == "(":
            if len(items) == 1 and not trailing_comma:
                return items[0]
            return tuple(items)
        if is_dict or is_dict is None:
            return dict(pairs)
        for item in items:
            _hashable_key(item, "set items")
        return set(items)


def _hashable_key(key: Any, what: str) -> Any:
    """``key`` as a set item or dict key: scalars, and tuples of them (``{[]}`` is refused)."""
    if isinstance(key, _Bare):
        return key.literal if key.has_literal else key.text
    if isinstance(key, tuple):
        for item in key:
            _hashable_key(item, what)
        return key
    if isinstance(key, str | int | float | bool) or key is None:
        return key
    raise _ParseError(f"{what} must be scalars, got {type(key).__name__}")


def _parse(raw: str) -> Any:
    """Parse an override value; the result may contain :class:`_Bare` tokens."""
    text = raw.strip()
    if not text:
        return ""
    if text[0] in "[({":
        return _Parser(text).parse()
    if text[0] in "'\"":
        return _quoted(text) if len(text) > 1 and text[-1] == text[0] else _unterminated(text)
    return _bare(text)


def _unterminated(text: str) -> str:
    raise _ParseError(f"unterminated string {_shown(text)}")


def parse_value(raw: str) -> Any:
    """Parse an override value as plain Python (bare words become strings)."""
    try:
        return _plain(_parse(raw), strict=True)
    except _ParseError as exc:
        raise OverrideError(f"cannot parse value `{_shown(raw.strip())}`: {exc}") from None


def _plain(value: Any, *, strict: bool = False) -> Any:
    """Parsed tokens as plain values; ``strict`` refuses a number that cannot be one."""
    if isinstance(value, _Bare):
        if strict and value.problem is not None:
            raise _ParseError(value.problem)
        return value.literal if value.has_literal else value.text
    if isinstance(value, list):
        return [_plain(item, strict=strict) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain(item, strict=strict) for item in value)
    if isinstance(value, set):
        return {_plain(item, strict=strict) for item in value}
    if isinstance(value, dict):
        return {key: _plain(item, strict=strict) for key, item in value.items()}
    return value


# --------------------------------------------------------------------------- introspection


_MISSING: Any = object()


def _name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)


def _type_hints(fn: Any) -> dict[str, Any]:
    """Resolved annotations of a function, or of a class's fields/``__init__`` (read-only).

    String annotations (``from __future__ import annotations``) are resolved; if some name
    cannot be resolved, the annotations that are already objects are still used and the rest
    count as unannotated (accepted), rather than failing the override. Resolving evaluates
    every string annotation, so it is remembered per callable: the app re-applies all
    overrides on each edit.
    """
    try:
        return _cached_hints(fn)
    except TypeError:  # an unhashable callable: resolve it every time
        return _resolve_hints(fn)


@functools.lru_cache(maxsize=512)
def _cached_hints(fn: Any) -> dict[str, Any]:
    return _resolve_hints(fn)


def _resolve_hints(fn: Any) -> dict[str, Any]:
    target = fn
    if isinstance(fn, type) and not dataclasses.is_dataclass(fn):
        target = fn.__init__  # type: ignore[misc]  # the hints wanted are the class's __init__'s
    try:
        return typing.get_type_hints(target)
    except Exception:
        raw = getattr(target, "__annotations__", None) or {}
        return {key: value for key, value in raw.items() if not isinstance(value, str)}


def _describe(value: Any) -> str:
    if value is getattr(dataclasses, "_HAS_DEFAULT_FACTORY", _MISSING):
        return "a default_factory placeholder"  # never the sentinel's class name
    value = _plain(value)
    kind = fiddle_kind(value)
    if kind == "partial":
        return f"partial({_name(value.__fn_or_cls__)})"
    if kind == "config":
        return f"Config[{_name(value.__fn_or_cls__)}]"
    if value is None:
        return "None"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _type_name(ann: Any) -> str:
    ann = _strip_annotated(ann)
    if ann is type(None) or ann is None:
        return "None"
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in typing.get_args(ann))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in typing.get_args(ann))
    if origin is not None:
        args = ", ".join(
            "..." if arg is Ellipsis else _type_name(arg) for arg in typing.get_args(ann)
        )
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{args}]" if args else base
    if isinstance(ann, type):
        return ann.__name__
    return str(ann).replace("typing.", "")


def _strip_annotated(ann: Any) -> Any:
    while typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    return ann


def _is_unknown(ann: Any) -> bool:
    return (
        ann is _MISSING
        or ann is None
        or ann is typing.Any
        or ann is object
        or ann is inspect.Parameter.empty
        or isinstance(ann, str | typing.TypeVar | typing.ForwardRef)
    )


def _builds_instance_of(config: Any, cls: type) -> bool:
    """Whether building ``config`` gives a ``cls`` (by class, or by a return annotation)."""
    fn = config.__fn_or_cls__
    if isinstance(fn, type):
        return issubclass(fn, cls)
    returned = _type_hints(fn).get("return", _MISSING)
    if isinstance(returned, type):
        return issubclass(returned, cls)
    return True  # unannotated factory function: cannot tell, accept


# --------------------------------------------------------------------------- checking


class _Checker:
    """Checks/coerces parsed values against annotations; resolves factory names."""

    def __init__(self, factories: Mapping[str, Callable[[], Any]]) -> None:
        self.factories = factories

    def fail(self, where: str, ann: Any, value: Any, hint: str = "") -> OverrideError:
        return OverrideError(f"`{where}` expects {_type_name(ann)}, got {_describe(value)}{hint}")

    def make(self, name: str, where: str) -> Any:
        try:
            return self.factories[name]()
        except OverrideError:
            raise
        except Exception as exc:
            recipes = sys.modules.get("core.recipes")
            if recipes is not None and isinstance(exc, recipes.RecipeError):
                # Already one line naming the factory and its source line.
                raise OverrideError(f"{exc} (for `{where}`)") from exc
            raise OverrideError(
                f"factory `{name}` (for `{where}`) failed: {type(exc).__name__}: {exc}"
            ) from exc

    def check(self, value: Any, ann: Any, where: str) -> Any:
        if isinstance(value, _Bare):
            return self.check_bare(value, ann, where)
        ann = _strip_annotated(ann)
        if _is_unknown(ann):
            return self.unwrap(value, where)
        origin = typing.get_origin(ann)
        args = typing.get_args(ann)
        if origin in (typing.Union, types.UnionType):
            return self._union(value, ann, args, where)
        if origin is typing.Literal:
            for option in args:
                if value == option and type(value) is type(option):
                    return value
            raise self.fail(where, ann, value)
        if ann is type(None):
            if value is None:
                return None
            raise self.fail(where, ann, value)
        if value is None:
            raise self.fail(where, ann, value, " (only Optional fields accept None)")
        if isinstance(ann, type) and issubclass(ann, enum.Enum):
            return self._enum(value, ann, where)
        if ann is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise self.fail(where, ann, value)
        if ann is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise self.fail(where, ann, value)
        if ann is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                try:
                    return float(value)
                except OverflowError:
                    raise self.fail(where, ann, value, " (too large for a float)") from None
            if isinstance(value, str) and value.lower() in ("inf", "+inf", "-inf", "nan"):
                return float(value)
            raise self.fail(where, ann, value)
        if ann is str:
            if isinstance(value, str):
                return value
            raise self.fail(where, ann, value)
        container = self._container(value, ann, origin, args, where)
        if container is not _MISSING:
            return container
        if origin is type:
            if isinstance(value, type) and (not args or _issubclass(value, args[0])):
                return value
            raise self.fail(where, ann, value)
        if isinstance(ann, type) and issubclass(ann, pathlib.PurePath) and isinstance(value, str):
            return self._path(value, ann, where)
        if origin is collections.abc.Callable or ann is collections.abc.Callable:
            if callable(value) or fiddle_kind(value) == "partial":
                return value
            raise self.fail(where, ann, value)
        if isinstance(ann, type):
            return self._instance(value, ann, where)
        return self.unwrap(value, where)

    def _path(self, value: str, ann: type, where: str) -> Any:
        value = path_text(value)
        if not value or "\0" in value:
            raise self.fail(where, ann, value, " (a path must be non-empty, without NUL)")
        try:
            return ann(value)
        except Exception as exc:  # a foreign flavour (WindowsPath here) cannot be made
            raise self.fail(where, ann, value, f" ({type(exc).__name__})") from None

    def check_bare(self, value: _Bare, ann: Any, where: str) -> Any:
        """Decide what an unquoted token means for this annotation (see :class:`_Bare`)."""
        if value.problem is not None:
            # Reads as a number but cannot be one: only a field that takes text takes it.
            if not _is_unknown(_strip_annotated(ann)):
                try:
                    return self.check(value.text, ann, where)
                except OverrideError:
                    pass
            raise OverrideError(f"`{where}`: {value.problem}")
        first_error: OverrideError | None = None
        if value.has_literal:
            try:
                return self.check(value.literal, ann, where)
            except OverrideError as exc:
                first_error = exc
            if value.literal is None or isinstance(value.literal, bool):
                raise first_error
        if value.text in self.factories:
            if _is_unknown(_strip_annotated(ann)):
                return self.check(self.make(value.text, where), ann, where)
            try:
                return self.check(value.text, ann, where)
            except OverrideError:
                return self.check(self.make(value.text, where), ann, where)
        try:
            return self.check(value.text, ann, where)
        except OverrideError as exc:
            if first_error is not None:
                raise first_error from None
            if "," in value.text and _is_sequence(ann):
                items = ",".join(part.strip() for part in value.text.split(","))
                raise OverrideError(f"{exc}; for a list, write `{where}=[{items}]`") from None
            if _is_primitive(ann) or not self.factories:
                raise
            close = difflib.get_close_matches(value.text, list(self.factories), n=1)
            if close:
                raise OverrideError(f"{exc}; did you mean factory `{close[0]}`?") from None
            names = sorted(self.factories)
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise OverrideError(f"{exc} (factories: {shown})") from None

    def unwrap(self, value: Any, where: str) -> Any:
        """Turn parsed tokens into plain values where nothing constrains the type."""
        if isinstance(value, _Bare):
            if value.problem is not None:
                raise OverrideError(f"`{where}`: {value.problem}")
            if value.has_literal:
                return value.literal
            if value.text in self.factories:
                return self.make(value.text, where)
            return value.text
        if isinstance(value, list):
            return [self.unwrap(item, f"{where}.{i}") for i, item in enumerate(value)]
        if isinstance(value, tuple):
            return tuple(self.unwrap(item, f"{where}.{i}") for i, item in enumerate(value))
        if isinstance(value, set):
            return _a_set([self.unwrap(item, where) for item in value], where)
        if isinstance(value, dict):
            return {key: self.unwrap(item, f"{where}.{key}") for key, item in value.items()}
        return value

    def _union(self, value: Any, ann: Any, args: tuple[Any, ...], where: str) -> Any:
        if value is None:
            if type(None) in args:
                return None
            raise self.fail(where, ann, value, " (only Optional fields accept None)")
        # Prefer a member the value already is, so `int | float` keeps an int an int.
        members = [arg for arg in args if arg is not type(None)]
        ordered = sorted(members, key=lambda arg: 0 if _exactly(value, arg) else 1)
        errors: list[OverrideError] = []
        for option in ordered:
            try:
                return self.check(value, option, where)
            except OverrideError as exc:
                errors.append(exc)
        if len(members) == 1:
            raise errors[0]  # Optional[X]: X's own message is the precise one
        raise self.fail(where, ann, value)

    def _enum(self, value: Any, ann: type[enum.Enum], where: str) -> Any:
        if isinstance(value, ann):
            return value
        if isinstance(value, str):
            members = ann.__members__
            if value in members:
                return members[value]
            folded = {name.lower(): member for name, member in members.items()}
            if value.lower() in folded:
                return folded[value.lower()]
        for member in ann:
            if member.value == value and type(member.value) is type(value):
                return member
        names = ", ".join(ann.__members__)
        raise self.fail(where, ann, value, f" (choose from {names})")

    def _container(
        self, value: Any, ann: Any, origin: Any, args: tuple[Any, ...], where: str
    ) -> Any:
        base = origin or ann
        if base in (list, collections.abc.Sequence, collections.abc.MutableSequence):
            if not isinstance(value, list | tuple):
                raise self.fail(where, ann, value)
            item_ann = args[0] if args else _MISSING
            items = [self.check(item, item_ann, f"{where}.{i}") for i, item in enumerate(value)]
            keep_tuple = base is collections.abc.Sequence and isinstance(value, tuple)
            return tuple(items) if keep_tuple else items
        if base is tuple:
            if not isinstance(value, list | tuple):
                raise self.fail(where, ann, value)
            if len(args) == 2 and args[1] is Ellipsis:
                anns = [args[0]] * len(value)
            elif args and args != ((),):
                if len(args) != len(value):
                    raise self.fail(where, ann, value, f" ({len(args)} items needed)")
                anns = list(args)
            else:
                anns = [_MISSING] * len(value)
            return tuple(
                self.check(item, item_ann, f"{where}.{i}")
                for i, (item, item_ann) in enumerate(zip(value, anns, strict=True))
            )
        if base in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
            if not isinstance(value, dict):
                raise self.fail(where, ann, value)
            key_ann, item_ann = args if len(args) == 2 else (_MISSING, _MISSING)
            checked = [
                (self.check(key, key_ann, where), self.check(item, item_ann, f"{where}.{key}"))
                for key, item in value.items()
            ]
            for key, _ in checked:
                _hash(key, where)
            return dict(checked)
        if base in (set, frozenset, collections.abc.Set):
            if not isinstance(value, set | frozenset | list | tuple):
                raise self.fail(where, ann, value)
            item_ann = args[0] if args else _MISSING
            members = _a_set([self.check(item, item_ann, where) for item in value], where)
            return frozenset(members) if base is frozenset else members
        return _MISSING

    def _instance(self, value: Any, ann: type, where: str) -> Any:
        kind = fiddle_kind(value)
        if kind == "config":
            if _builds_instance_of(value, ann):
                return value
            raise self.fail(where, ann, value)
        if kind == "partial":
            raise self.fail(where, ann, value, " (a Partial builds a callable, not an instance)")
        if isinstance(value, ann):
            return value
        raise self.fail(where, ann, value)


def _is_sequence(ann: Any) -> bool:
    """A list-like annotation (also inside ``Optional``): ``a,b`` was meant as ``[a,b]``."""
    ann = _strip_annotated(ann)
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence(arg) for arg in typing.get_args(ann) if arg is not type(None))
    sequences = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Set)
    return (origin or ann) in sequences


_PATH_REPR = re.compile(
    r"^(?:Pure)?(?:Posix|Windows)?Path\(\s*(?P<q>['\"])(?P<text>(?:\\.|(?!(?P=q)).)*)(?P=q)\s*\)$",
    re.DOTALL,
)


def path_text(value: str) -> str:
    """The path in ``value``: a display like ``Path('/data/train')`` (what the app pre-fills
    a Path field with, see :func:`core.serialize.flatten`) gives back ``/data/train``;
    anything else is the path itself."""
    match = _PATH_REPR.match(value.strip())
    if match is None:
        return value
    try:
        text = ast.literal_eval(f"{match['q']}{match['text']}{match['q']}")
    except (ValueError, SyntaxError):
        return value
    return text if isinstance(text, str) else value


def _hash(value: Any, where: str) -> None:
    try:
        hash(value)
    except TypeError:
        raise OverrideError(f"`{where}`: {_describe(value)} cannot be a set item or key") from None


def _a_set(items: list[Any], where: str) -> set[Any]:
    for item in items:  # a factory's Config, say, is not hashable
        _hash(item, where)
    return set(items)


def _issubclass(value: type, target: Any) -> bool:
    return not isinstance(target, type) or issubclass(value, target)


def _exactly(value: Any, ann: Any) -> bool:
    return isinstance(ann, type) and type(value) is ann


def _is_primitive(ann: Any) -> bool:
    ann = _strip_annotated(ann)
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return all(_is_primitive(arg) for arg in typing.get_args(ann))
    return ann in (int, float, str, bool, type(None)) or typing.get_origin(ann) is typing.Literal


# --------------------------------------------------------------------------- applying


@dataclass
class _Slot:
    """One named place inside a container: its current value, annotation, and a setter."""

    current: Any
    ann: Any
    explicit: bool
    store: Callable[[Any], Any]


def _close_names(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(f"`{c}`" for c in close) + "?"
    shown = ", ".join(names) if names else "none"
    return f" (fields: {shown})"


def _buildable_slot(buildable: Any, name: str) -> _Slot:
    fn = buildable.__fn_or_cls__
    signature = buildable.__signature_info__.signature
    params = {
        key: param
        for key, param in signature.parameters.items()
        if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
    }
    open_ended = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    if name not in params and not open_ended:
        hint = _close_names(name, list(params))
        raise OverrideError(f"`{_name(fn)}` has no field `{name}`{hint}")
    arguments = buildable.__arguments__
    param = params.get(name)
    if name in arguments:
        current, explicit = arguments[name], True
    elif param is not None and param.default is not param.empty:
        current, explicit = _signature_default(fn, name, param.default), False
    else:
        current, explicit = _MISSING, False
    ann = _type_hints(fn).get(name, _MISSING)

    def store(value: Any) -> Any:
        try:
            setattr(buildable, name, value)
        except (AttributeError, TypeError, ValueError) as exc:
            raise OverrideError(f"cannot set `{name}` on `{_name(fn)}`: {exc}") from exc
        return buildable

    return _Slot(current, ann, explicit, store)


def _signature_default(fn: Any, name: str, default: Any) -> Any:
    """A parameter's default; for a dataclass field with a ``default_factory``, a fresh value.

    A dataclass's signature shows such a field's default as a ``<factory>`` placeholder, so
    ``outer.sizes.0=5`` would otherwise index the placeholder instead of the list.
    """
    if default is not getattr(dataclasses, "_HAS_DEFAULT_FACTORY", _MISSING):
        return default
    fields = dataclasses.fields(fn) if dataclasses.is_dataclass(fn) else ()
    for item in fields:
        if item.name == name and item.default_factory is not dataclasses.MISSING:
            try:
                return item.default_factory()
            except Exception as exc:
                raise OverrideError(
                    f"the default of `{_name(fn)}.{name}` failed: {type(exc).__name__}: {exc}"
                ) from exc
    return _MISSING


def _dataclass_slot(obj: Any, name: str) -> _Slot:
    cls = type(obj)
    names = [f.name for f in dataclasses.fields(obj) if f.init]
    if name not in names:
        raise OverrideError(f"`{cls.__name__}` has no field `{name}`{_close_names(name, names)}")
    ann = _type_hints(cls).get(name, _MISSING)
    is_script = _is_script(obj)

    def store(value: Any) -> Any:
        changes = {name: value}
        if is_script and value is not None and name in ("path", "inline"):
            # Switching between a file and inline source replaces the other one.
            changes["inline" if name == "path" else "path"] = None
        try:
            return dataclasses.replace(obj, **changes)
        except (TypeError, ValueError) as exc:
            raise OverrideError(f"cannot set `{name}` on `{cls.__name__}`: {exc}") from exc

    return _Slot(getattr(obj, name), ann, True, store)


def _is_script(obj: Any) -> bool:
    config = sys.modules.get("core.config")
    return config is not None and isinstance(obj, config.Script)


def _element_ann(ann: Any, position: int) -> Any:
    ann = _strip_annotated(ann)
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in args if arg is not type(None)]
        return _element_ann(members[0], position) if len(members) == 1 else _MISSING
    if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence) and args:
        return args[0]
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return args[position] if position < len(args) else _MISSING
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping) and args:
        return args[1]
    return _MISSING


def _sequence_slot(seq: list[Any] | tuple[Any, ...], name: str, ann: Any, where: str) -> _Slot:
    if not re.fullmatch(r"-?\d+", name):
        raise OverrideError(f"`{where}` is a list; use an index like `{where}.0`, not `{name}`")
    index = int(name)
    if not -len(seq) <= index < len(seq):
        raise OverrideError(f"`{where}` has {len(seq)} items; index {index} is out of range")

    def store(value: Any) -> Any:
        if isinstance(seq, list):
            seq[index] = value
            return seq
        items = list(seq)
        items[index] = value
        return tuple(items)

    return _Slot(seq[index], _element_ann(ann, index), True, store)


def _dict_slot(mapping: dict[Any, Any], name: str, ann: Any) -> _Slot:
    key: Any = name
    if name not in mapping and re.fullmatch(r"-?\d+", name) and int(name) in mapping:
        key = int(name)

    def store(value: Any) -> Any:
        mapping[key] = value
        return mapping

    return _Slot(mapping.get(key, _MISSING), _element_ann(ann, 0), key in mapping, store)


def _slot(container: Any, name: str, ann: Any, where: str) -> _Slot:
    if fiddle_kind(container) is not None:
        return _buildable_slot(container, name)
    if dataclasses.is_dataclass(container) and not isinstance(container, type):
        return _dataclass_slot(container, name)
    if isinstance(container, list | tuple):
        return _sequence_slot(container, name, ann, where)
    if isinstance(container, dict):
        return _dict_slot(container, name, ann)
    if container is None:
        raise OverrideError(f"`{where}` is None; assign it first (e.g. `{where}=<factory>`)")
    raise OverrideError(f"`{where}` is {_describe(container)}; it has no field `{name}`")


def _arith(op: str, current: Any, operand: Any, where: str) -> Any:
    """``+= -= *= /=`` on numbers; ``+=`` also extends lists/tuples and strings."""
    if current is _MISSING:
        raise OverrideError(f"`{where}` has no value to update with `{op}`; use `=`")
    if op == "+=" and isinstance(current, list | tuple):
        extra = list(operand) if isinstance(operand, list | tuple) else [operand]
        return type(current)([*current, *extra])
    if op == "+=" and isinstance(current, str) and isinstance(operand, str):
        return current + operand
    numbers = (int, float)
    for value in (current, operand):
        if not isinstance(value, numbers) or isinstance(value, bool):
            raise OverrideError(
                f"`{where}{op}`: needs numbers, got {_describe(current)} and {_describe(operand)}"
            )
    try:
        result = _compute(op, current, operand, where)
    except OverflowError:
        raise OverrideError(f"`{where}{op}`: the result is too large for a float") from None
    finite = all(not isinstance(v, float) or math.isfinite(v) for v in (current, operand))
    if isinstance(result, float) and finite and not math.isfinite(result):
        raise OverrideError(f"`{where}{op}`: the result is too large for a float")
    if isinstance(result, int) and not -_INT_LIMIT < result < _INT_LIMIT:
        raise OverrideError(f"`{where}{op}`: the result has more than {MAX_INT_DIGITS} digits")
    return result


def _compute(op: str, current: float, operand: float, where: str) -> float:
    if op == "+=":
        return current + operand
    if op == "-=":
        return current - operand
    if op == "*=":
        return current * operand  # both at most MAX_INT_DIGITS digits: quick to make
    if operand == 0:
        raise OverrideError(f"`{where}/=`: division by zero")
    if isinstance(current, int) and isinstance(operand, int) and current % operand == 0:
        return current // operand
    return current / operand


def _check_storable(value: Any, where: str, depth: int = 0) -> None:
    """Refuse, now, what the override put in that the task file could not hold.

    Only plain containers are walked: a factory's Config or a dataclass came from code, and
    the serializer judges those when the experiment is recorded.
    """
    if depth > MAX_DEPTH:
        raise OverrideError(f"`{where}`: the value nests more than {MAX_DEPTH} levels deep")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int) and not -_INT_LIMIT < value < _INT_LIMIT:
        raise OverrideError(f"`{where}`: integers have at most {MAX_INT_DIGITS} digits")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise OverrideError(f"`{where}`: the text is not valid UTF-8") from None
    elif isinstance(value, set | frozenset):
        raise OverrideError(f"`{where}`: a set cannot be stored in a task; use a list")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_storable(item, f"{where}.{i}", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise OverrideError(
                    f"`{where}`: dict keys must be strings to be stored, got {_describe(key)}"
                )
            _check_storable(item, f"{where}.{key}", depth + 1)


def _apply_one(task: Any, override: Override, checker: _Checker) -> Any:
    where_parts: list[str] = []

    def descend(container: Any, parts: tuple[str, ...], ann: Any) -> Any:
        name = parts[0]
        parent = ".".join(where_parts) or "task"
        where_parts.append(name)
        where = ".".join(where_parts)
        slot = _slot(container, name, ann, parent)
        if len(parts) > 1:
            child = slot.current
            if child is _MISSING:
                raise OverrideError(
                    f"`{where}` is not set; assign it first (e.g. `{where}=<factory>`)"
                )
            if not slot.explicit:
                child = copy.deepcopy(child)  # a signature default is shared; never mutate it
            return slot.store(descend(child, parts[1:], slot.ann))
        try:
            parsed = _parse(override.raw_value)
        except _ParseError as exc:
            raise OverrideError(f"cannot parse value for `{where}`: {exc}") from None
        ann = slot.ann
        if _is_unknown(_strip_annotated(ann)) and isinstance(slot.current, pathlib.PurePath):
            ann = type(slot.current)  # an unannotated Path field stays a Path
        if override.op == "=":
            value = checker.check(parsed, ann, where)
        else:
            operand = checker.check(parsed, _MISSING, where)
            updated = _arith(override.op, slot.current, operand, where)
            value = checker.check(updated, slot.ann, where)
        _check_storable(value, where)
        return slot.store(value)

    return descend(task, override.path, _MISSING)


def apply_overrides(
    task: Task,
    overrides: Sequence[str | Override],
    *,
    factories: Mapping[str, Callable[[], Any]] | None = None,
) -> Task:
    """Return a copy of ``task`` with every override applied (``task`` is left untouched).

    Each value is parsed and checked against the annotation of the field it lands on
    before it is set; the first problem raises :class:`OverrideError` with one line.
    """
    from core.config import task_kind

    task_kind(task)  # reject non-tasks early, with a clear TypeError
    result = copy.deepcopy(task)
    checker = _Checker(factories or {})
    for item in overrides:
        override = item if isinstance(item, Override) else parse_override(item)
        result = _apply_one(result, override, checker)
    return result
