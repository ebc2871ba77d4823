"""Content-addressed upload and verified extraction, through transports."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from core.packaging import (
    ArchiveIntegrityError,
    GitArchivePackager,
    PackageResult,
    PackagingError,
    RateMeter,
    extract_archive,
    remote_sha256,
    upload_archive,
)


@pytest.fixture
def packed(repo: Path, tmp_path: Path) -> PackageResult:
    return GitArchivePackager(basepath=str(repo)).package(tmp_path / "local-cache")


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".part-" in p.name)


async def test_first_upload_sends_second_sends_nothing(packed, tmp_path: Path, h) -> None:
    transport = h.DirTransport()
    cache = tmp_path / "remote" / "archives"
    first = await upload_archive(transport, packed.archive, packed.sha256, str(cache))
    assert first.remote_path == f"{cache}/{packed.sha256}.tar.gz"
    assert (first.bytes_sent, first.skipped, first.replaced_corrupt) == (packed.size, False, False)
    assert Path(first.remote_path).read_bytes() == packed.archive.read_bytes()
    assert transport.bytes_put == packed.size
    # Every command went as an argv list; the hash was computed remotely.
    assert any(cmd[0] == "sha256sum" for cmd in transport.commands)

    second = await upload_archive(transport, packed.archive, packed.sha256, str(cache))
    assert (second.bytes_sent, second.skipped) == (0, True)
    assert transport.bytes_put == packed.size  # nothing more crossed
    assert leftovers(cache) == []


@pytest.mark.parametrize("damage", ["flip", "truncate"])
async def test_corrupted_remote_archive_is_detected_and_resent(
    packed, tmp_path: Path, h, damage: str
) -> None:
    transport = h.DirTransport()
    cache = tmp_path / "remote"
    result = await upload_archive(transport, packed.archive, packed.sha256, str(cache))
    remote = Path(result.remote_path)
    data = bytearray(remote.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF  # same size, wrong bytes: only the hash can tell
    else:
        del data[len(data) // 2 :]
    remote.write_bytes(bytes(data))

    again = await upload_archive(transport, packed.archive, packed.sha256, str(cache))
    assert (again.skipped, again.replaced_corrupt, again.bytes_sent) == (False, True, packed.size)
    assert remote.read_bytes() == packed.archive.read_bytes()
    assert transport.bytes_put == 2 * packed.size
    assert leftovers(cache) == []


async def test_wrong_local_archive_never_lands_under_the_address(packed, tmp_path: Path, h) -> None:
    transport = h.DirTransport()
    cache = tmp_path / "remote"
    wrong_sha = "0" * 64
    with pytest.raises(ArchiveIntegrityError, match="hashes to"):
        await upload_archive(transport, packed.archive, wrong_sha, str(cache))
    assert not (cache / f"{wrong_sha}.tar.gz").exists()
    assert leftovers(cache) == []
    with pytest.raises(ValueError, match="not a sha256"):
        await upload_archive(transport, packed.archive, "abc", str(cache))


async def test_progress_per_chunk_and_rate(packed, tmp_path: Path, h) -> None:
    transport = h.ProgressDirTransport()
    transport.chunk = max(1, packed.size // 5)
    updates: list[tuple[int, int, float]] = []
    meter = RateMeter(lambda done, total, rate: updates.append((done, total, rate)))
    result = await upload_archive(
        transport, packed.archive, packed.sha256, str(tmp_path / "r"), progress=meter
    )
    assert result.bytes_sent == packed.size
    assert len(updates) >= 5
    assert updates[-1][:2] == (packed.size, packed.size)
    assert meter.done == packed.size and meter.rate > 0
    assert result.rate > 0


async def test_progress_without_transport_support_gets_start_and_end(packed, tmp_path, h) -> None:
    calls: list[tuple[int, int]] = []
    await upload_archive(
        h.DirTransport(),
        packed.archive,
        packed.sha256,
        str(tmp_path / "r"),
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls == [(0, packed.size), (packed.size, packed.size)]


async def test_extract_verifies_then_unpacks(packed, tmp_path: Path, h) -> None:
    transport = h.DirTransport()
    up = await upload_archive(transport, packed.archive, packed.sha256, str(tmp_path / "r"))
    dest = tmp_path / "job" / "code"
    before = time.time()
    await extract_archive(
        transport, up.remote_path, str(dest), packed.sha256, local_archive=packed.archive
    )
    assert (dest / "pkg/model.py").read_text() == "LAYERS = 2\n"
    assert os.access(dest / "scripts/run.sh", os.X_OK)
    assert (dest / "model_link.py").is_symlink()
    # Extraction time, not the archive's fixed 1980 mtime (`tar -m`).
    assert (dest / "train.py").stat().st_mtime >= before - 5
    tar_cmd = next(c for c in transport.commands if c[0] == "tar")
    assert tar_cmd[-2:] == ("-C", str(dest))


async def test_extract_refuses_a_corrupted_archive(packed, tmp_path: Path, h) -> None:
    transport = h.DirTransport()
    up = await upload_archive(transport, packed.archive, packed.sha256, str(tmp_path / "r"))
    Path(up.remote_path).write_bytes(b"garbage")
    dest = tmp_path / "job"
    with pytest.raises(ArchiveIntegrityError, match="refusing to extract"):
        await extract_archive(
            transport, up.remote_path, str(dest), packed.sha256, local_archive=packed.archive
        )
    assert not dest.exists()
    with pytest.raises(PackagingError, match="does not exist"):
        await extract_archive(
            transport,
            str(tmp_path / "missing.tar.gz"),
            str(dest),
            packed.sha256,
            local_archive=packed.archive,
        )


async def test_remote_sha256_missing_file_is_none(tmp_path: Path, h) -> None:
    assert await remote_sha256(h.DirTransport(), str(tmp_path / "nope")) is None


async def test_real_local_transport(packed, tmp_path: Path) -> None:
    """The engine's LocalTransport (a Slurm login node) behaves like the test transport."""
    local_transport = pytest.importorskip("core.transport.local")
    transport = local_transport.LocalTransport()
    cache = tmp_path / "remote"
    first = await upload_archive(transport, packed.archive, packed.sha256, str(cache))
    second = await upload_archive(transport, packed.archive, packed.sha256, str(cache))
    assert (first.bytes_sent, second.bytes_sent, second.skipped) == (packed.size, 0, True)
    await extract_archive(
        transport,
        first.remote_path,
        str(tmp_path / "x"),
        packed.sha256,
        local_archive=packed.archive,
    )
    assert (tmp_path / "x" / "train.py").exists()
