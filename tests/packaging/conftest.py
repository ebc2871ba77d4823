"""Fixtures for the packaging tests: real git repositories in tmp dirs and a dir transport."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from core.transport import CommandResult, Transport

# Tests must not depend on (or be broken by) the developer's global git config.
GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in a test repository (never in /work/main)."""
    proc = subprocess.run(
        ["git", "-c", "protocol.file.allow=always", *args],
        cwd=cwd,
        env=GIT_ENV,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"git {args} failed: {proc.stderr}"
    return proc.stdout.strip()


def write(path: Path, text: str | bytes, executable: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    if executable:
        path.chmod(0o755)
    return path


def init_repo(path: Path, files: dict[str, str] | None = None, message: str = "init") -> Path:
    """A repository with user config set in its own .git/config and one commit."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test")
    git(path, "config", "user.email", "test@example.com")
    for rel, text in (files or {"README.md": "hello\n"}).items():
        write(path / rel, text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)
    return path


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every path under ``root`` (``.git`` included) → (content digest, mode, mtime_ns).

    Comparing two snapshots catches changed bytes, stray files, *and* files rewritten with
    identical bytes (mtime), e.g. git refreshing the index.
    """
    result: dict[str, tuple[str, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            st = full.lstat()
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                digest = "link:" + os.readlink(full)
            elif full.is_file():
                digest = hashlib.sha256(full.read_bytes()).hexdigest()
            else:
                digest = "dir"
            mtime = st.st_mtime_ns
            result[rel] = (digest, st.st_mode, mtime)
    return result


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small repo: source files, an executable script, a symlink, a nested package."""
    root = tmp_path / "repo"
    init_repo(
        root,
        {
            "README.md": "hello\n",
            "train.py": "print('train')\n",
            "pkg/__init__.py": "",
            "pkg/model.py": "LAYERS = 2\n",
            "scripts/run.sh": "#!/bin/sh\necho run\n",
            ".gitignore": "*.log\nbuild/\n",
        },
    )
    (root / "scripts/run.sh").chmod(0o755)
    os.symlink("pkg/model.py", root / "model_link.py")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "exec bit and symlink")
    return root


class DirTransport(Transport):
    """A Transport whose "remote" is this machine's filesystem (paths are absolute).

    Commands run as real subprocesses (argv lists, like the SSH transport), so
    ``sha256sum``/``tar``/``mv`` behave as on a cluster. ``bytes_put`` counts what crossed
    ``put``, which is what the "second upload sends 0 bytes" tests assert on.
    """

    target = "dir://test"

    def __init__(self) -> None:
        self.bytes_put = 0
        self.commands: list[tuple[str, ...]] = []

    async def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
    ) -> CommandResult:
        args = tuple(str(a) for a in argv)
        self.commands.append(args)
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            return CommandResult(args, 127, b"", b"not found")
        out, err = await asyncio.wait_for(proc.communicate(input), timeout)
        return CommandResult(args, proc.returncode or 0, out, err)

    async def put(self, local: Path, remote: str) -> None:
        Path(remote).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, remote)
        self.bytes_put += Path(local).stat().st_size

    async def get(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)

    async def read(self, remote: str, offset: int = 0, length: int | None = None) -> bytes:
        with open(remote, "rb") as fh:
            fh.seek(offset)
            return fh.read(-1 if length is None else length)

    async def write(self, remote: str, data: bytes, mode: int = 0o600) -> None:
        Path(remote).parent.mkdir(parents=True, exist_ok=True)
        Path(remote).write_bytes(data)

    async def size(self, remote: str) -> int | None:
        try:
            return os.stat(remote).st_size
        except FileNotFoundError:
            return None

    async def makedirs(self, remote: str, mode: int = 0o700) -> None:
        os.makedirs(remote, mode, exist_ok=True)

    def tail(self, remote, *, offset=0, follow=False, done=None, interval=0.25):  # type: ignore[no-untyped-def]
        raise NotImplementedError


class ProgressDirTransport(DirTransport):
    """Same, with a chunked ``put(progress=)`` like an SFTP upload reports."""

    chunk = 64 * 1024

    async def put(
        self, local: Path, remote: str, progress: Callable[[int, int], None] | None = None
    ) -> None:
        total = Path(local).stat().st_size
        Path(remote).parent.mkdir(parents=True, exist_ok=True)
        done = 0
        with open(local, "rb") as src, open(remote, "wb") as dst:
            while chunk := src.read(self.chunk):
                dst.write(chunk)
                done += len(chunk)
                self.bytes_put += len(chunk)
                if progress is not None:
                    progress(done, total)


@pytest.fixture
def dir_transport() -> DirTransport:
    return DirTransport()


class Helpers:
    """The helpers above as one fixture, so test modules need not import conftest."""

    git = staticmethod(git)
    write = staticmethod(write)
    init_repo = staticmethod(init_repo)
    snapshot = staticmethod(snapshot)
    DirTransport = DirTransport
    ProgressDirTransport = ProgressDirTransport
    GIT_ENV = GIT_ENV


@pytest.fixture
def h() -> type[Helpers]:
    return Helpers
