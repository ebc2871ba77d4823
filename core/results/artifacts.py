"""A job's artifacts: the files it wrote under ``NEMORUN_JOB_DIR`` plus declared globs.

Each is recorded with path, size and mtime, plus sha256 when it is small enough to hash on
every listing (a 40 GB checkpoint is hashed when fetched, not listed). Checkpoints are
marked by name (``*.ckpt``, ``*.pt``, ``*.pth``, ``*.safetensors``, ``*.nemo``) or by living
in a ``checkpoints/`` folder (NeMo and Lightning save there; a ``.distcp`` shard has no
telling suffix). The listing is stored in the job's folder as ``artifacts.json`` (atomic
replace), so Detail and ``artifacts`` show it after the cluster's scratch has been purged.

The job dir also holds what the backends put there for their own use (the sbatch script,
Slurm's output files, the local supervisor's pid and result files, the code); those are not
the job's outputs and are left out by name.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import posixpath
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.results.listing import Entry, list_tree
from core.results.locate import Declared, JobOutputs
from core.transport import Transport, TransportError

if TYPE_CHECKING:
    from core.store import Store

ARTIFACTS_FILE = "artifacts.json"
#: Files up to this size get a sha256 in every listing.
HASH_LIMIT = 8 << 20
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors", ".nemo")
CHECKPOINT_DIRS = ("checkpoints", "checkpoint", "ckpt")
#: Top-level names the backends and the store keep in a job dir for themselves.
BOOKKEEPING = (
    "logs",
    "spec.json",
    "pid.json",
    "result.json",
    "released",
    "cancel-requested",
    "task.json",
    "view.json",
    "executor.json",
    "provenance.json",
    ARTIFACTS_FILE,
    "cause.json",
    "sbatch-*.sh",
    "slurm-*.out",
    "slurm-*.err",
    "exitcode-*",
    "*.lock",
)


@dataclass(frozen=True)
class Artifact:
    path: str  # relative to the job dir, or absolute for a declared glob outside it
    size: int
    mtime: float
    sha256: str | None = None
    checkpoint: bool = False
    kind: str = "f"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "mtime": self.mtime,
            "sha256": self.sha256,
            "checkpoint": self.checkpoint,
            "kind": self.kind,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        return cls(
            path=str(data["path"]),
            size=int(data.get("size") or 0),
            mtime=float(data.get("mtime") or 0.0),
            sha256=data.get("sha256") if isinstance(data.get("sha256"), str) else None,
            checkpoint=bool(data.get("checkpoint")),
            kind=str(data.get("kind") or "f"),
        )


@dataclass
class ArtifactListing:
    job_dir: str
    target: str
    listed_at: float
    artifacts: list[Artifact]
    final: bool = False
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_dir": self.job_dir,
            "target": self.target,
            "listed_at": self.listed_at,
            "final": self.final,
            "problem": self.problem,
            "artifacts": [a.to_dict() for a in self.artifacts],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactListing:
        return cls(
            job_dir=str(data.get("job_dir") or ""),
            target=str(data.get("target") or "local"),
            listed_at=float(data.get("listed_at") or 0.0),
            artifacts=[Artifact.from_dict(a) for a in data.get("artifacts") or []],
            final=bool(data.get("final")),
            problem=data.get("problem"),
        )

    def find(self, path: str) -> Artifact | None:
        for artifact in self.artifacts:
            if artifact.path == path:
                return artifact
        return None

    def checkpoints(self) -> list[Artifact]:
        return [a for a in self.artifacts if a.checkpoint]


def is_checkpoint(path: str, kind: str = "f") -> bool:
    parts = path.split("/")
    if any(p in CHECKPOINT_DIRS for p in parts[:-1]):
        return True
    if kind == "d" and parts[-1] in CHECKPOINT_DIRS:
        return True
    return parts[-1].endswith(CHECKPOINT_SUFFIXES) or parts[-1].endswith(".nemo")


def is_bookkeeping(path: str) -> bool:
    top = path.split("/", 1)[0]
    return any(fnmatch.fnmatchcase(top, pattern) for pattern in BOOKKEEPING)


def absolute(listing_dir: str, path: str) -> str:
    """The artifact's full path (declared absolute paths are kept as they are)."""
    return path if posixpath.isabs(path) else posixpath.join(listing_dir, path)


