"""The executor-protocol contract: behaviour every backend must show, whatever it runs on.

Each test receives ``contract_backend`` (see ``conftest.py``), one per registered target, and
talks to it only through the protocol (``submit``/``poll``/``cancel``/``logs``/``dryrun``),
reading job output through ``logs`` and files through the target's ``read_file``, so the
same scenarios hold for the local machine, a Slurm cluster, or anything added later.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from core.engine.protocol import BackendError, DryRun, Handle
from core.engine.states import JobState, StatusReport
from core.transport.local import MAX_FOLLOW_INTERVAL

if TYPE_CHECKING:
    from .conftest import ContractTarget


# --------------------------------------------------------------------------- helpers


async def wait_for(
    t: ContractTarget,
    handle: Handle,
    done: Callable[[StatusReport], bool],
    what: str,
    seen: list[StatusReport] | None = None,
) -> StatusReport:
    """Poll until ``done(report)``; fail with the last report after the target's timeout."""
    deadline = time.monotonic() + t.timeout
    while True:
        report = (await t.backend.poll([handle]))[handle]
        if seen is not None:
            seen.append(report)
        if done(report):
            return report
        if time.monotonic() > deadline:
            pytest.fail(f"{t.name}: {handle} never became {what}; last report: {report}")
        await asyncio.sleep(t.poll_interval)


async def wait_terminal(
    t: ContractTarget, handle: Handle, seen: list[StatusReport] | None = None
) -> StatusReport:
    return await wait_for(t, handle, lambda r: r.state.is_terminal, "terminal", seen)


async def read_logs(
    t: ContractTarget,
    handle: Handle,
    *,
    offset: int = 0,
    stream: str = "stdout",
    follow: bool = False,
) -> bytes:
    chunks = [c async for c in t.backend.logs(handle, offset=offset, follow=follow, stream=stream)]
    assert all(isinstance(c, bytes) and c for c in chunks), "chunks are non-empty bytes"
    return b"".join(chunks)


async def wait_for_output(t: ContractTarget, handle: Handle, needle: bytes) -> None:
    """Wait until the job has written ``needle`` to stdout (so it really is running)."""
    deadline = time.monotonic() + t.timeout
    while needle not in await read_logs(t, handle):
        if time.monotonic() > deadline:
            pytest.fail(f"{t.name}: {handle} never printed {needle!r}")
        await asyncio.sleep(t.poll_interval)


def marker_path(t: ContractTarget, label: str) -> str:
    return f"{t.workdir}/{label}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- scenarios


async def test_success_reports_exit_zero_and_separates_streams(
    contract_backend: ContractTarget,
) -> None:
    """1. A successful job ends SUCCEEDED with exit code 0; stdout and stderr are apart."""
    t = contract_backend
    handle = await t.backend.submit(t.make_spec(["bash", "-c", "echo hello; echo err >&2"]))
    assert handle.backend == t.backend.name

    report = await wait_terminal(t, handle)

    assert report.state is JobState.SUCCEEDED, report
    assert report.exit_code == 0
    assert await read_logs(t, handle) == b"hello\n"
    assert await read_logs(t, handle, stream="stderr") == b"err\n"


async def test_failure_reports_the_exit_code(contract_backend: ContractTarget) -> None:
    """2. A failing job ends FAILED and carries its exit code."""
    t = contract_backend
    handle = await t.backend.submit(t.make_spec(["bash", "-c", "echo before; exit 3"]))

    report = await wait_terminal(t, handle)

    assert report.state is JobState.FAILED, report
    assert report.exit_code == 3
    assert await read_logs(t, handle) == b"before\n"


async def test_cancel_stops_the_job_and_everything_it_started(
    contract_backend: ContractTarget,
) -> None:
    """3. Cancel ends a running job CANCELLED, in bounded time, with no process left over.

    The job forks a background subshell that would write a marker after 2 s: if only the
    main process were killed, the marker would appear.
    """
    t = contract_backend
    marker = marker_path(t, "leftover")
    script = f"(sleep 2; echo late > '{marker}') & echo started; sleep 60; wait"
    handle = await t.backend.submit(t.make_spec(["bash", "-c", script], name="sleeper"))
    await wait_for(t, handle, lambda r: r.state is JobState.RUNNING, "RUNNING")
    await wait_for_output(t, handle, b"started")

    started = time.monotonic()
    await asyncio.wait_for(t.backend.cancel(handle), timeout=t.timeout)
    report = await wait_terminal(t, handle)

    assert report.state is JobState.CANCELLED, report
    assert time.monotonic() - started < t.timeout
    if t.leftover_pids is not None:
        assert await t.leftover_pids(handle) == []
    await asyncio.sleep(2.5)
    assert await t.read_file(marker) is None, "a process of the cancelled job kept running"
    assert (await t.backend.poll([handle]))[handle].state is JobState.CANCELLED


