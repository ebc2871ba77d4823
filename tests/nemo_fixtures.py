"""The committed NeMo Run stores (tests/fixtures/nemorun_stores, made by NeMo Run 0.11.1)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "nemorun_stores"
#: Where the SSHTunnel experiments' job dirs live "on the cluster" (restored from the tarball).
REMOTE = Path("/tmp/nemorun-fixture-remote")
#: Where make_stores.py ran: the jobs' PYTHONPATH (the folder holding nr_tasks.py) points here.
RECORDED = "/work/wt-sweep/tests/fixtures/nemorun_stores"
#: That folder itself, not the NeMo Run home under it (the importer maps home paths itself,
#: and tests check it does, so those stay as recorded).
_CODE_DIR = re.compile(re.escape(RECORDED) + r"(?![/\w])")


def expected() -> dict[str, Any]:
    """What `nemo experiment status` / `logs` reported when the stores were made."""
    data: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text())
    return data


def copy_home(dest: Path) -> Path:
    """A copy of the NeMo Run home (tests never touch the committed one).

    The jobs' recorded PYTHONPATH names the checkout make_stores.py ran in; it is pointed at
    this checkout's fixtures folder, as a user's code folder would still exist on their machine.
    """
    shutil.copytree(FIXTURES / "home", dest, symlinks=True)
    for path in dest.rglob("*"):
        if path.is_file() and not path.is_symlink():
            _point_code_dir(path)
    return dest


def _point_code_dir(path: Path) -> None:
    text = path.read_text(errors="surrogateescape")
    if path.name == "_CONFIG":
        text = _repack(text)
    elif path.name == "_TASKS":
        text = json.dumps([[_repack(part) for part in task] for task in json.loads(text)])
    else:
        text = _CODE_DIR.sub(str(FIXTURES), text)
    path.write_text(text, errors="surrogateescape")


def _repack(packed: str) -> str:
    """NeMo Run's base64(zlib(fiddle JSON)) record, with the code folder re-pointed."""
    data = zlib.decompressobj().decompress(base64.urlsafe_b64decode(packed.strip())).decode()
    repointed = _CODE_DIR.sub(str(FIXTURES), data).encode()
    return base64.urlsafe_b64encode(zlib.compress(repointed)).decode()


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
