"""Why a job failed: its state, exit code and scheduler reason, and the tail of its logs.

The classes a user acts on differently, each with the log lines it was read from:

==================  =============================================================
``slurm-timeout``   Slurm stopped it at its time limit (TIMEOUT)
``slurm-node-fail`` a node died under it (NODE_FAIL)
``slurm-preempted`` a higher-priority job took its nodes (PREEMPTED)
``cuda-oom``        CUDA out of memory
``host-oom``        the host ran out of memory: Slurm's OUT_OF_MEMORY, an oom-kill in
                    the log, a Python ``MemoryError``, or exit 137 (SIGKILL; the OOM
                    killer, or someone's ``kill -9``: the summary says both)
``nccl``            an NCCL (multi-GPU communication) error
``missing-module``  ``ModuleNotFoundError``: the environment lacks a package
``segfault``        SIGSEGV (exit 139) or a "Segmentation fault" line
``python-exception`` any other uncaught exception: type, message, file:line of the
                    last frame
``exit-code``       none of the above; the last lines of stderr
``cancelled``       someone cancelled it (not a failure of the code)
``pending``         waiting for something that will not come (a failed dependency,
                    nodes that do not exist)
==================  =============================================================

Log text is data: lines are kept with control characters escaped, never echoed raw.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.engine.states import JobState
from core.textsafe import escape_cell

if TYPE_CHECKING:
    from core.engine import Engine
    from core.results.locate import JobOutputs
    from core.store import JobRecord, Store

CAUSE_FILE = "cause.json"
#: Bytes of each log's end that are read (a traceback is near the end; a 10 GB log is not).
TAIL_BYTES = 64 * 1024
MAX_LINE_CHARS = 400

_PREFIX = re.compile(r"^(?:\[(?:rank|default)\d+\]:\s?|\d+:\s|\[\d+\]\s)")
_CUDA_OOM = re.compile(
    r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory|"
    r"CUBLAS_STATUS_ALLOC_FAILED|cudaErrorMemoryAllocation"
)
_NCCL = re.compile(
    r"NCCL error|nccl(?:System|Internal|UnhandledCuda|InvalidUsage|Remote)Error|NCCL WARN|"
    r"ProcessGroupNCCL.*(?:[Tt]imeout|timed out)|DistBackendError"
)
_HOST_OOM = re.compile(
    r"oom[-_ ]kill|Out of memory: Kill|Killed process \d+|MemoryError|"
    r"Cannot allocate memory|std::bad_alloc|OUT_OF_MEMORY"
)
_SEGV = re.compile(r"Segmentation fault|SIGSEGV|signal 11\b")
_MISSING = re.compile(r"(?:ModuleNotFoundError|ImportError): No module named '?([\w.]+)'?")
_SLURM_LINE = re.compile(r"CANCELLED AT .* DUE TO (TIME LIMIT|PREEMPTION|NODE FAILURE)")
_FRAME = re.compile(r'^\s+File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<fn>.+))?$')
_EXC_LINE = re.compile(
    r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|"
    r"Failure|Fault)|[A-Z]\w*(?:\.\w+)+)(?::\s?(?P<msg>.*))?$"
)


@dataclass(frozen=True)
class LogLine:
    """One line of evidence: which stream, its byte offset in that log, its text."""

    stream: str
    offset: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "offset": self.offset, "text": self.text}


@dataclass
class Cause:
    kind: str
    summary: str
    stream: str | None = None
    lines: list[LogLine] = field(default_factory=list)
    exception: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "summary": self.summary,
            "stream": self.stream,
            "lines": [line.to_dict() for line in self.lines],
            "exception": self.exception,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cause:
        return cls(
            kind=str(data["kind"]),
            summary=str(data.get("summary") or ""),
            stream=data.get("stream"),
            lines=[
                LogLine(str(x["stream"]), int(x["offset"]), str(x["text"]))
                for x in data.get("lines") or []
            ],
            exception=data.get("exception"),
        )


@dataclass
class _Text:
    stream: str
    lines: list[LogLine]


def _split(stream: str, start: int, data: bytes) -> _Text:
    """Lines of a log tail with their byte offsets; a first partial line is dropped."""
    lines = []
    pos = 0
    if start > 0:
        cut = data.find(b"\n")
        pos = cut + 1 if cut >= 0 else len(data)
    for raw in data[pos:].split(b"\n"):
        if raw.strip():
            text = escape_cell(raw.decode("utf-8", "replace").rstrip("\r"))[:MAX_LINE_CHARS]
            lines.append(LogLine(stream, start + pos, text))
        pos += len(raw) + 1
    return _Text(stream, lines)


def _strip(text: str) -> str:
    return _PREFIX.sub("", text)


def _last_match(texts: list[_Text], pattern: re.Pattern[str]) -> LogLine | None:
    for text in texts:
        for line in reversed(text.lines):
            if pattern.search(line.text):
                return line
    return None


def parse_exception(text: _Text) -> tuple[dict[str, Any], list[LogLine]] | None:
    """The last traceback of a log: type, message, last frame; and its key lines."""
    lines = text.lines
    start = None
    for i in range(len(lines) - 1, -1, -1):
        if _strip(lines[i].text).startswith("Traceback (most recent call last)"):
            start = i
            break
    if start is None:
        return None
    frames: list[tuple[LogLine, re.Match[str]]] = []
    for line in lines[start + 1 :]:
        body = _strip(line.text)
        frame = _FRAME.match(body)
        if frame:
            frames.append((line, frame))
            continue
        if (
            body.startswith((" ", "\t"))
            or body.strip() in ("^", "~")
            or set(body.strip())
            <= {
                "^",
                "~",
                " ",
            }
        ):
            continue
        match = _EXC_LINE.match(body.strip())
        if match:
            info: dict[str, Any] = {
                "type": match.group("type"),
                "message": (match.group("msg") or "").strip(),
                "file": frames[-1][1].group("file") if frames else None,
                "line": int(frames[-1][1].group("line")) if frames else None,
                "function": (frames[-1][1].group("fn") or None) if frames else None,
            }
            evidence = [lines[start]]
            if frames:
                evidence.append(frames[-1][0])
            evidence.append(line)
            return info, evidence
        break
    return None


def classify(
    state: JobState,
    *,
    exit_code: int | None = None,
    reason: str | None = None,
    tails: dict[str, tuple[int, bytes]] | None = None,
) -> Cause | None:
    """The cause of a failed, cancelled or stuck job; None for a healthy one.

    ``tails`` maps a stream name to (byte offset of the tail in its log, the tail's bytes).
    stderr is searched before stdout (tracebacks go there), the end of each before its start.
    """
    if state in (JobState.SUCCEEDED, JobState.RUNNING, JobState.SUBMITTED) or (
        state is JobState.UNSUBMITTED and not reason
    ):
        return None
    texts = [
        _split(stream, start, data)
        for stream, (start, data) in sorted(
            (tails or {}).items(), key=lambda item: item[0] != "stderr"
        )
    ]
    why = (reason or "").upper()
    if state is JobState.PENDING:
        stuck = ("NEVERSATISFIED", "REQNODENOTAVAIL", "PARTITIONTIMELIMIT", "INVALID", "FAILED")
        if any(word in why.replace(" ", "").replace("_", "") for word in stuck):
            return Cause("pending", f"waiting for what will not come: {reason}")
        return None
    if state is JobState.CANCELLED and "TIMEOUT" not in why:
        return Cause("cancelled", reason or "cancelled")

    slurm_line = _last_match(texts, _SLURM_LINE)
    for word, kind, label in (
        ("TIMEOUT", "slurm-timeout", "Slurm stopped the job at its time limit (TIMEOUT)"),
        ("NODE_FAIL", "slurm-node-fail", "a node failed under the job (NODE_FAIL)"),
        ("PREEMPTED", "slurm-preempted", "the job was preempted (PREEMPTED)"),
    ):
        if word in why:
            return Cause(kind, label, *_evidence(slurm_line))
    if slurm_line is not None:
        kind = {
            "TIME LIMIT": "slurm-timeout",
            "PREEMPTION": "slurm-preempted",
            "NODE FAILURE": "slurm-node-fail",
        }[_SLURM_LINE.search(slurm_line.text).group(1)]  # type: ignore[union-attr]
        return Cause(kind, f"Slurm: {slurm_line.text.strip(' *')}", *_evidence(slurm_line))

    exception = None
    for text in texts:
        exception = parse_exception(text)
        if exception:
            break

    line = _last_match(texts, _CUDA_OOM)
    if line is not None:
        return _with_exception("cuda-oom", "CUDA out of memory", line, exception)
    line = _last_match(texts, _NCCL)
    if line is not None:
        return _with_exception(
            "nccl", f"NCCL error: {_strip(line.text).strip()[:160]}", line, exception
        )
    line = _last_match(texts, _MISSING)
    if line is not None:
        module = _MISSING.search(line.text).group(1)  # type: ignore[union-attr]
        # A backend's reason that names the module knows more (e.g. Kubernetes: "torchrun
        # needs torch in the image (...)"); it is the summary then.
        named = reason if reason and f"`{module.split('.')[0]}`" in reason else None
        return _with_exception(
            "missing-module",
            named or f"no module named {module!r} in the job's environment",
            line,
            exception,
        )
    oom_line = _last_match(texts, _HOST_OOM)
    if "OUT_OF_MEMORY" in why or (oom_line is not None and exit_code not in (None, 0)):
        summary = "the host ran out of memory"
        if exception and exception[0]["type"] == "MemoryError":
            summary += " (MemoryError)"
        elif "OUT_OF_MEMORY" in why:
            summary += " (Slurm OUT_OF_MEMORY)"
        return _with_exception("host-oom", summary, oom_line, exception)
    if exit_code == 139 or "SIGSEGV" in why or _last_match(texts, _SEGV):
        line = _last_match(texts, _SEGV)
        return Cause("segfault", "segmentation fault (SIGSEGV)", *_evidence(line))
    if exception is not None:
        info, evidence = exception
        where = f" at {info['file']}:{info['line']}" if info.get("file") else ""
        message = f": {info['message']}" if info["message"] else ""
        return Cause(
            "python-exception",
            f"{info['type']}{message}{where}"[:300],
            evidence[-1].stream,
            evidence,
            info,
        )
    if exit_code == 137 or "SIGKILL" in why or "SIGNAL 9 " in why + " ":
        return Cause(
            "host-oom",
            "killed by SIGKILL (exit 137): the host's OOM killer, or a kill -9",
        )
    if state is JobState.FAILED:
        last = [ln for t in texts if t.stream == "stderr" for ln in t.lines[-5:]] or [
            ln for t in texts for ln in t.lines[-5:]
        ]
        summary = reason or (f"exited with code {exit_code}" if exit_code is not None else "failed")
        return Cause("exit-code", summary, last[-1].stream if last else None, last)
    if state is JobState.UNKNOWN:
        return Cause("unknown", reason or "the scheduler does not know this job")
    return None


def _evidence(line: LogLine | None) -> tuple[str | None, list[LogLine]]:
    return (line.stream, [line]) if line is not None else (None, [])


def _with_exception(
    kind: str,
    summary: str,
    line: LogLine | None,
    exception: tuple[dict[str, Any], list[LogLine]] | None,
) -> Cause:
    lines = [line] if line is not None else []
    info = None
    if exception is not None:
        info, evidence = exception
        lines = [*lines, *(e for e in evidence if e not in lines)]
        if info.get("file"):
            summary = f"{summary} at {info['file']}:{info['line']}"
    lines.sort(key=lambda ln: (ln.stream, ln.offset))
    stream = line.stream if line is not None else (lines[0].stream if lines else None)
    return Cause(kind, summary, stream, lines, info)


# --------------------------------------------------------------------------- jobs
async def read_tails(outputs: JobOutputs, limit: int = TAIL_BYTES) -> dict[str, tuple[int, bytes]]:
    """The last ``limit`` bytes of each log of the job (missing logs are left out)."""
    tails: dict[str, tuple[int, bytes]] = {}
    for stream, path in outputs.logs.items():
        with contextlib.suppress(FileNotFoundError, OSError):
            size = await outputs.transport.size(path)
            if size is None:
                continue
            start = max(0, size - limit)
            tails[stream] = (start, await outputs.transport.read(path, start, size - start))
    return tails


def _key(rec: JobRecord) -> list[Any]:
    return [rec.state.value, rec.exit_code, rec.reason, rec.ended_at]


def cached(store: Store, exp_id: str, job: JobRecord) -> Cause | None:
    """The stored cause when it was found for the job's current state (cheap: one small
    local file), else None."""
    try:
        data = store.read_job_json(exp_id, job.name, CAUSE_FILE)
    except (FileNotFoundError, ValueError, OSError):
        return None
    if not isinstance(data, dict) or data.get("key") != _key(job) or not data.get("cause"):
        return None
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return Cause.from_dict(data["cause"])
    return None


async def triage(engine: Engine, exp_id: str, job: str, *, use_cache: bool = True) -> Cause | None:
    """The cause for one job, from the store's cache when its state has not changed since;
    a cause found for an ended job is stored (``cause.json``) for the next reader."""
    from core.results.locate import locate

    rec = engine.store.load(exp_id).job(job)
    if use_cache:
        found = cached(engine.store, exp_id, rec)
        if found is not None:
            return found
    tails: dict[str, tuple[int, bytes]] = {}
    if rec.handle is not None and rec.state is not JobState.PENDING:
        with contextlib.suppress(Exception):  # no logs (purged, unreachable): state alone
            tails = await read_tails(await locate(engine, exp_id, job))
    cause = classify(rec.state, exit_code=rec.exit_code, reason=rec.reason, tails=tails)
    if cause is not None and rec.state.is_terminal:
        data = {"key": _key(rec), "cause": cause.to_dict()}
        with contextlib.suppress(Exception):  # a read-only store still shows the cause
            engine.store.write_job_file(
                exp_id, job, CAUSE_FILE, json.dumps(data, indent=1, sort_keys=True) + "\n"
            )
    return cause
