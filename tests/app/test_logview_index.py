"""The log line index: exact lines from the end first, through growth, prepends and cuts."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from nemorun_tui.logview import index as index_mod
from nemorun_tui.logview.index import FileShrunk, LineIndex


def _expected(data: bytes, base: int = 0) -> list[bytes]:
    """Lines starting in [base, len) as the index defines them."""
    if base > 0:
        cut = data.find(b"\n", base - 1 if data[base - 1 : base] == b"\n" else base)
        # lines are those starting after a newline at position >= base
        first_nl = data.find(b"\n", base)
        if first_nl < 0:
            return []
        data = data[first_nl + 1 :]
        del cut
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def _random_log(rng: random.Random, n: int) -> bytes:
    out = []
    for i in range(n):
        width = rng.choice([0, 1, 5, 40, 120, 300, 2000])
        out.append(f"{i:06d} ".encode() + b"x" * width)
    return b"\n".join(out) + (b"\n" if rng.random() < 0.5 else b"")


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny blocks so a few KB exercise many blocks and block boundaries."""
    monkeypatch.setattr(index_mod, "BLOCK", 256)
    monkeypatch.setattr(index_mod, "BACK_CHUNK", 1024)


def test_full_backward_scan_reads_every_line_exactly(tmp_path: Path, small_blocks: None) -> None:
    rng = random.Random(1)
    data = _random_log(rng, 400)
    path = tmp_path / "log"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    idx = LineIndex(fd)
    while not idx.complete:
        idx.scan_back(index_mod.BACK_CHUNK)
    expected = _expected(data)
    assert idx.line_count == len(expected)
    assert idx.read_lines(0, len(expected)) == expected
    for first in rng.sample(range(len(expected)), 50):
        assert idx.read_lines(first, 3) == expected[first : first + 3]
    os.close(fd)


def test_tail_is_known_before_the_whole_file_is_scanned(tmp_path: Path, small_blocks: None) -> None:
    data = _random_log(random.Random(2), 500)
    path = tmp_path / "log"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    idx = LineIndex(fd)
    idx.scan_back(1024)
    assert not idx.complete
    lines = idx.read_lines(0, idx.line_count)
    assert lines == _expected(data, idx.base)
    assert lines[-1] == _expected(data)[-1]
    os.close(fd)


def test_growth_and_prepends_keep_lines_consistent(tmp_path: Path, small_blocks: None) -> None:
    rng = random.Random(3)
    path = tmp_path / "log"
    data = _random_log(rng, 200)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    idx = LineIndex(fd)
    idx.scan_back(700)
    with path.open("ab") as f:
        for _ in range(30):
            chunk = _random_log(rng, rng.randint(0, 5))
            f.write(chunk)
            f.flush()
            data += chunk
            idx.scan_forward()
            assert idx.read_lines(0, idx.line_count) == _expected(data, idx.base)
            if not idx.complete:
                idx.scan_back(500)
    while not idx.complete:
        idx.scan_back()
    assert idx.read_lines(0, idx.line_count) == _expected(data)
    os.close(fd)


def test_line_of_offset_matches_line_starts(tmp_path: Path, small_blocks: None) -> None:
    data = _random_log(random.Random(4), 300)
    path = tmp_path / "log"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    idx = LineIndex(fd, size=len(data) // 2)
    idx.scan_forward(len(data))
    while not idx.complete:
        idx.scan_back()
    for line in range(0, idx.line_count, 7):
        start = idx.line_start(line)
        assert idx.line_of_offset(start) == line
    os.close(fd)


def test_overlong_lines_are_cut_with_a_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_mod, "MAX_LINE", 100)
    path = tmp_path / "log"
    path.write_bytes(b"short\n" + b"y" * 100_000 + b"\nafter\n")
    fd = os.open(path, os.O_RDONLY)
    idx = LineIndex(fd)
    idx.scan_back()
    lines = idx.read_lines(0, 3)
    assert lines[0] == b"short"
    assert lines[1].startswith(b"y" * 100) and lines[1].endswith(b"[cut]")
    assert lines[2] == b"after"
    os.close(fd)


def test_truncated_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"a\nb\nc\n")
    fd = os.open(path, os.O_RDONLY)
    idx = LineIndex(fd)
    path.write_bytes(b"a\n")
    with pytest.raises(FileShrunk):
        idx.scan_forward()
    os.close(fd)


# -- the reader thread ------------------------------------------------------------------------
def _wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def test_reader_serves_the_tail_then_follows_growth(tmp_path: Path) -> None:
    from nemorun_tui.logview.reader import LogReader

    path = tmp_path / "log"
    path.write_bytes(b"".join(f"line {i}\n".encode() for i in range(1000)))
    reader = LogReader(str(path), lambda: None, poll=0.01, max_rate=100)
    reader.request(None, 5)
    reader.start()
    try:
        _wait_for(lambda: reader.window.line_count == 1000 and reader.window.complete)
        assert [t for _, t in reader.window.rows] == [f"line {i}" for i in range(995, 1000)]
        with path.open("ab") as f:
            f.write(b"new 1\nnew 2\n")
        _wait_for(lambda: reader.window.line_count == 1002)
        assert reader.window.rows[-1] == (1001, "new 2")
        assert reader.window.appended == 2
    finally:
        reader.close()
        reader.join()


def test_reader_filter_keeps_context_and_find_jumps(tmp_path: Path) -> None:
    from nemorun_tui.logview.reader import LogReader, compile_pattern

    path = tmp_path / "log"
    lines = [f"step {i}" + (" ERROR boom" if i in (10, 11, 50) else "") for i in range(100)]
    path.write_text("\n".join(lines) + "\n")
    reader = LogReader(str(path), lambda: None, poll=0.01, max_rate=100)
    reader.request(0, 20)
    reader.start()
    try:
        _wait_for(lambda: reader.window.complete)
        reader.set_filter(compile_pattern("error", regex=False, case=False), context=1)
        _wait_for(lambda: reader.window.filtering and not reader.window.filter_busy)
        assert [n for n, _ in reader.window.rows] == [9, 10, 11, 12, 49, 50, 51]
        assert reader.window.filter_matches == 3
        reader.find(compile_pattern(r"ERROR \w+", regex=True, case=True), 11, backwards=False)
        _wait_for(lambda: reader.found is not None)
        assert reader.found == (50, "")
        reader.found = None
        reader.find(compile_pattern("error", regex=False, case=False), 50, backwards=True)
        _wait_for(lambda: reader.found is not None)
        assert reader.found == (11, "")
    finally:
        reader.close()
        reader.join()
