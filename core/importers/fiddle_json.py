"""Read fiddle's JSON serialization (what NeMo Run stores) without importing anything it names.

NeMo Run writes its experiments' jobs and configs with ``fiddle``'s ``dump_json``, zlib-
compressed and base64-encoded. Building that back with fiddle would import every module the
config names (the user's training code, NeMo Run itself), which the app never does. This
module walks the JSON instead and returns plain data:

* :class:`Buildable` for a ``fdl.Config``/``fdl.Partial`` (the callable as a :class:`PyRef`,
  its arguments as a dict);
* :class:`PyRef` for a reference to a function or class (``module`` + ``name``);
* :class:`Opaque` for any other object type fiddle recorded (kept with its items);
* lists, tuples, dicts and scalars as themselves.

Hostile input is bounded: the document is at most :data:`MAX_DOCUMENT_BYTES` once
decompressed, references are followed with an explicit depth limit (a cycle is an error,
not a hang), and any malformation is :class:`FiddleJSONError` with one line.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

#: Largest decompressed document read (a real one is tens of kilobytes).
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
#: Deepest nesting of references followed.
MAX_DEPTH = 200
_BUILDABLE_MODULES = ("fiddle._src.config", "fiddle.config", "nemo_run.config", "fiddle")
_ATTR = re.compile(r"\AAttr\(name='([^']*)'\)\Z")
_KEY = re.compile(r"\AKey\(key=(.*)\)\Z", re.DOTALL)
_INDEX = re.compile(r"\AIndex\(index=(\d+)\)\Z")


class FiddleJSONError(ValueError):
    """The text is not a readable fiddle JSON document; ``str()`` is one line."""


@dataclass(frozen=True)
class PyRef:
    module: str
    name: str

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class Buildable:
    """A ``Config``/``Partial`` as data: what it calls and with which arguments."""

    kind: str  # "config" or "partial"
    fn: PyRef
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Opaque:
    """An object of a type this reader does not rebuild (kept, shown as its type name)."""

    type: PyRef
    items: list[tuple[str, Any]] = field(default_factory=list)


def decode_text(text: str | bytes) -> Any:
    """base64(zlib(json)) → the decoded tree (see the module docstring)."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    try:
        packed = base64.urlsafe_b64decode(raw.strip())
        inflater = zlib.decompressobj()
        data = inflater.decompress(packed, MAX_DOCUMENT_BYTES)
        if inflater.unconsumed_tail:
            raise FiddleJSONError(f"document larger than {MAX_DOCUMENT_BYTES} bytes")
    except (binascii.Error, ValueError, zlib.error) as exc:
        if isinstance(exc, FiddleJSONError):
            raise
        raise FiddleJSONError(f"not base64 zlib data ({exc})") from None
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise FiddleJSONError(f"not JSON ({str(exc)[:80]})") from None
    return decode_document(document)


def decode_document(document: Any) -> Any:
    if not isinstance(document, dict) or "root" not in document:
        raise FiddleJSONError("not a fiddle JSON document (no root)")
    objects = document.get("objects")
    if not isinstance(objects, dict):
        raise FiddleJSONError("not a fiddle JSON document (no objects)")
    return _Reader(objects).value(document["root"], 0)


class _Reader:
    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = objects
        self.done: dict[str, Any] = {}
        self.active: set[str] = set()

    def value(self, node: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise FiddleJSONError(f"nested deeper than {MAX_DEPTH}")
        if not isinstance(node, dict):
            if isinstance(node, list):
                return [self.value(item, depth + 1) for item in node]
            return node
        kind = node.get("type")
        if kind == "leaf":
            return node.get("value")
        if kind == "pyref":
            return _pyref(node)
        if kind == "ref":
            key = node.get("key")
            if not isinstance(key, str) or key not in self.objects:
                raise FiddleJSONError(f"reference to a missing object {str(key)[:40]!r}")
            if key in self.done:
                return self.done[key]
            if key in self.active:
                raise FiddleJSONError(f"object {key[:40]!r} contains itself")
            self.active.add(key)
            try:
                result = self.object(self.objects[key], depth + 1)
            finally:
                self.active.discard(key)
            self.done[key] = result
            return result
        raise FiddleJSONError(f"unknown node type {str(kind)[:40]!r}")

    def object(self, obj: Any, depth: int) -> Any:
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), dict):
            raise FiddleJSONError("an object without a type")
        otype = _pyref(obj["type"])
        items = obj.get("items") or []
        if not isinstance(items, list):
            raise FiddleJSONError(f"{otype.dotted}: items is not a list")
        pairs = []
        for item in items:
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str):
                raise FiddleJSONError(f"{otype.dotted}: malformed item")
            pairs.append((item[0], self.value(item[1], depth + 1)))
        if otype.module == "builtins":
            if otype.name == "list":
                return [v for _, v in pairs]
            if otype.name == "tuple":
                return tuple(v for _, v in pairs)
            if otype.name == "dict":
                return {_key(k): v for k, v in pairs}
        if otype.name in ("Config", "Partial") and otype.module.startswith(_BUILDABLE_MODULES):
            meta = obj.get("metadata")
            fn = self._fn_of(meta, depth)
            args = {}
            for path, value in pairs:
                match = _ATTR.match(path)
                if match:
                    args[match[1]] = value
            return Buildable("partial" if otype.name == "Partial" else "config", fn, args)
        return Opaque(otype, [(_label(k), v) for k, v in pairs])

    def _fn_of(self, meta: Any, depth: int) -> PyRef:
        data = self.value(meta, depth + 1) if isinstance(meta, dict) else None
        if isinstance(data, Opaque):
            for key, value in data.items:
                if key == "fn_or_cls" and isinstance(value, PyRef):
                    return value
        raise FiddleJSONError("a Config/Partial without a callable (fn_or_cls)")


def _pyref(node: dict[str, Any]) -> PyRef:
    module, name = node.get("module"), node.get("name")
    if not isinstance(module, str) or not isinstance(name, str):
        raise FiddleJSONError("a pyref without module/name")
    return PyRef(module, name)


def _key(text: str) -> Any:
    match = _KEY.match(text)
    if match is None:
        return text
    inner = match[1]
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        return inner[1:-1]
    return inner


def _label(text: str) -> str:
    for pattern in (_ATTR, _INDEX):
        match = pattern.match(text)
        if match:
            return match[1]
    return str(_key(text))