async def test_unknown_handle_is_unknown_never_succeeded(contract_backend: ContractTarget) -> None:
    """4. A job id nobody knows is reported UNKNOWN — never mapped to success."""
    t = contract_backend

    report = (await t.backend.poll([t.unknown_handle]))[t.unknown_handle]

    assert report.state is JobState.UNKNOWN, report
    assert report.exit_code is None


async def test_unknown_handle_cannot_be_cancelled_or_tailed(
    contract_backend: ContractTarget,
) -> None:
    """4b. Cancel and logs of an unknown job say so (BackendError) instead of pretending."""
    t = contract_backend

    with pytest.raises(BackendError):
        await t.backend.cancel(t.unknown_handle)
    with pytest.raises(BackendError):
        await read_logs(t, t.unknown_handle)


async def test_logs_start_at_the_given_offset(contract_backend: ContractTarget) -> None:
    """5. ``logs(offset=n)`` yields the bytes from n on."""
    t = contract_backend
    handle = await t.backend.submit(t.make_spec(["printf", "abcdef"]))
    assert (await wait_terminal(t, handle)).state is JobState.SUCCEEDED

    assert await read_logs(t, handle, offset=3) == b"def"
    assert await read_logs(t, handle, offset=0) == b"abcdef"
    assert await read_logs(t, handle, offset=6) == b""


async def test_follow_streams_and_ends_with_the_job(contract_backend: ContractTarget) -> None:
    """6. Following yields output while the job runs and stops after the job ended, complete."""
    t = contract_backend
    # The job must outlast the tail's longest wait between reads (MAX_FOLLOW_INTERVAL, while a
    # pending job has no log file yet): a job that starts and ends between two reads rightly
    # arrives in one piece, which is what made a 1-second job flaky on a busy Slurm.
    lines = int((MAX_FOLLOW_INTERVAL + 1.0) / 0.1)
    code = (
        f"import time\nfor i in range({lines}):\n"
        "    print(f'line {i}', flush=True); time.sleep(0.1)"
    )
    handle = await t.backend.submit(t.make_spec([t.python, "-c", code], name="printer"))

    chunks: list[bytes] = []
    async with asyncio.timeout(t.timeout):
        async for chunk in t.backend.logs(handle, follow=True):
            chunks.append(chunk)

    assert b"".join(chunks) == b"".join(f"line {i}\n".encode() for i in range(lines))
    assert len(chunks) >= 2, "output arrived in one piece: follow did not stream"
    # Follow ends when the job's command has ended; the scheduler may still be winding it
    # down for a moment (Slurm's COMPLETING, reported RUNNING "completing"), so the state is
    # read until it settles, and it must settle as SUCCEEDED.
    assert (await wait_terminal(t, handle)).state is JobState.SUCCEEDED


async def test_dependent_job_runs_after_its_dependency_succeeded(
    contract_backend: ContractTarget,
) -> None:
    """7a. B depends on A: B runs only once A has succeeded."""
    t = contract_backend
    first = "import time; time.sleep(0.5); print(repr(time.time()))"
    a = await t.backend.submit(t.make_spec([t.python, "-c", first], name="a"))
    b = await t.backend.submit(
        t.make_spec(
            [t.python, "-c", "import time; print(repr(time.time()))"], name="b", dependencies=[a]
        )
    )

    report_b = await wait_terminal(t, b)
    report_a = (await t.backend.poll([a]))[a]

    assert report_a.state is JobState.SUCCEEDED, report_a
    assert report_b.state is JobState.SUCCEEDED, report_b
    a_ended = float(await read_logs(t, a))
    b_started = float(await read_logs(t, b))
    assert b_started >= a_ended, "B started before A had finished"


async def test_dependent_job_never_runs_when_its_dependency_failed(
    contract_backend: ContractTarget,
) -> None:
    """7b. A fails: B ends CANCELLED with a reason, and B's command never ran."""
    t = contract_backend
    marker = marker_path(t, "b-ran")
    a = await t.backend.submit(t.make_spec(["bash", "-c", "sleep 0.3; exit 1"], name="a"))
    b = await t.backend.submit(
        t.make_spec(["bash", "-c", f"echo ran; touch '{marker}'"], name="b", dependencies=[a])
    )

    report_b = await wait_terminal(t, b)

    assert (await t.backend.poll([a]))[a].state is JobState.FAILED
    assert report_b.state is JobState.CANCELLED, report_b
    assert report_b.reason, "a dependent cancelled for its dependency must say why"
    assert await t.read_file(marker) is None
    assert await read_logs(t, b) == b""


