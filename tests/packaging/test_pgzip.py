"""Parallel gzip: readable by every gzip reader, and byte-identical whatever the threading."""

from __future__ import annotations

import gzip
import io
import random
import shutil
import subprocess

import pytest

from core.packaging.pgzip import BLOCK, ParallelGzipWriter


def _pack(data: bytes, *, workers: int, piece: int) -> bytes:
    out = io.BytesIO()
    with ParallelGzipWriter(out, 6, workers=workers) as gz:
        for start in range(0, len(data), piece):
            gz.write(memoryview(data)[start : start + piece])
    return out.getvalue()


def _sample(size: int) -> bytes:
    rng = random.Random(7)
    words = [bytes(rng.choices(b"abcdefgh_", k=rng.randint(2, 9))) for _ in range(300)]
    text = b" ".join(rng.choice(words) for _ in range(size // 5))[: size // 2]
    return text + rng.randbytes(size - len(text))


@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK, 3 * BLOCK + 12345])
def test_round_trip_and_same_bytes_for_any_threads_or_write_sizes(size: int) -> None:
    data = _sample(size)
    one = _pack(data, workers=1, piece=1 << 16)
    assert gzip.decompress(one) == data
    assert _pack(data, workers=4, piece=777) == one, "threads or write sizes changed the bytes"
    assert one[:2] == b"\x1f\x8b" and one[3] & 0x08 == 0 and one[4:8] == b"\0\0\0\0"


def test_gnu_gzip_reads_the_members_as_one_stream() -> None:
    if shutil.which("gzip") is None:
        pytest.skip("no gzip binary on this machine")
    data = _sample(2 * BLOCK + 99)
    packed = _pack(data, workers=2, piece=4096)
    result = subprocess.run(["gzip", "-dc"], input=packed, capture_output=True, check=True)
    assert result.stdout == data


def test_an_error_mid_stream_writes_nothing_more() -> None:
    out = io.BytesIO()
    with pytest.raises(RuntimeError), ParallelGzipWriter(out, 6, workers=2) as gz:
        gz.write(b"x" * (BLOCK // 2))
        raise RuntimeError("packaging failed")
    assert out.getvalue() == b""
    with pytest.raises(ValueError):
        gz.write(b"late")
