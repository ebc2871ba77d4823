"""A background thread per open log: follows the file, indexes it, serves windows of lines.

The UI never touches the file. It says which rows it wants (:meth:`LogReader.request`) and
renders the last :class:`Window` the thread published. The thread also runs the filter
(lines matching a pattern, with context) and "find next/previous", so a search through a
gigabyte never freezes the screen.

Growth is checked every ``poll`` seconds (an ``fstat``), backing off while the file is quiet.
While the file grows fast the thread publishes at most ``max_rate`` windows per second:
back-pressure, so a job printing 20 MB/s costs a bounded number of redraws.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from core.textsafe import decode_output
from nemorun_tui.logview.index import BLOCK, FileShrunk, LineIndex

#: First synchronous step from the end: enough bytes for a few screens of a typical log.
TAIL_PROBE = 256 * 1024
#: A filter stops collecting after this many rows (each costs 8 bytes).
MAX_FILTER_ROWS = 2_000_000
_SEARCH_CHUNK = 4 * 1024 * 1024


def clean_line(raw: bytes) -> str:
    """Decode a log line for display: keep what a terminal would show after ``\\r``.

    Not sanitized yet (the view does that per visible line); a stray byte 0x9B comes out
    as the C1 control it would be to a terminal, so the view removes it with its sequence.
    """
    text = decode_output(raw)
    if "\r" in text:
        text = text.rstrip("\r")
        if "\r" in text:
            text = text.rsplit("\r", 1)[1]
    return text


@dataclass(frozen=True)
class Window:
    """Rows the view asked for, as of one moment of the file."""

    first: int
    rows: list[tuple[int, str]]  # (line number within the index, text)
    total_rows: int  # rows available (all lines, or filtered rows)
    line_count: int
    complete: bool  # the whole file is indexed (line numbers are absolute)
    appended: int  # lines appended since opening
    prepended: int  # lines prepended (background scan) since opening
    size: int
    filtering: bool = False
    filter_busy: bool = False
    filter_matches: int = 0
    search_matches: int | None = None  # lines matching the search (None: no search)
    search_busy: bool = False  # the count is still being scanned
    error: str | None = None
    generation: int = 0


@dataclass
class _Request:
    first: int | None = None  # None: the tail
    count: int = 50


@dataclass
class _Filter:
    pattern: re.Pattern[bytes]
    context: int
    rows: array = field(default_factory=lambda: array("q"))
    matches: int = 0
    scanned_to: int = 0  # byte offset up to which whole lines were tested
    line_at_scan: int = 0  # line number at scanned_to
    done_size: int = -1  # file size when the scan last reached the end
    last_line: int = -1  # last matching line (never added twice)
    keep_rows: bool = True  # False: only count matching lines (the search's match count)


class LogReader:
    """Owns one :class:`LineIndex` and its file; all file access happens on its thread."""

    def __init__(
        self,
        path: str,
        on_change: Callable[[], None],
        *,
        poll: float = 0.05,
        max_rate: float = 10.0,
    ) -> None:
        self.path = path
        self.on_change = on_change
        self.poll = poll
        self.min_interval = 1.0 / max_rate
        self._cond = threading.Condition()
        self._request = _Request()
        self._request_changed = True
        self._filter: _Filter | None = None
        self._count: _Filter | None = None  # the search's match count, scanned like a filter
        self._filter_changed = False
        self._find: tuple[re.Pattern[bytes], int, bool] | None = None
        self.found: tuple[int | None, str] | None = None  # (line, message) of the last find
        self._stop = False
        self._window = Window(0, [], 0, 0, False, 0, 0, 0)
        self._generation = 0
        self._thread = threading.Thread(target=self._main, name=f"log:{path}", daemon=True)
        self._index: LineIndex | None = None
        self._fd: int | None = None
        self.opened_at: float | None = None
        self.first_window_at: float | None = None

    # -- API for the UI thread ------------------------------------------------------------
    def start(self) -> None:
        """Start following the file."""
        self.opened_at = time.perf_counter()
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (it closes the file)."""
        with self._cond:
            self._stop = True
            self._cond.notify()

    def join(self, timeout: float = 1.0) -> None:
        """Wait for the thread to end (tests, benches)."""
        self._thread.join(timeout)

    @property
    def window(self) -> Window:
        """The last published window (replaced as a whole; safe to read from any thread)."""
        return self._window

    def request(self, first: int | None, count: int) -> None:
        """Ask for ``count`` rows from ``first`` (None: the last ``count`` rows)."""
        with self._cond:
            new = _Request(first, max(1, count))
            if new != self._request:
                self._request = new
                self._request_changed = True
                self._cond.notify()

    def set_filter(self, pattern: re.Pattern[bytes] | None, context: int = 0) -> None:
        """Show only lines matching ``pattern`` plus ``context`` lines around; None clears."""
        with self._cond:
            self._filter = _Filter(pattern, max(0, context)) if pattern is not None else None
            self._filter_changed = True
            self._request_changed = True
            self._cond.notify()

    def set_count(self, pattern: re.Pattern[bytes] | None) -> None:
        """Count the lines matching ``pattern`` (the search's "N matches"); None stops.

        Scanned on the reader thread in chunks like the filter, and kept up to date as the
        file grows; the count is published in :attr:`Window.search_matches`.
        """
        with self._cond:
            self._count = _Filter(pattern, 0, keep_rows=False) if pattern is not None else None
            self._request_changed = True
            self._cond.notify()

    def find(self, pattern: re.Pattern[bytes], from_line: int, *, backwards: bool) -> None:
        """Look for the next (or previous) line matching ``pattern``; result in ``found``."""
        with self._cond:
            self._find = (pattern, from_line, backwards)
            self._cond.notify()

    # -- the thread -------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._run()
        except Exception as exc:  # the view shows the reason; never a traceback on screen
            self._publish_error(f"{type(exc).__name__}: {exc}")
        finally:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)

    def _open(self) -> bool:
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        self._index = LineIndex(self._fd)
        self._index.scan_back(TAIL_PROBE)
        return True

    def _run(self) -> None:
        last_publish = 0.0
        idle = 0
        pending_growth = False
        while True:
            with self._cond:
                if self._stop:
                    return
                find = self._find
                self._find = None
                request_changed = self._request_changed
                self._request_changed = False
                filter_changed = self._filter_changed
                self._filter_changed = False
            if self._index is None and not self._open():
                self._publish_error(None, waiting=True)
                self._wait(0.25)
                continue
            index = self._index
            assert index is not None
            try:
                grown = index.scan_forward()
            except FileShrunk:
                self._reset()
                continue
            prepended = 0
            if not index.complete:
                prepended = index.scan_back()
            filter_progress = self._advance_filter()
            if self._advance(self._count):
                filter_progress = True
            if find is not None:
                self._do_find(find)
            changed = bool(grown or prepended or filter_progress)
            pending_growth = pending_growth or changed
            now = time.perf_counter()
            urgent = request_changed or filter_changed or find is not None
            if urgent or (pending_growth and now - last_publish >= self.min_interval):
                self._publish()
                last_publish = now
                pending_growth = False
            busy = not index.complete or self._filter_pending() or self._pending(self._count)
            if busy:
                self._wait(0.0)
                continue
            idle = 0 if changed else idle + 1
            wait = self.poll if idle < 40 else self.poll * 4
            if pending_growth:
                wait = min(wait, max(0.0, self.min_interval - (now - last_publish)))
            self._wait(wait)

    def _wait(self, timeout: float) -> None:
        with self._cond:
            if self._stop or self._request_changed or self._find is not None:
                return
            if timeout > 0:
                self._cond.wait(timeout)

    def _reset(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        self._index = None
        self._generation += 1
        if self._filter is not None:
            self._filter = _Filter(self._filter.pattern, self._filter.context)
        if self._count is not None:
            self._count = _Filter(self._count.pattern, 0, keep_rows=False)

    # -- filter ---------------------------------------------------------------------------
    def _filter_pending(self) -> bool:
        return self._pending(self._filter)

    def _pending(self, f: _Filter | None) -> bool:
        index = self._index
        if f is None or index is None or not index.complete:
            return False
        return f.done_size != index.end and len(f.rows) < MAX_FILTER_ROWS

    def _advance_filter(self) -> bool:
        """Test another chunk of lines against the filter; True when anything changed.

        Only whole lines advance the scan position; a trailing partial line (still being
        written) is tested but scanned again once it grows, never counted twice.
        """
        return self._advance(self._filter)

    def _advance(self, f: _Filter | None) -> bool:
        """One chunk of a filter or count scan (see :meth:`_advance_filter`)."""
        index = self._index
        if not self._pending(f):
            return False
        assert f is not None and index is not None
        start = f.scanned_to
        data = os.pread(index.fd, min(_SEARCH_CHUNK, index.end - start), start)
        at_end = start + len(data) >= index.end
        cut = data.rfind(b"\n")
        whole = len(data) if (cut < 0 and not at_end) else cut + 1
        position = 0
        line = f.line_at_scan
        search = f.pattern.search
        while True:
            match = search(data, position)
            if match is None:
                break
            line_start = data.rfind(b"\n", 0, match.start()) + 1
            line += data.count(b"\n", position, line_start)
            if line > f.last_line:
                self._add_filter_row(f, line)
            next_nl = data.find(b"\n", max(match.end(), line_start))
            if next_nl < 0:
                break
            position = next_nl + 1
            line += 1
        f.line_at_scan += data.count(b"\n", 0, whole)
        f.scanned_to = start + whole
        if at_end:
            f.done_size = index.end
        return True

    @staticmethod
    def _add_filter_row(f: _Filter, line: int) -> None:
        f.matches += 1
        f.last_line = line
        if not f.keep_rows:
            return
        low = max(0, line - f.context)
        if f.rows and f.rows[-1] >= low:
            low = f.rows[-1] + 1
        for row in range(low, line + f.context + 1):
            f.rows.append(row)

    # -- find ------------------------------------------------------------------------------
    def _do_find(self, request: tuple[re.Pattern[bytes], int, bool]) -> None:
        """Find the next/previous match, wrapping around the end (as less and vim do)."""
        pattern, from_line, backwards = request
        self._find_once(pattern, from_line, backwards)
        if self.found is None or self.found[0] is not None or self._index is None:
            return
        total = self._index.line_count
        restart = total if backwards else -1
        if restart == from_line:
            return  # the first pass already covered the whole file
        self._find_once(pattern, restart, backwards)
        if self.found is not None and self.found[0] is not None:
            where = "bottom" if backwards else "top"
            self.found = (self.found[0], f"search wrapped around to the {where}")
        else:
            self.found = (None, "no match")

    def _find_once(self, pattern: re.Pattern[bytes], from_line: int, backwards: bool) -> None:
        index = self._index
        if index is None or index.line_count == 0:
            self.found = (None, "nothing to search")
            return
        total = index.line_count
        if backwards:
            position = index.end if from_line >= total else index.line_start(max(0, from_line))
            while position > index.base:
                start = max(index.base, position - _SEARCH_CHUNK)
                if start > index.base:  # a chunk starts on a line start, or ``^`` lies
                    start = max(index.base, index.line_start(index.line_of_offset(start)))
                data = os.pread(index.fd, position - start, start)
                last = None
                for match in pattern.finditer(data):
                    last = match
                if last is not None:
                    self.found = (index.line_of_offset(start + last.start()), "")
                    return
                position = start
            self.found = (None, "no earlier match")
            return
        first = from_line + 1
        if first >= total:
            self.found = (None, "no later match")
            return
        position = index.line_start(first)
        while position < index.end:
            data = os.pread(index.fd, min(_SEARCH_CHUNK, index.end - position), position)
            if not data:
                break
            cut = data.rfind(b"\n")
            if cut >= 0 and position + len(data) < index.end:
                data = data[: cut + 1]
            hit = pattern.search(data)
            if hit is not None:
                self.found = (index.line_of_offset(position + hit.start()), "")
                return
            position += len(data)
        self.found = (None, "no later match")

    # -- publishing -------------------------------------------------------------------------
    def _publish(self) -> None:
        index = self._index
        if index is None:
            return
        with self._cond:
            request = self._request
            f = self._filter
            count = self._count
        if f is not None and index.complete:
            rows_total = len(f.rows)
            first = self._first(request, rows_total)
            numbers = list(f.rows[first : first + request.count])
            rows = self._read_numbers(index, numbers)
        else:
            rows_total = index.line_count
            first = self._first(request, rows_total)
            raw = index.read_lines(first, request.count)
            rows = [(first + i, clean_line(line)) for i, line in enumerate(raw)]
        self._window = Window(
            first=first,
            rows=rows,
            total_rows=rows_total,
            line_count=index.line_count,
            complete=index.complete,
            appended=index.appended_lines,
            prepended=index.prepended_lines,
            size=index.end,
            filtering=f is not None,
            filter_busy=f is not None and (not index.complete or self._filter_pending()),
            filter_matches=f.matches if f is not None else 0,
            search_matches=count.matches if count is not None else None,
            search_busy=count is not None and (not index.complete or self._pending(count)),
            generation=self._generation,
        )
        if self.first_window_at is None:
            self.first_window_at = time.perf_counter()
        self.on_change()

    @staticmethod
    def _first(request: _Request, total: int) -> int:
        if request.first is None:
            return max(0, total - request.count)
        return max(0, min(request.first, max(0, total - 1)))

    @staticmethod
    def _read_numbers(index: LineIndex, numbers: list[int]) -> list[tuple[int, str]]:
        """Read possibly non-contiguous lines, one run of consecutive numbers at a time."""
        out: list[tuple[int, str]] = []
        i = 0
        while i < len(numbers):
            j = i
            while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
                j += 1
            raw = index.read_lines(numbers[i], j - i + 1)
            out.extend((numbers[i] + k, clean_line(line)) for k, line in enumerate(raw))
            i = j + 1
        return out

    def _publish_error(self, message: str | None, *, waiting: bool = False) -> None:
        text = "waiting for the log file to appear…" if waiting else message
        if self._window.error == text:
            return
        self._window = Window(0, [], 0, 0, False, 0, 0, 0, error=text)
        self.on_change()


def compile_pattern(text: str, *, regex: bool, case: bool) -> re.Pattern[bytes]:
    """A bytes pattern for the reader from what the user typed (raises re.error)."""
    source = text if regex else re.escape(text)
    # MULTILINE: the reader searches blocks of many lines, where ``^``/``$`` must mean the
    # start and end of each line (as the user reads the pattern), not of the block.
    flags = re.MULTILINE | (0 if case else re.IGNORECASE)
    return re.compile(source.encode(), flags)


def row_of_line(rows: array, line: int) -> int:
    """Index of the first filtered row showing ``line`` or later (for jumps in filter mode)."""
    return bisect.bisect_left(rows, line)


__all__ = ["BLOCK", "LogReader", "Window", "clean_line", "compile_pattern", "row_of_line"]
