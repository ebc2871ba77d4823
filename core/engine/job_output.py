"""Job output for the Python API: streamed while ``run()`` waits, and read back on failure.

``nemorun-tui run`` prints a job's output as it comes; a script calling ``run.run(task)``
saw nothing until it ended (and then only a state). :func:`wait_streaming` follows every
submitted job's stdout and stderr into the caller's ``sys.stdout``/``sys.stderr`` (each line
prefixed ``[job]`` when there are several jobs; on a terminal, escape sequences other than
colours are removed, as the CLI does). :func:`failure_of` reads what a failed job left:
the exception's type and message from its traceback, the last stderr lines, the log path.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.engine.engine import Engine
    from core.store import ExperimentRecord, JobRecord

#: Lines of stderr a failure keeps, and the most bytes read to find them.
TAIL_LINES = 20
TAIL_BYTES = 64 << 10
#: The last line of a Python traceback: ``module.Error: message`` (or a bare ``Error``).
_EXCEPTION_LINE = re.compile(
    r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|"
    r"Warning|Failure|Fault)\w*)(?:: (?P<message>.*))?$"
)


@dataclass(frozen=True)
class JobFailure:
    """What one job that did not succeed left behind."""

    job: str
    state: str
    exit_code: int | None
    reason: str | None
    #: The exception's type and message, from the traceback's last line (None: none found).
    exc_type: str | None = None
    exc_message: str | None = None
    stderr_tail: list[str] = field(default_factory=list)
    #: Where the job's stderr is kept on this machine (None: only reachable through logs()).
    log_path: str | None = None

    def describe(self) -> str:
        head = f"{self.job} {self.state}" + (
            f" (exit {self.exit_code})" if self.exit_code is not None else ""
        )
        if self.exc_type:
            head += f": {self.exc_type}" + (f": {self.exc_message}" if self.exc_message else "")
        elif self.reason:
            head += f": {self.reason}"
        return head


# -- streaming ---------------------------------------------------------------------------
class _Writer:
    """Bytes of one job's stream to a text stream looked up at each write (so a notebook's
    or a test's replaced ``sys.stdout`` gets them), whole lines only when ``prefix``."""

    def __init__(self, which: str, prefix: str) -> None:
        self.which = which
        self.prefix = prefix
        self.pending = ""
        self.filter: Any = None
        if getattr(self.target, "isatty", lambda: False)():
            from core.textsafe import TerminalFilter

            self.filter = TerminalFilter(keep_cr=True)
        import codecs

        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    @property
    def target(self) -> Any:
        return sys.stdout if self.which == "stdout" else sys.stderr

    def write(self, chunk: bytes) -> None:
        data = self.filter.feed(chunk) if self.filter is not None else chunk
        self._emit(self.decoder.decode(data))

    def close(self) -> None:
        tail = self.filter.flush() if self.filter is not None else b""
        self._emit(self.decoder.decode(tail, final=True))
        if self.pending:
            self._emit("\n")

    def _emit(self, text: str) -> None:
        if not text:
            return
        if self.prefix:
            text = self.pending + text
            *lines, self.pending = text.split("\n")
            if not lines:
                return
            text = "".join(f"{self.prefix}{line}\n" for line in lines)
        target = self.target
        target.write(text)
        with contextlib.suppress(Exception):
            target.flush()


async def wait_streaming(engine: Engine, exp_id: str) -> ExperimentRecord:
    """Wait for the experiment to end while its jobs' output streams to this process."""
    from core.textsafe import escape_cell

    record = engine.store.load(exp_id)
    jobs = [j.name for j in record.jobs if j.handle is not None]
    several = len(record.jobs) > 1
    width = max((len(escape_cell(n)) for n in jobs), default=0)

    async def follow(job: str, stream: Any) -> None:
        prefix = f"[{escape_cell(job):<{width}}] " if several else ""
        writer = _Writer(stream, prefix)
        try:
            async for chunk in engine.logs(exp_id, job, follow=True, stream=stream):
                writer.write(chunk)
        finally:
            writer.close()

    followers = [
        asyncio.ensure_future(follow(job, stream))
        for job in jobs
        for stream in ("stdout", "stderr")
    ]
    try:
        record = await engine.wait(exp_id)
        if followers:
            # The outcome is known; the last lines may still be on their way (bounded).
            await asyncio.wait(followers, timeout=10)
    finally:
        for task in followers:
            if not task.done():
                task.cancel()
        for task in followers:
            with contextlib.suppress(BaseException):
                await task
    return record


# -- failures ----------------------------------------------------------------------------
async def failures_of(engine: Engine, record: ExperimentRecord) -> list[JobFailure]:
    """A :class:`JobFailure` for every job that did not succeed (reading stderr tails)."""
    from core.engine.states import JobState

    out = []
    for job in record.jobs:
        if job.state is JobState.SUCCEEDED:
            continue
        out.append(await failure_of(engine, record.id, job))
    return out


async def failure_of(engine: Engine, exp_id: str, job: JobRecord) -> JobFailure:
    tail: list[str] = []
    path: str | None = None
    if job.handle is not None:
        with contextlib.suppress(Exception):  # the outcome is known; its details are extra
            tail, path = await _stderr_tail(engine, exp_id, job.name)
    exc_type, exc_message = exception_in(tail)
    return JobFailure(
        job=job.name,
        state=job.state.value,
        exit_code=job.exit_code,
        reason=job.reason,
        exc_type=exc_type,
        exc_message=exc_message,
        stderr_tail=tail,
        log_path=path,
    )


async def _stderr_tail(engine: Engine, exp_id: str, job: str) -> tuple[list[str], str | None]:
    source = await asyncio.to_thread(engine.log_source, exp_id, job, "stderr")
    data = b""
    path: str | None = None
    if not source.spool and source.path.is_file():
        path = str(source.path)
        with source.path.open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - TAIL_BYTES))
            data = fh.read(TAIL_BYTES)
    else:
        async for chunk in engine.logs(exp_id, job, stream="stderr"):
            data = (data + chunk)[-TAIL_BYTES:]
    text = data.decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-TAIL_LINES:], path


def exception_in(lines: list[str]) -> tuple[str | None, str | None]:
    """The exception a traceback ends with (type, message), or ``(None, None)``.

    Only a line after a ``Traceback`` header counts, so a task that merely printed
    "ValueError: ..." is not mistaken for one that raised it.
    """
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        match = _EXCEPTION_LINE.match(line)
        if match is None or line.startswith((" ", "\t")):
            continue
        if any(
            earlier.startswith("Traceback (most recent call last)") for earlier in lines[:index]
        ):
            return match["type"], match["message"]
        return None, None
    return None, None
