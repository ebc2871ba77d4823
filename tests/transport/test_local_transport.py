"""LocalTransport: the login-node transport, and the shared resumable tail loop."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from core.transport import TransportError
from core.transport.local import LocalTransport, local_transport


async def test_run_passes_argv_verbatim_and_collects_output() -> None:
    t = LocalTransport()
    weird = ["it's", "$(echo no)", "a;b", "line1\nline2", ""]
    result = await t.run(["printf", "%s|", *weird])
    assert result.ok
    assert result.stdout.decode() == "|".join(weird) + "|"


async def test_run_reports_exit_code_and_stderr_and_stdin() -> None:
    t = LocalTransport()
    result = await t.run(["sh", "-c", "cat; echo oops >&2; exit 4"], input=b"in")
    assert (result.returncode, result.stdout, result.stderr) == (4, b"in", b"oops\n")


async def test_run_env_is_added_to_the_environment() -> None:
    t = LocalTransport()
    result = await t.run(["sh", "-c", 'printf %s "$SECRET:$HOME"'], env={"SECRET": "x y"})
    assert result.stdout.decode() == f"x y:{os.environ['HOME']}"


async def test_missing_command_is_exit_127_not_a_transport_fault() -> None:
    result = await LocalTransport().run(["definitely-not-a-command-xyz"])
    assert result.returncode == 127


async def test_timeout_kills_the_process_group() -> None:
    t = LocalTransport()
    started = time.monotonic()
    with pytest.raises(TransportError, match="timed out"):
        await t.run(["sh", "-c", "sleep 30 & sleep 30"], timeout=0.5)
    assert time.monotonic() - started < 5


async def test_files_roundtrip(tmp_path: Path) -> None:
    t = local_transport()
    assert t is local_transport()
    target = str(tmp_path / "a" / "b" / "f.txt")
    await t.write(target, b"hello world", mode=0o640)
    assert oct(os.stat(target).st_mode & 0o777) == "0o640"
    assert await t.read(target) == b"hello world"
    assert await t.read(target, 6) == b"world"
    assert await t.read(target, 0, 5) == b"hello"
    assert await t.size(target) == 11
    assert await t.size(str(tmp_path / "nope")) is None
    with pytest.raises(FileNotFoundError):
        await t.read(str(tmp_path / "nope"))
    await t.get(target, tmp_path / "copy" / "g.txt")
    assert (tmp_path / "copy" / "g.txt").read_bytes() == b"hello world"
    await t.put(tmp_path / "copy" / "g.txt", str(tmp_path / "up" / "h.txt"))
    await t.put(tmp_path / "up" / "h.txt", str(tmp_path / "up" / "h.txt"))  # onto itself
    assert (tmp_path / "up" / "h.txt").read_bytes() == b"hello world"
    await t.makedirs(str(tmp_path / "x" / "y"))
    await t.makedirs(str(tmp_path / "x" / "y"))
    assert (tmp_path / "x" / "y").is_dir()


async def test_tail_without_follow_reads_from_offset(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"0123456789")
    t = LocalTransport()
    assert b"".join([c async for c in t.tail(str(path), offset=4)]) == b"456789"
    with pytest.raises(FileNotFoundError):
        _ = [c async for c in t.tail(str(tmp_path / "missing"))]


async def test_follow_waits_for_the_file_streams_and_drains_after_done(tmp_path: Path) -> None:
    """Bytes written after the last empty read but before done() turned true still arrive."""
    path = tmp_path / "log"
    finished = asyncio.Event()
    expected = b"".join(f"line {i}\n".encode() for i in range(20))

    async def writer() -> None:
        await asyncio.sleep(0.2)  # the file does not exist yet when following starts
        with open(path, "ab") as fh:
            for i in range(20):
                fh.write(f"line {i}\n".encode())
                fh.flush()
                await asyncio.sleep(0.02)
        finished.set()

    async def done() -> bool:
        return finished.is_set()

    task = asyncio.create_task(writer())
    chunks = [
        c async for c in LocalTransport().tail(str(path), follow=True, done=done, interval=0.05)
    ]
    await task
    assert b"".join(chunks) == expected
    assert len(chunks) > 1
