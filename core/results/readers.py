"""Byte-stream decoders of the metric formats training code writes.

Each decoder is fed the *new* bytes of its file, in order, and returns the points they
complete; a partial line or record stays buffered until the rest arrives. Nothing here does
IO, so the same decoder serves a local file, a file read over SSH, a benchmark or a test,
and what is read per refresh is exactly what the file grew by (see
:mod:`core.results.watch`).

* :class:`TfeventsDecoder`: TensorBoard event files (TFRecord frames of ``Event``).
* :class:`JsonlDecoder`: ``metrics.jsonl``, one object per line with ``step`` and numbers.
* :class:`CsvDecoder`: Lightning's ``CSVLogger`` (``metrics.csv``: a header, then rows with
  empty cells for metrics not logged at that step).
* :class:`RegexDecoder`: lines of stdout matched by a pattern with named groups, e.g.
  ``loss (?P<loss>[0-9.e+-]+)``; a ``step`` group gives the x value.
"""

from __future__ import annotations

import csv
import json
import math
import re
from typing import ClassVar

from core.results.protowire import WireError, split_records
from core.results.series import Point
from core.results.tfevents import scalars

#: Keys of a JSON line that say *when* or *where* rather than being a metric.
TIME_KEYS = ("time", "timestamp", "wall_time", "_timestamp")
STEP_KEYS = ("step", "global_step", "_step")
#: A line longer than this is not a metrics line (a buffer never grows without bound).
MAX_LINE_BYTES = 1 << 20


class Decoder:
    """Base: a format's state between feeds. ``problem`` is set when the file is damaged."""

    kind: ClassVar[str] = ""

    def __init__(self) -> None:
        self.pending = bytearray()
        self.problem: str | None = None
        #: Lines/records that could not be read (skipped, counted, not guessed at).
        self.skipped = 0

    def feed(self, data: bytes) -> list[Point]:
        raise NotImplementedError

    def _lines(self, data: bytes) -> list[bytes]:
        """Complete lines from the buffered and new bytes (the last partial one is kept)."""
        self.pending += data
        cut = self.pending.rfind(b"\n")
        if cut < 0:
            if len(self.pending) > MAX_LINE_BYTES:
                self.pending.clear()
                self.skipped += 1
            return []
        complete = bytes(self.pending[: cut + 1])
        del self.pending[: cut + 1]
        return complete.splitlines()


class TfeventsDecoder(Decoder):
    kind = "tfevents"

    def feed(self, data: bytes) -> list[Point]:
        if self.problem is not None:
            return []
        self.pending += data
        frames = split_records(bytes(self.pending))
        del self.pending[: frames.consumed]
        if frames.problem:
            self.problem = frames.problem
            self.pending.clear()
        points: list[Point] = []
        for record in frames.records:
            try:
                found = scalars(record)
            except (WireError, UnicodeDecodeError):
                self.skipped += 1
                continue
            points.extend(Point(s.tag, float(s.step), s.value, s.wall_time) for s in found)
        return points


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class JsonlDecoder(Decoder):
    kind = "jsonl"

    def __init__(self) -> None:
        super().__init__()
        self.lines = 0

    def feed(self, data: bytes) -> list[Point]:
        points: list[Point] = []
        for line in self._lines(data):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                self.skipped += 1
                continue
            if not isinstance(obj, dict):
                self.skipped += 1
                continue
            step = next((_number(obj[k]) for k in STEP_KEYS if k in obj), None)
            if step is None:
                step = float(self.lines)
            when = next((_number(obj[k]) for k in TIME_KEYS if k in obj), None)
            self.lines += 1
            for key, value in obj.items():
                if key in STEP_KEYS or key in TIME_KEYS:
                    continue
                number = _number(value)
                if number is not None:
                    points.append(Point(str(key), step, number, when))
        return points


class CsvDecoder(Decoder):
    """Lightning writes ``epoch,step,<metric>...``; cells may be empty. ``header`` is the
    first line's bytes, so a watcher can tell a rewritten file (new columns) from growth."""

    kind = "csv"

    def __init__(self) -> None:
        super().__init__()
        self.columns: list[str] | None = None
        self.header: bytes = b""
        self.rows = 0

    def feed(self, data: bytes) -> list[Point]:
        points: list[Point] = []
        for line in self._lines(data):
            if self.columns is None:
                self.header = line + b"\n"
                self.columns = next(csv.reader([line.decode("utf-8", "replace")]), [])
                continue
            if not line.strip():
                continue
            cells = next(csv.reader([line.decode("utf-8", "replace")]), [])
            if len(cells) != len(self.columns):
                self.skipped += 1
                continue
            row = dict(zip(self.columns, cells, strict=True))
            step = _cell(row.get("step", "")) if "step" in row else None
            if step is None:
                step = float(self.rows)
            when = next((_cell(row[k]) for k in TIME_KEYS if k in row), None)
            self.rows += 1
            for key, cell in row.items():
                if key in STEP_KEYS or key in TIME_KEYS:
                    continue
                number = _cell(cell)
                if number is not None:
                    points.append(Point(key, step, number, when))
        return points


def _cell(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


class RegexError(ValueError):
    """A metrics pattern that does not compile or names no group."""


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The stdout pattern of a profile or recipe; it must have named groups."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise RegexError(f"metrics pattern {pattern!r}: {exc}") from None
    if not compiled.groupindex:
        raise RegexError(
            f"metrics pattern {pattern!r} has no named group (e.g. `loss (?P<loss>[0-9.e+-]+)`)"
        )
    return compiled


class RegexDecoder(Decoder):
    kind = "regex"

    def __init__(self, pattern: str | re.Pattern[str]) -> None:
        super().__init__()
        self.pattern = compile_pattern(pattern) if isinstance(pattern, str) else pattern
        self.matches = 0

    def feed(self, data: bytes) -> list[Point]:
        points: list[Point] = []
        for raw in self._lines(data):
            line = raw.decode("utf-8", "replace")
            for match in self.pattern.finditer(line):
                groups = match.groupdict()
                step = _cell(groups.get("step") or "") if "step" in groups else None
                if step is None:
                    step = float(self.matches)
                self.matches += 1
                for key, text in groups.items():
                    if key == "step" or text is None:
                        continue
                    number = _cell(text)
                    if number is not None and not math.isnan(number):
                        points.append(Point(key, step, number, None))
        return points


def decoder_for(path: str) -> Decoder | None:
    """The decoder for a metrics file by its name, or None when it is not one we read."""
    name = path.rsplit("/", 1)[-1]
    if "tfevents" in name:
        return TfeventsDecoder()
    if name.endswith(".jsonl"):
        return JsonlDecoder()
    if name.endswith(".csv"):
        return CsvDecoder()
    return None