async def list_artifacts(outputs: JobOutputs, declared: Declared | None = None) -> ArtifactListing:
    """List the job dir (and declared globs), hashing the small files."""
    declared = declared or Declared()
    root = outputs.job_dir
    found: dict[str, Entry] = {}
    problem = None
    try:
        for entry in await list_tree(outputs.transport, root):
            if entry.kind in ("f", "l", "d") and not is_bookkeeping(entry.path):
                found[entry.path] = entry
    except TransportError as exc:
        problem = str(exc)
    for pattern in declared.artifacts:
        try:
            for entry in await _glob(outputs.transport, root, pattern):
                found.setdefault(entry.path, entry)
        except (TransportError, ValueError) as exc:
            problem = f"{pattern}: {exc}"
    to_hash = [
        absolute(root, e.path) for e in found.values() if e.kind == "f" and e.size <= HASH_LIMIT
    ]
    hashes = await hash_files(outputs.transport, to_hash)
    artifacts = [
        Artifact(
            path=e.path,
            size=e.size,
            mtime=e.mtime,
            sha256=hashes.get(absolute(root, e.path)),
            checkpoint=is_checkpoint(e.path, e.kind),
            kind=e.kind,
        )
        for e in sorted(found.values(), key=lambda e: (e.path.startswith("/"), e.path))
    ]
    return ArtifactListing(root, outputs.transport.target, time.time(), artifacts, problem=problem)


async def _glob(transport: Transport, root: str, pattern: str) -> list[Entry]:
    """Files matching a declared glob; relative ones under the job dir, never above it."""
    if ".." in pattern.split("/"):
        raise ValueError("a declared artifact glob may not contain `..`")
    full = pattern if posixpath.isabs(pattern) else posixpath.join(root, pattern)
    parts = full.split("/")
    base_parts = []
    for part in parts:
        if any(c in part for c in "*?["):
            break
        base_parts.append(part)
    base = "/".join(base_parts) or "/"
    if base == full:  # no wildcard: one file or folder
        base = posixpath.dirname(full)
    entries = await list_tree(transport, base)
    out = []
    for entry in entries:
        path = posixpath.join(base, entry.path)
        if not fnmatch.fnmatchcase(path, full):
            continue
        inside = path.startswith(root.rstrip("/") + "/")
        rel = path[len(root.rstrip("/")) + 1 :] if inside else path
        out.append(Entry(rel, entry.size, entry.mtime, entry.kind))
    return out


async def hash_files(transport: Transport, paths: list[str]) -> dict[str, str]:
    """sha256 of each file: in a thread locally, with one ``sha256sum`` call remotely."""
    if not paths:
        return {}
    if transport.target == "local":
        return await asyncio.to_thread(_hash_local, paths)
    out: dict[str, str] = {}
    for start in range(0, len(paths), 200):
        batch = paths[start : start + 200]
        result = await transport.run(["sha256sum", "--", *batch], timeout=120)
        for line in result.stdout.decode("utf-8", "surrogateescape").splitlines():
            digest, _, name = line.partition("  ")
            if len(digest) == 64 and name:
                out[name] = digest
    return out


def _hash_local(paths: list[str]) -> dict[str, str]:
    out = {}
    for path in paths:
        try:
            out[path] = file_sha256(path)
        except OSError:
            continue
    return out


def file_sha256(path: str, *, start: int = 0, into: Any = None) -> str:
    digest = into if into is not None else hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(start)
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return str(digest.hexdigest())


def record(store: Store, exp_id: str, job: str, listing: ArtifactListing) -> None:
    """Store the listing in the job's folder (atomic replace)."""
    data = json.dumps(listing.to_dict(), indent=1, sort_keys=True) + "\n"
    store.write_job_file(exp_id, job, ARTIFACTS_FILE, data)


def recorded(store: Store, exp_id: str, job: str) -> ArtifactListing | None:
    """The last stored listing, or None; a damaged file raises ``DamagedFileError``."""
    from core.store import DamagedFileError

    try:
        data = store.read_job_json(exp_id, job, ARTIFACTS_FILE)
    except FileNotFoundError:
        return None
    try:
        return ArtifactListing.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DamagedFileError(f"{exp_id}/{job}/{ARTIFACTS_FILE}: {exc}") from None
