"""Import NeMo Run's experiments (``~/.nemo_run`` or ``$NEMORUN_HOME``) into our store.

The source is only read, never written: no lock, no status refresh through NeMo Run, no
file touched. What each experiment becomes:

* **title, id, creation time**: from ``_CONFIG`` and the folder name
  (``experiments/<title>/<title>_<time_ns>``); our id is NeMo Run's id, so importing twice
  adds nothing the second time.
* **tasks**: ``_TASKS`` holds fiddle JSON (zlib, base64); it is read as data
  (:mod:`core.importers.fiddle_json`) and rewritten in our task format, so no module it
  names is imported. ``run.Script`` and ``run.Partial``/``run.Config`` of importable
  functions come over; job groups do not (the job is listed as unknown, with the reason).
* **executors**: Local and Slurm (LocalTunnel and SSHTunnel) become our profiles, so the
  jobs can be relaunched; any other executor (Docker, Skypilot, Lepton…) is kept as its
  class name and fields in ``nemo_run.json`` and the job is UNKNOWN with that reason.
* **states**: local jobs from NeMo Run's ``.local_jobs.json`` registry; Slurm jobs from the
  ``job exited with code N`` line its sbatch script leaves in the job's log (exact exit
  code), else the recorded Slurm job id is polled by our Slurm backend like one of ours.
* **logs**: copied into the job's ``logs/`` folder: local ``stdout.log``/``stderr.log``,
  Slurm ``log-*_<id>_*.out`` from the job dir, read over SSH for SSHTunnel experiments.

Damage never stops an import: an unreadable ``_CONFIG``/``_TASKS`` or job is imported as
what could be read, with the reason on the job (UNKNOWN) or listed in the result.
Paths come from the source folder being read, never from absolute paths recorded in it
(they may point anywhere), except the remote job dir of SSH experiments, which is only
read through the SSH connection and only below the tunnel's recorded ``job_dir``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import posixpath
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.engine.executors import ExecutorProfile, LocalExecutor, LocalTunnel, SlurmExecutor
from core.engine.executors import SSHTunnel as OurSSHTunnel
from core.engine.protocol import Handle
from core.engine.states import JobState
from core.importers.fiddle_json import Buildable, FiddleJSONError, Opaque, PyRef, decode_text
from core.store import ExperimentRecord, JobRecord, Store
from core.store.records import MAX_TIME, name_problem

#: Imported experiments carry this tag.
NEMO_TAG = "nemo-run"
#: Per job: what NeMo Run recorded about it (executor class and fields, handle, notes).
IMPORT_FILE = "nemo_run.json"
#: Largest file read from the source (a log, a registry); past it the tail is kept.
MAX_READ = 16 * 1024 * 1024
_EXIT_LINE = re.compile(rb"^job exited with code (\d+)\s*$", re.MULTILINE)
_ID = re.compile(r"\A(?P<title>.+)_(?P<ns>\d{10,20})\Z")
_STATES = {s.value: s for s in JobState}


@dataclass
class ImportResult:
    """What an import did: ids imported, ids already there, and what could not be read."""

    imported: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (source folder, reason)
    notes: list[str] = field(default_factory=list)


def source_home(path: str | os.PathLike[str] | None = None) -> Path:
    """DIR, else ``$NEMORUN_HOME``, else ``~/.nemo_run`` (NeMo Run's own rule)."""
    if path:
        return Path(path).expanduser()
    env = os.environ.get("NEMORUN_HOME")
    return Path(env).expanduser() if env else Path.home() / ".nemo_run"


def experiment_dirs(home: Path) -> list[Path]:
    """``experiments/<title>/<id>`` folders (real folders only; symlinks are not followed)."""
    root = home / "experiments"
    found: list[Path] = []
    for title_dir in _real_dirs(root):
        found.extend(_real_dirs(title_dir))
    return sorted(found)


def _real_dirs(path: Path) -> list[Path]:
    try:
        entries = list(os.scandir(path))
    except OSError:
        return []
    return sorted(
        Path(e.path) for e in entries if e.is_dir(follow_symlinks=False) and e.name[:1] != "."
    )


def _read(path: Path, limit: int = MAX_READ) -> bytes:
    """A regular file's bytes (the last ``limit`` of them); symlinks are refused."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{path.name} is not a regular file")
    with open(path, "rb") as fh:
        if info.st_size > limit:
            fh.seek(info.st_size - limit)
        return fh.read(limit)


# -- reading one NeMo Run experiment -----------------------------------------------------------
@dataclass
class NemoJob:
    name: str
    task: Any = None  # decoded Buildable / Opaque, or None
    executor: Any = None
    handle: str = ""
    recorded_state: str | None = None
    dependencies: list[str] = field(default_factory=list)
    problem: str | None = None


@dataclass
class NemoExperiment:
    path: Path
    id: str
    title: str
    created_at: float
    jobs: list[NemoJob] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_experiment(path: Path) -> NemoExperiment:
    """Everything readable in one experiment folder; damage is noted, never raised."""
    exp_id = path.name
    match = _ID.match(exp_id)
    title = match["title"] if match else path.parent.name
    created = None
    if match:
        seconds = int(match["ns"]) / 1e9
        created = seconds if 0 < seconds <= MAX_TIME else None
    exp = NemoExperiment(path, exp_id, title, created or _mtime(path))
    try:
        config = decode_text(_read(path / "_CONFIG"))
        if isinstance(config, Buildable) and isinstance(config.args.get("title"), str):
            exp.title = config.args["title"]
    except (OSError, FiddleJSONError) as exc:
        exp.problems.append(f"_CONFIG unreadable: {_one_line(exc)}")
    try:
        entries = json.loads(_read(path / "_TASKS"))
        if not isinstance(entries, list):
            raise ValueError("not a list")
    except (OSError, ValueError, RecursionError) as exc:
        exp.problems.append(f"_TASKS unreadable: {_one_line(exc)}")
        return exp
    for number, entry in enumerate(entries):
        exp.jobs.append(_read_job(number, entry))
    return exp


def _read_job(number: int, entry: Any) -> NemoJob:
    job = NemoJob(name=f"job-{number}")
    try:
        if not isinstance(entry, list) or len(entry) != 2:
            raise FiddleJSONError("a _TASKS entry is not a [job, task] pair")
        cfg = decode_text(entry[0]) if isinstance(entry[0], str) else None
        if not isinstance(cfg, Buildable):
            raise FiddleJSONError("the job config is not a Job")
        if cfg.fn.name != "Job":
            job.problem = f"{cfg.fn.name} entries (job groups) are not imported"
        job.name = str(cfg.args.get("id") or job.name)
        job.executor = cfg.args.get("executor")
        job.handle = str(cfg.args.get("handle") or "")
        state = cfg.args.get("state")
        if isinstance(state, PyRef):
            job.recorded_state = state.name.rsplit(".", 1)[-1]
        deps = cfg.args.get("dependencies")
        job.dependencies = [str(d) for d in deps] if isinstance(deps, list) else []
        if isinstance(entry[1], str):
            job.task = decode_text(entry[1])
    except FiddleJSONError as exc:
        job.problem = f"unreadable job entry: {_one_line(exc)}"
    return job


# -- turning it into ours ----------------------------------------------------------------------
def task_document(task: Any) -> dict[str, Any] | None:
    """Our task document (core.serialize's format) for a decoded NeMo Run task, or None."""
    if not isinstance(task, Buildable):
        return None
    if task.fn.name == "Script" and task.fn.module.startswith("nemo_run"):
        a = task.args
        node = {
            "type": "script",
            "path": a.get("path") or None,
            "inline": a.get("inline") or None,
            "args": [str(x) for x in a.get("args") or []],
            "env": {str(k): str(v) for k, v in (a.get("env") or {}).items()},
            "entrypoint": str(a.get("entrypoint") or "bash"),
            "m": bool(a.get("m")),
        }
        return {"schema_version": 1, "kind": "script", "modules": {}, "task": node}
    return {"schema_version": 1, "kind": task.kind, "modules": {}, "task": _node(task, 0)}


class _Unconvertible(ValueError):
    pass


def _node(value: Any, depth: int) -> Any:
    if depth > 100:
        raise _Unconvertible("nested too deeply")
    if isinstance(value, Buildable):
        return {
            "type": value.kind,
            "fn": {"module": value.fn.module, "qualname": value.fn.name},
            "args": {k: _node(v, depth + 1) for k, v in sorted(value.args.items())},
        }
    if isinstance(value, PyRef):
        return {"type": "ref", "module": value.module, "qualname": value.name}
    if isinstance(value, list):
        return [_node(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return {"type": "tuple", "items": [_node(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise _Unconvertible("a dict with non-text keys")
        return {"type": "dict", "items": {k: _node(value[k], depth + 1) for k in sorted(value)}}
    if isinstance(value, float) and not math.isfinite(value):
        return {"type": "float", "value": repr(value)}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Opaque):
        raise _Unconvertible(f"a {value.type.dotted} value")
    raise _Unconvertible(f"a {type(value).__name__} value")


def executor_profile(executor: Any, known_hosts: str | None = None) -> ExecutorProfile | None:
    """Our profile for a decoded NeMo Run executor (Local, Slurm), or None."""
    if not isinstance(executor, Buildable):
        return None
    a = executor.args
    env = {str(k): str(v) for k, v in (a.get("env_vars") or {}).items()}
    name = executor.fn.name
    if name == "LocalExecutor":
        return LocalExecutor(env_vars=env, ntasks_per_node=int(a.get("ntasks_per_node") or 1))
    if name == "SlurmExecutor":
        tunnel_cfg = a.get("tunnel")
        tunnel: Any = LocalTunnel()  # never NeMo Run's folder: our jobs must not write there
        if isinstance(tunnel_cfg, Buildable) and tunnel_cfg.fn.name == "SSHTunnel":
            t = tunnel_cfg.args
            tunnel = OurSSHTunnel(
                host=str(t.get("host") or ""),
                user=t.get("user") or None,
                port=int(t["port"]) if t.get("port") else None,
                identity=t.get("identity") or None,
                job_dir=_tunnel_base(str(t.get("job_dir") or "")),
                known_hosts=known_hosts,
            )
        fields: dict[str, Any] = {
            k: a.get(k)
            for k in (
                "account", "partition", "time", "cpus_per_task", "gpus_per_node",
                "gpus_per_task", "mem", "qos", "constraint", "exclude", "gres",
                "container_image", "setup_lines",
            )
            if a.get(k) not in (None, "")
        }  # fmt: skip
        return SlurmExecutor(
            env_vars=env,
            nodes=int(a.get("nodes") or 1),
            ntasks_per_node=int(a.get("ntasks_per_node") or 1),
            container_mounts=[str(m) for m in a.get("container_mounts") or []],
            tunnel=tunnel,
            **fields,
        )
    return None


def _tunnel_base(job_dir: str) -> str:
    """NeMo Run sets a job's tunnel dir to ``<base>/<title>/<id>``; relaunches go to the base."""
    parts = job_dir.rstrip("/").split("/")
    if len(parts) > 2 and _ID.match(parts[-1]) and parts[-1].startswith(parts[-2]):
        return "/".join(parts[:-2])
    return job_dir


def _remote_job_dir(executor: Any) -> str | None:
    """The job's folder on the cluster as NeMo Run recorded it (SSHTunnel experiments)."""
    if not isinstance(executor, Buildable):
        return None
    details = executor.args.get("job_details")
    if isinstance(details, Buildable) and isinstance(details.args.get("folder"), str):
        return str(details.args["folder"])
    return None


def _job_name(name: str, taken: set[str], number: int) -> str:
    clean = re.sub(r"[/|\x00-\x1f\x7f]", "_", name).lstrip(".") or f"job-{number}"
    clean = clean[:120]
    while clean in taken:
        clean = f"{clean}-{number}"
    return clean


async def import_store(
    store: Store,
    home: Path,
    *,
    known_hosts: str | None = None,
    only: set[str] | None = None,
) -> ImportResult:
    """Import every experiment under ``home`` not yet in ``store`` (see the module doc)."""
    result = ImportResult()
    local_registry = _local_registry(home, result)
    transports: dict[str, Any] = {}
    try:
        for path in experiment_dirs(home):
            if only is not None and path.name not in only:
                continue
            if name_problem(path.name) is not None:
                result.damaged.append((str(path), "the folder name cannot be an id"))
                continue
            if (store.experiments_dir / path.name).exists():
                result.already.append(path.name)
                continue
            try:
                exp = read_experiment(path)
                record, files = await _convert(exp, store, local_registry, known_hosts, transports)
                store.create(record, files)
            except Exception as exc:  # one bad experiment must not stop the others
                result.damaged.append((str(path), _one_line(exc)))
                continue
            result.imported.append(record.id)
            result.damaged.extend((str(path), p) for p in exp.problems)
    finally:
        for transport in transports.values():
            with contextlib.suppress(Exception):  # closing is best effort
                await transport.close()
    return result


def _local_registry(home: Path, result: ImportResult) -> dict[str, Any]:
    """NeMo Run's ``.local_jobs.json``: app id → [state, app id, log dir, roles]."""
    try:
        data = json.loads(_read(home / ".local_jobs.json"))
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as exc:
        result.damaged.append((str(home / ".local_jobs.json"), _one_line(exc)))
        return {}


async def _convert(
    exp: NemoExperiment,
    store: Store,
    local_registry: dict[str, Any],
    known_hosts: str | None,
    transports: dict[str, Any],
) -> tuple[ExperimentRecord, dict[str, dict[str, bytes | str]]]:
    jobs: list[JobRecord] = []
    files: dict[str, dict[str, bytes | str]] = {}
    taken: set[str] = set()
    renamed: dict[str, str] = {}
    for number, nemo in enumerate(exp.jobs):
        name = _job_name(nemo.name, taken, number)
        taken.add(name)
        renamed[nemo.name] = name
        rec, job_files = await _convert_job(
            exp, nemo, name, store, local_registry, known_hosts, transports
        )
        jobs.append(rec)
        files[name] = job_files
    for rec, nemo in zip(jobs, exp.jobs, strict=True):
        rec.dependencies = [renamed[d] for d in nemo.dependencies if d in renamed]
    if not exp.jobs:  # _TASKS unreadable: the experiment is listed, its damage shown
        reason = "; ".join(exp.problems) or "no jobs recorded"
        jobs.append(
            JobRecord(name="_unreadable", kind="unknown", backend="unknown",
                      state=JobState.UNKNOWN, source="nemo-run import", reason=reason)
        )  # fmt: skip
        files["_unreadable"] = {IMPORT_FILE: _json({"problems": exp.problems})}
    record = ExperimentRecord(
        id=exp.id,
        title=exp.title,
        created_at=exp.created_at,
        jobs=jobs,
        tags=[NEMO_TAG],
    )
    return record, files


async def _convert_job(
    exp: NemoExperiment,
    nemo: NemoJob,
    name: str,
    store: Store,
    local_registry: dict[str, Any],
    known_hosts: str | None,
    transports: dict[str, Any],
) -> tuple[JobRecord, dict[str, bytes | str]]:
    notes: list[str] = []
    files: dict[str, bytes | str] = {}
    executor_name = nemo.executor.fn.dotted if isinstance(nemo.executor, Buildable) else None
    profile = executor_profile(nemo.executor, known_hosts)
    kind = "unknown"
    if nemo.problem:
        notes.append(nemo.problem)
    document = None
    try:
        document = task_document(nemo.task)
    except _Unconvertible as exc:
        notes.append(f"task not imported: it holds {exc}")
    if document is not None:
        kind = document["kind"]
        files["task.json"] = _json(document)
    elif nemo.task is not None and not notes:
        notes.append("task not imported: not a Script, Partial or Config")
    if profile is not None:
        files["executor.json"] = _json({**profile.to_dict(), "profile_name": NEMO_TAG})
    else:
        notes.append(f"executor {executor_name or 'unreadable'} is not imported")
    rec = JobRecord(
        name=name,
        kind=kind,
        backend=profile.backend if profile is not None else "unknown",
        profile=NEMO_TAG,
        source="nemo-run import",
        state=JobState.UNKNOWN,
    )
    logs: dict[str, bytes] = {}
    if isinstance(profile, LocalExecutor):
        _local_job(exp, nemo, name, store, local_registry, rec, logs, notes)
    elif isinstance(profile, SlurmExecutor):
        await _slurm_job(exp, nemo, profile, rec, logs, notes, transports)
    elif nemo.recorded_state:
        notes.append(f"NeMo Run last recorded {nemo.recorded_state}")
    result = logs.pop("__result__", None)
    if result is not None:
        files["result.json"] = result
    for stream, data in logs.items():
        files[f"logs/{stream}.log"] = data
    if rec.state is JobState.UNKNOWN and rec.reason is None:
        rec.reason = "; ".join(notes) or "state not recorded by NeMo Run"
    elif notes and rec.reason is None:
        rec.reason = "; ".join(notes)
    files[IMPORT_FILE] = _json(
        {
            "source": str(exp.path),
            "nemo_id": exp.id,
            "job": nemo.name,
            "executor": executor_name,
            "executor_fields": _plain(nemo.executor.args)
            if isinstance(nemo.executor, Buildable)
            else None,
            "handle": nemo.handle,
            "recorded_state": nemo.recorded_state,
            "notes": notes,
            "imported_at": time.time(),
        }
    )
    return rec, files


def _local_job(
    exp: NemoExperiment,
    nemo: NemoJob,
    name: str,
    store: Store,
    registry: dict[str, Any],
    rec: JobRecord,
    logs: dict[str, bytes],
    notes: list[str],
) -> None:
    """State from ``.local_jobs.json``; logs from ``<job>/nemo_run/<app id>/<role>/0/``.

    The job's store folder becomes a finished run of our local backend (``result.json``,
    ``logs/``), so the backend reports and streams it like one of its own.
    """
    app_id = nemo.handle.rsplit("/", 1)[-1] if nemo.handle else ""
    entry = registry.get(app_id) if app_id else None
    state = entry[0] if isinstance(entry, list) and entry and isinstance(entry[0], str) else None
    mapped = _STATES.get(state or "")
    base = exp.path / nemo.name / "nemo_run" / app_id
    for stream in ("stdout", "stderr"):
        for found in sorted(base.glob(f"*/0/{stream}.log")) if app_id else []:
            if _inside(found, exp.path):
                try:
                    logs[stream] = _read(found)
                except OSError as exc:
                    notes.append(f"{stream} log unreadable: {_one_line(exc)}")
                break
    if mapped is None:
        notes.append(
            f"NeMo Run's local registry has no state for {app_id or 'this job'}"
            + (f" (last recorded {nemo.recorded_state})" if nemo.recorded_state else "")
        )
        return
    rec.state = mapped
    rec.source = "nemo-run:.local_jobs.json"
    if mapped.is_terminal:
        run_dir = store.job_dir(exp.id, name)
        rec.handle = Handle("local", "local", str(run_dir))
        rec.ended_at = None
        logs.setdefault("stdout", b"")
        logs.setdefault("stderr", b"")
        # Our local backend's record of a finished run (backends/local/supervisor.py).
        result = {"state": mapped.value, "exit_code": 0 if mapped is JobState.SUCCEEDED else None,
                  "reason": None if mapped is JobState.SUCCEEDED
                  else "imported from NeMo Run (it records no exit code)",
                  "source": "nemo-run:.local_jobs.json"}  # fmt: skip
        rec.exit_code = result["exit_code"]  # type: ignore[assignment]
        rec.reason = result["reason"]  # type: ignore[assignment]
        logs["__result__"] = _json(result).encode()


async def _slurm_job(
    exp: NemoExperiment,
    nemo: NemoJob,
    profile: SlurmExecutor,
    rec: JobRecord,
    logs: dict[str, bytes],
    notes: list[str],
    transports: dict[str, Any],
) -> None:
    """The job id from the handle; exit code and output from the files in its job dir."""
    job_id = nemo.handle.rsplit("/", 1)[-1] if nemo.handle else ""
    if not re.fullmatch(r"\d+(_\d+)?", job_id):
        notes.append(f"no Slurm job id recorded (handle {nemo.handle!r})")
        return
    rec.handle = Handle("slurm", profile.target(), job_id)
    rec.state = JobState.SUBMITTED  # until a file or the scheduler says more
    rec.source = "nemo-run import (to be polled)"
    names: dict[str, bytes] = {}
    if isinstance(profile.tunnel, OurSSHTunnel):
        folder = _remote_job_dir(nemo.executor)
        base = profile.tunnel.job_dir
        if folder and base and _remote_inside(folder, base):
            try:
                names = await _remote_files(profile.tunnel, folder, job_id, transports)
            except Exception as exc:
                notes.append(f"logs not fetched over SSH: {_one_line(exc)}")
        else:
            notes.append("no remote job dir recorded below the tunnel's job_dir")
    else:
        folder_path = exp.path / nemo.name
        for path in sorted(folder_path.glob(f"*_{job_id}*.out")):
            if _inside(path, exp.path):
                try:
                    names[path.name] = _read(path)
                except OSError as exc:
                    notes.append(f"{path.name} unreadable: {_one_line(exc)}")
    output = [data for n, data in sorted(names.items()) if n.startswith("log-")]
    if output:
        logs["stdout"] = b"".join(output)
        logs["stderr"] = b""  # NeMo Run's srun writes both streams into the one file
    for n, data in sorted(names.items()):
        if n.startswith("sbatch_") and (found := _EXIT_LINE.findall(data)):
            code = int(found[-1])
            rec.exit_code = code
            rec.state = JobState.SUCCEEDED if code == 0 else JobState.FAILED
            rec.source = f"nemo-run:{n}"
            if code:
                rec.reason = f"exit code {code}"
    if rec.state is JobState.SUBMITTED:
        notes.append("no exit line in the job's sbatch log: its Slurm job id will be polled")


async def _remote_files(
    tunnel: OurSSHTunnel, folder: str, job_id: str, transports: dict[str, Any]
) -> dict[str, bytes]:
    from core.transport.ssh import transport_for

    key = tunnel.target()
    if key not in transports:
        transports[key] = transport_for(
            tunnel.host,
            user=tunnel.user,
            port=tunnel.port,
            identity=tunnel.identity,
            known_hosts=tunnel.known_hosts,
        )
    t = transports[key]
    listing = await t.run(["ls", "-1", folder], timeout=60)
    out: dict[str, bytes] = {}
    for line in listing.stdout.decode(errors="replace").splitlines():
        name = line.strip()
        if "/" in name or not name.endswith(".out") or f"_{job_id}" not in name:
            continue
        out[name] = await t.read(posixpath.join(folder, name))
    return out


def _inside(path: Path, root: Path) -> bool:
    """``path`` is a regular file below ``root`` once every symlink is resolved."""
    try:
        real = os.path.realpath(path)
    except OSError:
        return False
    return real.startswith(os.path.realpath(root) + os.sep) and os.path.isfile(real)


def _remote_inside(path: str, base: str) -> bool:
    norm = posixpath.normpath(path)
    return norm.startswith(posixpath.normpath(base).rstrip("/") + "/") and ".." not in norm


def _plain(value: Any, depth: int = 0) -> Any:
    """A decoded value as JSON data (for nemo_run.json): refs and types as text."""
    if depth > 50:
        return "…"
    if isinstance(value, Buildable):
        return {
            "__fn__": value.fn.dotted,
            **{k: _plain(v, depth + 1) for k, v in value.args.items()},
        }
    if isinstance(value, Opaque):
        return {"__type__": value.type.dotted}
    if isinstance(value, PyRef):
        return value.dotted
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _mtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return time.time()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:200] if text else type(exc).__name__).replace("\x1b", "\\x1b")


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
