"""The committed NeMo Run stores (tests/fixtures/nemorun_stores, made by NeMo Run 0.11.1)."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "nemorun_stores"
#: Where the SSHTunnel experiments' job dirs live "on the cluster" (restored from the tarball).
REMOTE = Path("/tmp/nemorun-fixture-remote")


def expected() -> dict[str, Any]:
    """What `nemo experiment status` / `logs` reported when the stores were made."""
    data: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text())
    return data


def copy_home(dest: Path) -> Path:
    """A copy of the NeMo Run home (tests never touch the committed one)."""
    shutil.copytree(FIXTURES / "home", dest, symlinks=True)
    return dest


def restore_remote() -> None:
    """Put the SSH experiments' cluster-side files back where NeMo Run left them."""
    with tarfile.open(FIXTURES / "remote.tar.gz") as tar:
        tar.extractall("/", filter="data")


def exp_id(title: str) -> str:
    (found,) = [k for k in expected() if k.startswith(f"{title}_")]
    return found


def nemo_log_lines(exp: str, job: str) -> list[str]:
    """The job's output lines as `nemo experiment logs` printed them (its `job/0 ` prefix off)."""
    text = expected()[exp]["jobs"][job]["logs"]
    prefix = f"{job}/0 "
    return [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)]
