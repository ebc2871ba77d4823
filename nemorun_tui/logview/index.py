"""A line index for big, growing log files, built from the end first.

Why this shape:

* Showing the tail of a 1 GB log must not wait for the whole file to be read. The index
  starts at the end of the file as it was when opened (the *anchor*) and scans backwards
  in chunks, so the last screenful is known after reading a few hundred KB; the rest of the
  file is indexed in the background and its lines are *prepended* (the view shifts its
  position by the number of lines that appeared above it).
* Memory stays flat: the index keeps one entry per 64 KiB block (its start offset and how
  many newlines lie between it and the anchor), not one per line — 16,000 entries for 1 GB.
  A line is located by bisecting the blocks, then reading that one block. Bytes are read
  with ``os.pread`` rather than through ``mmap``: a scan through a mapping leaves every
  touched page counted in the process's resident memory, ``pread`` does not.
* Growth (a followed file) appends blocks after the anchor; a file that shrinks (truncated
  or rotated) is detected and the caller resets the index.

Not thread-safe by itself: :class:`~nemorun_tui.logview.reader.LogReader` owns one index and
serialises access to it.
"""

from __future__ import annotations

import bisect
import os
from array import array
from collections import OrderedDict

BLOCK = 64 * 1024
#: Bytes read per backward step of the background scan.
BACK_CHUNK = 4 * 1024 * 1024
#: A line longer than this is shown cut, with a marker (a 2 GB line must not be loaded).
MAX_LINE = 32 * 1024
_BLOCK_CACHE = 32


class FileShrunk(Exception):
    """The file is now shorter than what was indexed (truncated or replaced)."""


