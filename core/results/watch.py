"""Incremental metrics of a job: each refresh reads only what its files grew by.

A :class:`MetricFile` keeps an offset into one file. A refresh asks the file's size (one
``stat``; over SSH one SFTP request on the shared session) and, when it grew, reads exactly
the new bytes and feeds them to the file's decoder. A file that shrank was replaced or
truncated: its series restart from zero (the new content is the truth). A CSV whose header
changed (Lightning rewrites ``metrics.csv`` when a new column appears) restarts the same way;
telling that costs one read of the header's bytes, not of the file.

A :class:`JobMetrics` finds the files of one job (under ``NEMORUN_JOB_DIR``, plus declared
paths and the stdout pattern) and merges their series by name. Finding files lists the job
dir, so it runs on the first refresh and then at most every ``rediscover_seconds``.
"""

from __future__ import annotations

import fnmatch
import math
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.results.listing import Entry, list_tree
from core.results.locate import Declared, JobOutputs
from core.results.readers import CsvDecoder, Decoder, RegexDecoder, decoder_for
from core.results.series import Series
from core.transport import Transport, TransportError

#: Most bytes one refresh reads from one file; the rest comes on the next refresh.
MAX_READ_PER_REFRESH = 16 << 20

#: File names found under the job dir without being declared.
DEFAULT_PATTERNS = ("*tfevents*", "metrics.jsonl", "*.metrics.jsonl", "metrics.csv")


@dataclass
class ReadStats:
    """Bytes read from metric files (``data``) and for finding them (``listing``)."""

    data: int = 0
    listing: int = 0
    stats: int = 0


class MetricFile:
    """One file and its decoder, read from ``offset`` on."""

    def __init__(
        self, transport: Transport, path: str, make: Callable[[], Decoder], label: str
    ) -> None:
        self.transport = transport
        self.path = path
        self.label = label
        self._make = make
        self.decoder = make()
        self.offset = 0
        self.series: dict[str, Series] = {}
        self.missing = False
        self.resets = 0

    def _reset(self) -> None:
        self.decoder = self._make()
        self.offset = 0
        self.series = {}
        self.resets += 1

    @property
    def problem(self) -> str | None:
        return self.decoder.problem

    async def refresh(self, stats: ReadStats) -> int:
        """Read what was appended since the last refresh; the number of new points."""
        size = await self.transport.size(self.path)
        stats.stats += 1
        if size is None:
            self.missing = True
            return 0
        self.missing = False
        if size < self.offset:
            self._reset()
        elif isinstance(self.decoder, CsvDecoder) and self.decoder.header and size > self.offset:
            head = await self.transport.read(self.path, 0, len(self.decoder.header))
            stats.data += len(head)
            if head != self.decoder.header:
                self._reset()
        if size == self.offset:
            return 0
        length = min(size - self.offset, MAX_READ_PER_REFRESH)
        data = await self.transport.read(self.path, self.offset, length)
        stats.data += len(data)
        self.offset += len(data)
        added = 0
        for point in self.decoder.feed(data):
            series = self.series.get(point.name)
            if series is None:
                series = self.series[point.name] = Series(point.name, self.label)
            series.append(point.step, point.value, point.time)
            added += 1
        return added


@dataclass
class MetricsSnapshot:
    """Every series of one job, by name, and what could not be read."""

    series: dict[str, Series] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def last_values(self) -> dict[str, float]:
        out = {}
        for name, series in self.series.items():
            last = series.last()
            if last is not None:
                out[name] = last[1]
        return out


class JobMetrics:
    """The metrics of one job, kept between refreshes (the app keeps one per shown run)."""

    def __init__(
        self,
        outputs: JobOutputs,
        declared: Declared | None = None,
        *,
        rediscover_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outputs = outputs
        self.declared = declared or Declared()
        self.rediscover_seconds = rediscover_seconds
        self.clock = clock
        self.files: dict[str, MetricFile] = {}
        self.stats = ReadStats()
        self._discovered_at: float | None = None
        self.problems: list[str] = []
        if self.declared.metrics_regex and "stdout" in outputs.logs:
            pattern = self.declared.metrics_regex
            self.files["stdout"] = MetricFile(
                outputs.transport, outputs.logs["stdout"], lambda: RegexDecoder(pattern), "stdout"
            )

    async def discover(self) -> None:
        """Add the metric files now present (files once found stay, even if they vanish)."""
        self._discovered_at = self.clock()
        root = self.outputs.job_dir
        try:
            entries = await list_tree(self.outputs.transport, root)
        except TransportError as exc:
            self.problems = [str(exc)]
            return
        self.stats.listing += sum(len(e.path) + 24 for e in entries)
        for entry in entries:
            if entry.kind != "f":
                continue
            name = posixpath.basename(entry.path)
            if any(fnmatch.fnmatchcase(name, pat) for pat in DEFAULT_PATTERNS) or _declared(
                entry, self.declared.metrics
            ):
                self._add(posixpath.join(root, entry.path), entry.path)
        for pattern in self.declared.metrics:
            if posixpath.isabs(pattern) and not any(c in pattern for c in "*?["):
                self._add(pattern, pattern)

    def _add(self, path: str, label: str) -> None:
        if path in self.files:
            return
        if decoder_for(path) is None:
            return
        self.files[path] = MetricFile(
            self.outputs.transport,
            path,
            lambda: decoder_for(path) or CsvDecoder(),
            label,
        )

    async def refresh(self) -> MetricsSnapshot:
        """Read what every file grew by (finding new files when it is time to)."""
        now = self.clock()
        if self._discovered_at is None or now - self._discovered_at >= self.rediscover_seconds:
            await self.discover()
        problems = list(self.problems)
        for key in sorted(self.files):
            f = self.files[key]
            try:
                await f.refresh(self.stats)
            except (OSError, TransportError) as exc:
                problems.append(f"{f.label}: {exc}")
            if f.problem:
                problems.append(f"{f.label}: damaged ({f.problem}); read up to there")
        return self.snapshot(problems)

    def snapshot(self, problems: list[str] | None = None) -> MetricsSnapshot:
        """Series merged by name; a name two files both have is kept once per file,
        the later ones as ``name@file``."""
        out = MetricsSnapshot(problems=list(problems or []))
        for key in sorted(self.files):
            f = self.files[key]
            out.files.append(f.label)
            for name, series in sorted(f.series.items()):
                shown = name if name not in out.series else f"{name}@{f.label}"
                out.series[shown] = series
        return out


def _declared(entry: Entry, patterns: list[str]) -> bool:
    return any(
        not posixpath.isabs(p) and fnmatch.fnmatchcase(entry.path, p.removeprefix("./"))
        for p in patterns
    )


def finite_last(series: Series) -> float | None:
    last = series.last()
    if last is None or not math.isfinite(last[1]):
        return None
    return last[1]
