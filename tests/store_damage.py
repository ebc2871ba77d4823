"""Every kind of damage the corruption matrix applies to one experiment's folder (issue 8).

Each kind is ``(name, where, apply)``: ``where`` says what it breaks — ``manifest`` (the
experiment must be listed DAMAGED with a reason, and refused by status/logs/relaunch with a
one-line error), ``jobfile`` (a job file or the events log: listing and status keep working)
or ``index`` (the cache: everything keeps working). ``apply(exp_dir, home)`` damages it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

Apply = Callable[[Path, Path], None]
JOB = "script"  # the job name of a `run --script` experiment


def _manifest(exp_dir: Path) -> Path:
    return exp_dir / "experiment.json"


def _write(content: bytes | str) -> Apply:
    def apply(exp_dir: Path, home: Path) -> None:
        path = _manifest(exp_dir)
        path.unlink()
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    return apply


def _edit(change: Callable[[dict[str, Any]], None]) -> Apply:
    """Valid JSON, wrong content: ``change`` edits the parsed manifest in place."""

    def apply(exp_dir: Path, home: Path) -> None:
        path = _manifest(exp_dir)
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data, allow_nan=True))

    return apply


def _set(key: str, value: Any) -> Apply:
    return _edit(lambda d: d.__setitem__(key, value))


def _set_job(key: str, value: Any) -> Apply:
    return _edit(lambda d: d["jobs"][0].__setitem__(key, value))


def _replace_with(make: Callable[[Path], None]) -> Apply:
    def apply(exp_dir: Path, home: Path) -> None:
        path = _manifest(exp_dir)
        path.unlink()
        make(path)

    return apply


def _sparse(size: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with path.open("wb") as fh:
            fh.write(b'{"schema_version": 1, ')
            fh.truncate(size)

    return make


def _job_file(name: str, content: bytes | None = None, *, fifo: bool = False) -> Apply:
    def apply(exp_dir: Path, home: Path) -> None:
        path = exp_dir / "jobs" / JOB / name if name != "events.jsonl" else exp_dir / name
        if fifo:
            path.unlink()
            os.mkfifo(path)
        elif content is None:  # truncated in the middle
            data = path.read_bytes()
            path.write_bytes(data[: max(1, len(data) // 2)])
        else:
            path.write_bytes(content)

    return apply


def _jobs_symlink_outside(exp_dir: Path, home: Path) -> None:
    outside = home.parent / "outside-the-store"
    outside.mkdir(exist_ok=True)
    shutil.copytree(exp_dir / "jobs" / JOB, outside / JOB, dirs_exist_ok=True)
    shutil.rmtree(exp_dir / "jobs")
    (exp_dir / "jobs").symlink_to(outside)


def _folder_symlink_outside(exp_dir: Path, home: Path) -> None:
    outside = home.parent / "outside-folder"
    shutil.move(str(exp_dir), str(outside))
    exp_dir.symlink_to(outside)


def _index(sql: list[str] | None = None, raw: bytes | None = None) -> Apply:
    def apply(exp_dir: Path, home: Path) -> None:
        import sqlite3

        index = home / "index.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{index}{suffix}").unlink(missing_ok=True)
        if raw is not None:
            index.write_bytes(raw)
            return
        from core.store.index import INDEX_VERSION

        db = sqlite3.connect(index)
        for statement in sql or []:
            db.execute(statement)
        db.execute(f"PRAGMA user_version={INDEX_VERSION}")
        db.commit()
        db.close()

    return apply


DEEP = 200_000
WRONG_SHAPE = _job_file("executor.json", b'{"backend": "local", "x": 1}')
DAMAGES: list[tuple[str, str, Apply]] = [
    # the manifest's bytes
    ("nested-list-200k", "manifest", _write("[" * DEEP + "]" * DEEP)),
    ("nested-object-200k", "manifest", _write('{"a":' * DEEP + "1" + "}" * DEEP)),
    ("empty", "manifest", _write(b"")),
    ("truncated", "manifest", _write('{"schema_version": 1, "id": "x", "tit')),
    ("bad-bytes", "manifest", _write(b'{"schema_version": 1, "id": "\xff\xfe"}')),
    ("not-an-object", "manifest", _write("[1, 2]")),
    ("missing", "manifest", lambda d, h: _manifest(d).unlink()),
    # the manifest is not a regular file, or too big
    ("is-directory", "manifest", _replace_with(lambda p: p.mkdir())),
    ("is-fifo", "manifest", _replace_with(lambda p: os.mkfifo(p))),
    ("symlink-dev-zero", "manifest", _replace_with(lambda p: p.symlink_to("/dev/zero"))),
    ("symlink-dev-stdin", "manifest", _replace_with(lambda p: p.symlink_to("/dev/stdin"))),
    ("1-gb-file", "manifest", _replace_with(_sparse(1 << 30))),
    ("17-mib-file", "manifest", _replace_with(_sparse(17 << 20))),
    # valid JSON, wrong types or values
    ("created-at-1e300", "manifest", _set("created_at", 1e300)),
    ("created-at-nan", "manifest", _set("created_at", float("nan"))),
    ("created-at-negative", "manifest", _set("created_at", -5.0)),
    ("created-at-text", "manifest", _set("created_at", "yesterday")),
    ("title-number", "manifest", _set("title", 12)),
    ("tags-objects", "manifest", _set("tags", [{}])),
    ("overrides-numbers", "manifest", _set("overrides", [1])),
    ("jobs-object", "manifest", _set("jobs", {"a": 1})),
    ("jobs-text", "manifest", _set("jobs", "ab")),
    ("job-entry-number", "manifest", _set("jobs", [1])),
    ("job-entry-null", "manifest", _set("jobs", [None])),
    ("job-state-unknown", "manifest", _set_job("state", "EXPLODED")),
    ("job-state-number", "manifest", _set_job("state", 3)),
    ("job-handle-text", "manifest", _set_job("handle", "local://x")),
    ("job-handle-fields", "manifest", _set_job("handle", {"backend": 1})),
    ("job-exit-code-text", "manifest", _set_job("exit_code", "zero")),
    ("job-restarts-list", "manifest", _set_job("restarts", [])),
    ("job-ended-at-1e300", "manifest", _set_job("ended_at", 1e300)),
    ("job-dependencies-text", "manifest", _set_job("dependencies", "a")),
    ("job-backend-missing", "manifest", _edit(lambda d: d["jobs"][0].pop("backend"))),
    ("schema-version-bool", "manifest", _set("schema_version", True)),
    ("schema-version-future", "manifest", _set("schema_version", 99)),
    ("id-of-another", "manifest", _set("id", "someone-else")),
    ("duplicate-job-names", "manifest", _edit(lambda d: d["jobs"].append(d["jobs"][0]))),
    # names read back from disk (issue 8 item 7)
    ("job-name-dotdot", "manifest", _set_job("name", "../../x")),
    ("job-name-slash", "manifest", _set_job("name", "a/b")),
    ("job-name-nul", "manifest", _set_job("name", "a\x00b")),
    ("job-name-leading-dot", "manifest", _set_job("name", ".hidden")),
    ("job-name-300-chars", "manifest", _set_job("name", "j" * 300)),
    ("job-name-empty", "manifest", _set_job("name", "")),
    ("folder-symlink-outside", "manifest", _folder_symlink_outside),
    # job files and the events log
    ("executor-bad-bytes", "jobfile", _job_file("executor.json", b"\xff\xfe\x00garbage")),
    ("executor-truncated", "jobfile", _job_file("executor.json")),
    (
        "executor-wrong-shape",
        "jobfile",
        _job_file("executor.json", b'{"backend": "local", "x": 1}'),
    ),
    ("executor-fifo", "jobfile", _job_file("executor.json", fifo=True)),
    ("task-bad-bytes", "jobfile", _job_file("task.json", b"\xff\xfe\x00garbage")),
    ("task-truncated", "jobfile", _job_file("task.json")),
    ("task-fifo", "jobfile", _job_file("task.json", fifo=True)),
    ("events-bad-bytes", "jobfile", _job_file("events.jsonl", b'\xff\xfe\n{"t": "x"}\n[1]\n')),
    ("events-truncated", "jobfile", _job_file("events.jsonl")),
    ("events-fifo", "jobfile", _job_file("events.jsonl", fifo=True)),
    ("jobs-dir-symlink-outside", "jobfile", _jobs_symlink_outside),
    # the index
    ("index-wrong-tables", "index", _index(["CREATE TABLE experiments (x TEXT)"])),
    ("index-no-meta", "index", _index(["CREATE TABLE unrelated (a)"])),
    ("index-garbage", "index", _index(raw=b"SQLite format 3\x00" + b"\x07" * 4096)),
    ("index-text", "index", _index(raw=b"not a database at all\n" * 100)),
]