class LineIndex:
    """Where each line of ``[base, end)`` of a file starts, known block by block."""

    def __init__(self, fd: int, size: int | None = None) -> None:
        self.fd = fd
        anchor = os.fstat(fd).st_size if size is None else size
        self.anchor = anchor
        #: Indexed byte range is [base, end).
        self.base = anchor
        self.end = anchor
        # Blocks after the anchor, ascending: start offsets and newlines in [anchor, start).
        self._fwd_start = array("q")
        self._fwd_cum = array("q")
        self._fwd_newlines = 0  # newlines in [anchor, end)
        # Blocks before the anchor, descending: start offsets and newlines in [start, anchor).
        self._back_start = array("q")
        self._back_cum = array("q")
        self._back_newlines = 0  # newlines in [base, anchor)
        self._last_byte_newline = False
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self.appended_lines = 0  # lines that appeared at the end since opening
        self.prepended_lines = 0  # lines that appeared at the top since opening
        if anchor > 0:
            last = os.pread(fd, 1, anchor - 1)
            self._last_byte_newline = last == b"\n"

    # -- counts -------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        """True once the whole file (down to offset 0) is indexed."""
        return self.base == 0

    @property
    def newlines(self) -> int:
        """Newlines in the indexed range."""
        return self._back_newlines + self._fwd_newlines

    @property
    def line_count(self) -> int:
        """Lines that start inside the indexed range (a trailing partial line counts)."""
        if self.end <= self.base:
            return 0
        count = self.newlines + (1 if self.base == 0 else 0)
        if self._last_byte_newline:
            count -= 1
        return max(0, count)

    @property
    def partial_last_line(self) -> bool:
        """True while the last line has no newline yet (still being written)."""
        return self.end > self.base and not self._last_byte_newline

    # -- scanning -----------------------------------------------------------------------
    def scan_back(self, budget: int = BACK_CHUNK) -> int:
        """Index up to ``budget`` more bytes before ``base``; returns lines prepended."""
        if self.base == 0:
            return 0
        before = self.line_count
        stop = max(0, self.base - budget)
        # Align block starts to BLOCK so cached blocks line up with later reads.
        if stop > 0:
            stop = (stop // BLOCK) * BLOCK
        data = os.pread(self.fd, self.base - stop, stop)
        if len(data) != self.base - stop:
            raise FileShrunk("file shrank while scanning")
        position = self.base
        while position > stop:
            start = max(stop, ((position - 1) // BLOCK) * BLOCK)
            self._back_newlines += data.count(b"\n", start - stop, position - stop)
            self._back_start.append(start)
            self._back_cum.append(self._back_newlines)
            position = start
        self.base = stop
        added = self.line_count - before
        self.prepended_lines += added
        return added

    def scan_forward(self, size: int | None = None) -> int:
        """Index bytes appended since the last call; returns lines appended.

        Raises :class:`FileShrunk` when the file is now shorter than what was indexed.
        """
        if size is None:
            size = os.fstat(self.fd).st_size
        if size < self.end:
            raise FileShrunk(f"file shrank from {self.end} to {size} bytes")
        if size == self.end:
            return 0
        before = self.line_count
        position = self.end
        while position < size:
            want = min(BACK_CHUNK, size - position)
            data = os.pread(self.fd, want, position)
            if not data:
                break
            offset = 0
            while offset < len(data):
                block_start = self._fwd_start[-1] if self._fwd_start else None
                if block_start is None or position + offset - block_start >= BLOCK:
                    self._fwd_start.append(position + offset)
                    self._fwd_cum.append(self._fwd_newlines)
                    block_start = position + offset
                room = BLOCK - (position + offset - block_start)
                piece_end = min(len(data), offset + room)
                self._fwd_newlines += data.count(b"\n", offset, piece_end)
                offset = piece_end
            self._last_byte_newline = data[-1:] == b"\n"
            position += len(data)
            # Blocks past the old end may have changed: drop cached copies of the tail block.
        for start in [s for s in self._cache if s + BLOCK > self.end]:
            del self._cache[start]
        self.end = position
        added = self.line_count - before
        self.appended_lines += added
        return added

    # -- lookup -------------------------------------------------------------------------
    def _block(self, start: int, end: int) -> bytes:
        cached = self._cache.get(start)
        if cached is not None and len(cached) >= end - start:
            self._cache.move_to_end(start)
            return cached[: end - start]
        data = os.pread(self.fd, end - start, start)
        self._cache[start] = data
        if len(self._cache) > _BLOCK_CACHE:
            self._cache.popitem(last=False)
        return data

    def _newline_offset(self, k: int) -> int:
        """Offset of the ``k``-th newline (0-based) of the indexed range."""
        t = k - self._back_newlines  # index relative to the anchor
        if t >= 0:
            i = bisect.bisect_right(self._fwd_cum, t) - 1
            start = self._fwd_start[i]
            end = self._fwd_start[i + 1] if i + 1 < len(self._fwd_start) else self.end
            local = t - self._fwd_cum[i]
        else:
            u = -t  # the u-th newline before the anchor, counting backwards
            i = bisect.bisect_left(self._back_cum, u)
            start = self._back_start[i]
            end = self._back_start[i - 1] if i > 0 else self.anchor
            before = self._back_cum[i - 1] if i > 0 else 0
            in_block = self._back_cum[i] - before
            local = in_block - (u - before)
        data = self._block(start, end)
        position = -1
        for _ in range(local + 1):
            position = data.index(b"\n", position + 1)
        return start + position

    def line_start(self, line: int) -> int:
        """Byte offset where ``line`` (0-based within the indexed range) starts."""
        if self.base == 0:
            if line == 0:
                return 0
            return self._newline_offset(line - 1) + 1
        return self._newline_offset(line) + 1

    def line_of_offset(self, offset: int) -> int:
        """The line containing byte ``offset`` (which must lie in the indexed range)."""
        if offset >= self.anchor:
            i = bisect.bisect_right(self._fwd_start, offset) - 1
            if i < 0:
                newlines = 0
            else:
                start = self._fwd_start[i]
                data = self._block(start, min(self.end, start + BLOCK))
                newlines = self._fwd_cum[i] + data.count(b"\n", 0, offset - start)
            newlines += self._back_newlines
        else:
            # Blocks before the anchor are stored descending; find the one holding offset.
            lo, hi = 0, len(self._back_start)
            while lo < hi:
                mid = (lo + hi) // 2
                if self._back_start[mid] > offset:
                    lo = mid + 1
                else:
                    hi = mid
            i = lo
            start = self._back_start[i]
            end = self._back_start[i - 1] if i > 0 else self.anchor
            data = self._block(start, end)
            # newlines in [base, offset) = total back - newlines in [offset, anchor)
            after_in_block = data.count(b"\n", offset - start)
            before_block_end = self._back_cum[i - 1] if i > 0 else 0
            newlines = self._back_newlines - (before_block_end + after_in_block)
        # With base > 0 the bytes before the first newline are not a line of the range.
        return newlines if self.base == 0 else newlines - 1

    def read_lines(self, first: int, count: int) -> list[bytes]:
        """Up to ``count`` lines from ``first`` (without their newline), each cut at MAX_LINE."""
        total = self.line_count
        if first >= total or count <= 0:
            return []
        count = min(count, total - first)
        position = self.line_start(first)
        out: list[bytes] = []
        pending = b""
        while len(out) < count and position < self.end:
            want = min(BLOCK, self.end - position)
            data = os.pread(self.fd, want, position)
            if not data:
                break
            position += len(data)
            pieces = (pending + data).split(b"\n")
            pending = pieces.pop()
            for piece in pieces:
                out.append(_cut(piece))
                if len(out) == count:
                    return out
            if len(pending) > MAX_LINE:
                # Skip to the end of an overlong line instead of accumulating it.
                out.append(_cut(pending))
                pending = b""
                nl = self._skip_to_newline(position)
                if nl is None or len(out) == count:
                    return out
                position = nl + 1
        if pending and len(out) < count:
            out.append(pending)
        return out

    def _skip_to_newline(self, position: int) -> int | None:
        while position < self.end:
            data = os.pread(self.fd, min(BLOCK, self.end - position), position)
            if not data:
                return None
            found = data.find(b"\n")
            if found >= 0:
                return position + found
            position += len(data)
        return None


def _cut(line: bytes) -> bytes:
    """A line as shown: at most MAX_LINE bytes, with a visible marker when cut."""
    if len(line) <= MAX_LINE:
        return line
    return line[:MAX_LINE] + " …[cut]".encode()