async def test_cancel_while_waiting_for_a_dependency(contract_backend: ContractTarget) -> None:
    """7c. A job cancelled before its dependency finished ends CANCELLED and never runs."""
    t = contract_backend
    marker = marker_path(t, "b-ran")
    a = await t.backend.submit(t.make_spec(["sleep", "60"], name="a"))
    b = await t.backend.submit(
        t.make_spec(["bash", "-c", f"touch '{marker}'"], name="b", dependencies=[a])
    )
    await wait_for(t, a, lambda r: r.state is JobState.RUNNING, "RUNNING")
    waiting = (await t.backend.poll([b]))[b]
    assert waiting.state in {JobState.SUBMITTED, JobState.PENDING}, waiting

    await asyncio.wait_for(t.backend.cancel(b), timeout=t.timeout)
    report_b = await wait_terminal(t, b)
    await t.backend.cancel(a)
    report_a = await wait_terminal(t, a)

    assert report_b.state is JobState.CANCELLED, report_b
    assert report_a.state is JobState.CANCELLED, report_a
    assert await t.read_file(marker) is None


async def test_every_report_says_who_and_when(contract_backend: ContractTarget) -> None:
    """8. Every report — pending, running, ended or unknown — has a source and a time."""
    t = contract_backend
    handle = await t.backend.submit(t.make_spec(["sleep", "0.3"]))
    seen: list[StatusReport] = []
    last = None
    deadline = time.monotonic() + t.timeout
    while time.monotonic() < deadline:
        reports = await t.backend.poll([handle, t.unknown_handle])
        assert set(reports) == {handle, t.unknown_handle}, "one report per handle, one call"
        seen.extend(reports.values())
        last = reports[handle]
        if last.state.is_terminal:
            break
        await asyncio.sleep(t.poll_interval)

    assert last is not None and last.state is JobState.SUCCEEDED, last
    now = time.time()
    for report in seen:
        assert isinstance(report.source, str) and report.source.strip(), report
        assert isinstance(report.observed_at, float), report
        assert abs(report.observed_at - now) < 300, report


async def test_arguments_and_env_reach_the_job_verbatim(contract_backend: ContractTarget) -> None:
    """9. No shell ever re-reads argv or env: quotes, $(...), backticks, ; and newlines."""
    t = contract_backend
    args = [
        "it's",
        'say "hi"',
        "$(echo injected)",
        "`echo injected`",
        "a; echo injected",
        "line1\nline2",
        "",
        "--flag=value",
        "  spaced  ",
        "back\\slash",
        "*",
        "ünïcødé ✓",
    ]
    value = "v'\"$(echo x)`echo y`;\nz $HOME"
    code = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['WEIRD']]))"
    handle = await t.backend.submit(
        t.make_spec([t.python, "-c", code, *args], name="verbatim", env={"WEIRD": value})
    )

    report = await wait_terminal(t, handle)

    assert report.state is JobState.SUCCEEDED, report
    assert json.loads(await read_logs(t, handle)) == [args, value]


async def test_secret_env_reaches_the_job_and_never_the_dryrun(
    contract_backend: ContractTarget,
) -> None:
    """Secrets are handed to the process, yet a dry run only ever shows their names."""
    t = contract_backend
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    code = "import hashlib, os; print(hashlib.sha256(os.environ['API_TOKEN'].encode()).hexdigest())"
    spec = t.make_spec([t.python, "-c", code], name="secretive", secret_env={"API_TOKEN": secret})

    dry = await t.backend.dryrun(spec)
    handle = await t.backend.submit(spec)
    report = await wait_terminal(t, handle)

    assert isinstance(dry, DryRun) and dry.backend == t.backend.name and dry.summary
    shown = dry.summary + "".join(dry.artifacts.values())
    assert secret not in shown
    assert report.state is JobState.SUCCEEDED, report
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert (await read_logs(t, handle)).decode().strip() == digest


async def test_cancelling_a_finished_job_changes_nothing(contract_backend: ContractTarget) -> None:
    """Cancel after the end is a no-op: the recorded outcome stays."""
    t = contract_backend
    handle = await t.backend.submit(t.make_spec(["true"]))
    assert (await wait_terminal(t, handle)).state is JobState.SUCCEEDED

    await t.backend.cancel(handle)

    report = (await t.backend.poll([handle]))[handle]
    assert report.state is JobState.SUCCEEDED and report.exit_code == 0
