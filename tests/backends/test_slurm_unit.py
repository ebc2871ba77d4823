"""Slurm backend without a cluster: parsing, rendering, batching, rate limit, idempotent submit.

A fake transport plays the scheduler, so these run everywhere in about a second. The real
cluster scenarios are in tests/integration/test_slurm_cluster.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from backends.slurm import RateLimiter, SlurmBackend, parse
from backends.slurm.script import directive_value, render
from core.engine.executors import LocalTunnel, SlurmExecutor, SSHTunnel, profile_from_dict
from core.engine.protocol import BackendError, Handle, JobSpec
from core.engine.states import JobState
from core.transport import CommandResult, Transport, TransportError

# ----------------------------------------------------------------------------- fake cluster


#: sacct Submit times: T1 is later than T0.
T0, T1 = "2026-11-25T20:11:10", "2026-11-26T01:30:00"


class FakeCluster(Transport):
    """Answers sbatch/squeue/sacct/scancel from a dict of jobs; files live in memory."""

    target = "local"

    def __init__(self) -> None:
        self.commands: list[tuple[str, ...]] = []
        self.envs: list[dict[str, str] | None] = []
        self.files: dict[str, bytes] = {}
        self.next_id = 100
        # job key -> (squeue line fields) or None when only sacct knows it
        self.squeue: dict[str, str] = {}
        self.sacct: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.sbatch_hook: Callable[[], None] | None = None

    async def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
    ) -> CommandResult:
        args = tuple(argv)
        self.commands.append(args)
        self.envs.append(env)
        name = args[0]
        out = ""
        if name == "sbatch":
            job = str(self.next_id)
            self.next_id += 1
            script = self.files[args[-1]].decode()
            tag = next(
                line.split("=", 1)[1] for line in script.splitlines() if "--job-name=" in line
            )
            self.names[tag] = job
            self.squeue[job] = f"{job}|{job}|N/A|PENDING|Priority|0|0|||/jobs|"
            if self.sbatch_hook is not None:
                hook, self.sbatch_hook = self.sbatch_hook, None
                hook()  # may raise: the job exists anyway (an ambiguous failure)
            out = f"{job}\n"
        elif name == "squeue" and "-n" in args:
            tag = args[args.index("-n") + 1]
            job = self.names.get(tag)
            out = f"{job}\n" if job and job in self.squeue else ""
        elif name == "squeue":
            ids = args[args.index("-j") + 1].split(",")
            out = "".join(
                self.squeue[k] + "\n" for k in self.squeue if k in ids or k.split("_")[0] in ids
            )
        elif name == "sacct" and "--name" in args:
            tag = args[args.index("--name") + 1]
            job = self.names.get(tag)
            out = f"{job}\n" if job else ""
        elif name == "sacct":
            ids = args[args.index("-j") + 1].split(",")
            out = "".join(
                self.sacct[k] + "\n" for k in self.sacct if k in ids or k.split("_")[0] in ids
            )
        elif name == "scancel":
            pass
        return CommandResult(args, 0, out.encode(), b"")

    def count(self, name: str) -> int:
        return sum(1 for c in self.commands if c[0] == name)

    async def put(self, local: Path, remote: str) -> None:
        self.files[remote] = Path(local).read_bytes()

    async def get(self, remote: str, local: Path) -> None:
        Path(local).write_bytes(self.files[remote])

    async def read(self, remote: str, offset: int = 0, length: int | None = None) -> bytes:
        if remote not in self.files:
            raise FileNotFoundError(remote)
        data = self.files[remote][offset:]
        return data if length is None else data[:length]

    async def write(self, remote: str, data: bytes, mode: int = 0o600) -> None:
        self.files[remote] = data

    async def size(self, remote: str) -> int | None:
        return len(self.files[remote]) if remote in self.files else None

    async def makedirs(self, remote: str, mode: int = 0o700) -> None:
        return None

    def tail(
        self,
        remote: str,
        *,
        offset: int = 0,
        follow: bool = False,
        done: Callable[[], Awaitable[bool]] | None = None,
        interval: float = 0.25,
    ) -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            if remote not in self.files:
                raise FileNotFoundError(remote)
            yield self.files[remote][offset:]

        return gen()


def executor(**kw: object) -> SlurmExecutor:
    kw.setdefault("tunnel", LocalTunnel(job_dir="/jobs"))
    kw.setdefault("poll_rate", 1000.0)
    return SlurmExecutor(**kw)  # type: ignore[arg-type]


def spec(ex: SlurmExecutor, name: str = "train", **kw: object) -> JobSpec:
    base: dict[str, object] = {
        "experiment_id": "exp-1",
        "job_name": name,
        "run_tag": f"nrt-exp-1-{name}",
        "argv": ["python", "train.py", "--lr", "0.1"],
        "executor": ex,
        "job_dir": f"/store/exp-1/{name}",
        "workdir": "/code",
    }
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- parsing


def test_squeue_rows_states_reasons_and_exit_codes() -> None:
    text = (
        "12|12|N/A|PENDING|Priority|0|0|||/j/a|\n"
        "13|13|N/A|FAILED|NonZeroExitCode|1|768|||/j/b|\n"
        "14_2|14|2|RUNNING|None|0|0|||/j/c|\n"
        "15|15|N/A|COMPLETED|None|0|0|||/j/d|\n"
        "16|16|N/A|CANCELLED|DependencyNeverSatisfied|0|0|||/j/e|\n"
        "17|17|N/A|BRAND_NEW_STATE|None|0|0|||/j/f|\n"
    )
    rows = parse.group_by_key(parse.parse_squeue(text))
    reports = {k: parse.report_from_row(r) for k, r in rows.items()}
    assert reports["12"].state is JobState.PENDING and reports["12"].reason == "Priority"
    assert reports["13"].state is JobState.FAILED and reports["13"].exit_code == 3
    assert reports["13"].restarts == 1
    assert rows["14_2"].array_job == "14" and reports["14_2"].state is JobState.RUNNING
    assert reports["15"].state is JobState.SUCCEEDED and reports["15"].exit_code == 0
    assert reports["16"].state is JobState.CANCELLED
    assert "DependencyNeverSatisfied" in (reports["16"].reason or "")
    assert reports["16"].exit_code is None
    assert reports["17"].state is JobState.UNKNOWN, "an unknown state is never success"
    assert all(r.source == "squeue" for r in reports.values())
    assert rows["12"].workdir == "/j/a"


def test_sacct_rows_arrays_requeues_and_steps() -> None:
    text = (
        f"20|FAILED|2:0|None|{T0}|||a|/w\n"
        f"20.batch|FAILED|2:0||{T0}|||batch|\n"
        f"21_0|COMPLETED|0:0|None|{T0}|||b|/w\n"
        f"21_[1-3,5]|PENDING|0:0|Resources|{T0}|||b|/w\n"
        f"22|REQUEUED|0:0|None|{T0}|||c|/w\n"
        f"22|RUNNING|0:0|None|{T1}|||c|/w\n"
        f"23|CANCELLED by 0|0:15|None|{T0}|||d|/w|with|pipes\n"
        f"24|TIMEOUT|0:0|TimeLimit|Unknown|||e|/w\n"
    )
    rows = parse.group_by_key(parse.parse_sacct(text))
    assert set(rows) == {"20", "21_0", "21_1", "21_2", "21_3", "21_5", "22", "23", "24"}
    assert parse.report_from_row(rows["20"]).exit_code == 2
    assert rows["21_3"].state is JobState.PENDING and rows["21_3"].reason == "Resources"
    assert rows["22"].restarts == 1 and rows["22"].state is JobState.RUNNING
    cancelled = parse.report_from_row(rows["23"])
    assert cancelled.state is JobState.CANCELLED and "uid 0" in (cancelled.reason or "")
    timeout = parse.report_from_row(rows["24"])
    assert timeout.state is JobState.FAILED and "TIMEOUT" in (timeout.reason or "")
    assert rows["23"].workdir == "/w|with|pipes"
    assert all(r.source == "sacct" for r in rows.values())


def test_sacct_ignores_older_jobs_that_had_the_same_id() -> None:
    """Ids restart when slurmctld loses its state; the accounting database keeps the old jobs.

    ``sacct -D -j 50`` then also lists an old array 50 and an old job 51 (shown as 50_1): only
    the newest job named under each id counts, and they are not restarts of it.
    """
    text = (
        f"50_0|COMPLETED|0:0|None|{T0}|||nrt-old-sweep1|/old\n"
        f"50_1|FAILED|5:0|None|{T0}|||nrt-old-sweep1|/old\n"
        f"50|FAILED|3:0|None|{T1}|||nrt-new-bad1|/new\n"
        f"60|COMPLETED|0:0|None|{T1}|||nrt-old-x1|/old\n"
        f"60|FAILED|1:0|None|{T0}|||nrt-older-y1|/older\n"
    )
    rows = parse.group_by_key(parse.parse_sacct(text))
    assert set(rows) == {"50", "60"}
    assert (rows["50"].array_job, rows["50"].exit_code, rows["50"].restarts) == (None, 3, 0)
    assert rows["50"].workdir == "/new"
    assert (rows["60"].state, rows["60"].restarts) == (JobState.SUCCEEDED, 0)


def test_wait_status_and_task_specs() -> None:
    assert parse.decode_wait_status("0") == 0
    assert parse.decode_wait_status("256") == 1
    assert parse.decode_wait_status("9") == 137
    assert parse.decode_sacct_exit("0:9") == 137
    assert parse.expand_task_spec("[0-4:2,7%2]") == ["0", "2", "4", "7"]
    assert parse.is_job_id("12_3") and not parse.is_job_id("12;rm")


def test_array_aggregate() -> None:
    def r(state: JobState, code: int | None = None) -> parse.StatusReport:
        return parse.StatusReport(state, source="squeue", exit_code=code)

    s = parse.ArraySummary({"1_0": r(JobState.SUCCEEDED, 0), "1_1": r(JobState.RUNNING)})
    assert s.aggregate().state is JobState.RUNNING
    s = parse.ArraySummary({"1_0": r(JobState.SUCCEEDED, 0), "1_1": r(JobState.FAILED, 4)})
    agg = s.aggregate()
    assert (agg.state, agg.exit_code) == (JobState.FAILED, 4)
    assert "2 tasks" in (agg.reason or "")
    s = parse.ArraySummary({"1_0": r(JobState.SUCCEEDED, 0), "1_1": r(JobState.SUCCEEDED, 0)})
    assert s.aggregate().state is JobState.SUCCEEDED


# ----------------------------------------------------------------------------- rendering


def test_script_quotes_every_value_and_keeps_secrets_out() -> None:
    ex = executor(
        partition="gpu part",
        time="01:00:00",
        gpus_per_node=8,
        mem="64G",
        additional_parameters={"mail_type": "END", "requeue": True, "skip": None},
        env_vars={"PLAIN": "a'b"},
        setup_lines="module load cuda",
    )
    job = spec(
        ex,
        argv=["python", "-c", "print('$(rm -rf /)')", "a b"],
        env={"X": "$HOME `x`"},
        secret_env={"API_TOKEN": "super-secret"},
    )
    r = render(ex, job)
    assert "super-secret" not in r.script
    assert "API_TOKEN" not in r.script
    assert '#SBATCH --partition="gpu part"' in r.script
    assert "#SBATCH --gpus-per-node=8" in r.script
    assert "#SBATCH --mail-type=END" in r.script
    assert "#SBATCH --requeue\n" in r.script
    assert "--skip" not in r.script
    assert "export PLAIN='a'\"'\"'b'" in r.script
    assert "export X='$HOME `x`'" in r.script
    assert "python -c 'print('\"'\"'$(rm -rf /)'\"'\"')' 'a b'" in r.script
    assert "module load cuda" in r.script
    assert r.job_dir == "/jobs/exp-1/train"
    assert "#SBATCH --output=/jobs/exp-1/train/slurm-%j.out" in r.script
    assert "#SBATCH --job-name=nrt-exp-1-train" in r.script
    assert r.sbatch_argv[:3] == ["sbatch", "--parsable", "--export=ALL"]


def test_directive_values_that_cannot_be_expressed_are_refused() -> None:
    assert directive_value("x", "a-b_c") == "a-b_c"
    assert directive_value("x", "a b") == '"a b"'
    with pytest.raises(BackendError):
        directive_value("x", 'say "hi"')
    with pytest.raises(BackendError):
        directive_value("x", "a\nb")
    with pytest.raises(BackendError, match="invalid sbatch option"):
        render(executor(additional_parameters={"bad name": 1}), spec(executor()))


def test_dependencies_arrays_srun_and_task_file_upload() -> None:
    ex = executor(
        array="0-3",
        container_image="nvcr.io/nvidia/pytorch:24.01",
        container_mounts=["/data:/data"],
        nodes=2,
    )
    job = spec(
        ex,
        argv=[sys.executable, "-m", "core.runner", "/store/exp-1/train/task.json"],
        task_file="/store/exp-1/train/task.json",
        dependencies=[Handle("slurm", "local", "41"), Handle("slurm", "local", "42_1")],
    )
    r = render(ex, job)
    assert "--dependency=afterok:41:42_1" in r.sbatch_argv
    assert "--kill-on-invalid-dep=yes" in r.sbatch_argv
    assert "#SBATCH --array=0-3" in r.script
    assert "slurm-%A_%a.out" in r.script
    assert "srun --container-image=nvcr.io/nvidia/pytorch:24.01" in r.script
    assert "--container-mounts=/data:/data" in r.script
    assert r.task_upload == ("/store/exp-1/train/task.json", "/jobs/exp-1/train/task.json")
    assert r.argv[-1] == "/jobs/exp-1/train/task.json"


def test_ssh_tunnel_needs_a_job_dir_and_local_tunnel_falls_back_to_the_store() -> None:
    ssh = SlurmExecutor(tunnel=SSHTunnel(host="cluster"))
    with pytest.raises(BackendError, match="job_dir"):
        render(ssh, spec(ssh))
    local = SlurmExecutor()
    assert render(local, spec(local)).job_dir == "/store/exp-1/train"


# ----------------------------------------------------------------------------- profiles


def test_executor_profiles_roundtrip_and_targets() -> None:
    ex = SlurmExecutor(
        account="acct",
        tunnel=SSHTunnel(host="login", user="me", job_dir="/scratch/me", port=2200),
        array="0-9",
    )
    again = profile_from_dict(ex.to_dict())
    assert again == ex
    assert isinstance(again, SlurmExecutor) and isinstance(again.tunnel, SSHTunnel)
    assert ex.target() == "ssh://me@login:2200"
    assert SlurmExecutor().target() == "local"
    flat = SlurmExecutor(host="nemorun-ci", job_dir="/tmp/j")  # config.toml style
    assert isinstance(flat.tunnel, SSHTunnel) and flat.tunnel.job_dir == "/tmp/j"
    assert flat.target() == "ssh://nemorun-ci"
    table = SlurmExecutor(tunnel={"type": "ssh", "host": "h", "job_dir": "/j"})
    assert isinstance(table.tunnel, SSHTunnel)
    with pytest.raises(ValueError):
        SlurmExecutor(tunnel={"type": "ssh", "hots": "typo"})


def test_registry_builds_the_backend_and_local_use_does_not_import_asyncssh() -> None:
    code = (
        "import sys\n"
        "from core.engine.executors import SlurmExecutor\n"
        "from core.engine import registry\n"
        "b = registry.get_backend(SlurmExecutor())\n"
        "assert type(b).__name__ == 'SlurmBackend'\n"
        "assert registry.get_backend(SlurmExecutor()) is b\n"
        "b.transport()\n"
        "assert 'asyncssh' not in sys.modules, 'asyncssh imported for a login-node profile'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# ----------------------------------------------------------------------------- backend logic


@pytest.mark.parametrize("n", [1, 10, 100, 1000])
async def test_scheduler_commands_per_poll_are_constant(n: int) -> None:
    cluster = FakeCluster()
    for i in range(n):
        cluster.squeue[str(1000 + i)] = f"{1000 + i}|{1000 + i}|N/A|RUNNING|None|0|0|||/w|"
    gone = "999"
    cluster.sacct[gone] = f"{gone}|COMPLETED|0:0|None|{T0}|||gone|/w"
    b = SlurmBackend(executor(), transport=cluster)
    handles = [Handle("slurm", "local", str(1000 + i)) for i in range(n)]
    handles.append(Handle("slurm", "local", gone))

    reports = await b.poll(handles)

    assert cluster.count("squeue") == 1 and cluster.count("sacct") == 1
    assert reports[handles[0]].state is JobState.RUNNING
    assert reports[handles[-1]].state is JobState.SUCCEEDED
    assert reports[handles[-1]].source == "sacct"
    before = len(cluster.commands)
    await b.poll(handles[-1:])  # ended jobs are answered from memory
    assert len(cluster.commands) == before


async def test_concurrent_polls_are_coalesced() -> None:
    cluster = FakeCluster()
    for i in range(20):
        cluster.squeue[str(i + 1)] = f"{i + 1}|{i + 1}|N/A|RUNNING|None|0|0|||/w|"
    b = SlurmBackend(executor(), transport=cluster)
    handles = [Handle("slurm", "local", str(i + 1)) for i in range(20)]
    results = await asyncio.gather(*[b.poll([h]) for h in handles])
    assert all(r[h].state is JobState.RUNNING for r, h in zip(results, handles, strict=True))
    assert cluster.count("squeue") <= 2, cluster.commands


async def test_unknown_is_unknown_and_vanished_jobs_keep_their_last_state_briefly() -> None:
    cluster = FakeCluster()
    b = SlurmBackend(executor(), transport=cluster)
    ghost = Handle("slurm", "local", "424242")
    report = (await b.poll([ghost]))[ghost]
    assert report.state is JobState.UNKNOWN and report.exit_code is None
    assert b"no such" in (report.reason or "").encode() or "neither" in (report.reason or "")

    cluster.squeue["7"] = "7|7|N/A|RUNNING|None|0|0|||/w|"
    h = Handle("slurm", "local", "7")
    assert (await b.poll([h]))[h].state is JobState.RUNNING
    del cluster.squeue["7"]  # left squeue, accounting not written yet
    report = (await b.poll([h]))[h]
    assert report.state is JobState.RUNNING and "last seen" in report.source
    cluster.sacct["7"] = f"7|FAILED|9:0|NonZeroExitCode|{T0}|||seven|/w"
    report = (await b.poll([h]))[h]
    assert (report.state, report.exit_code, report.source) == (JobState.FAILED, 9, "sacct")


async def test_exit_code_file_is_preferred() -> None:
    cluster = FakeCluster()
    cluster.squeue["8"] = "8|8|N/A|FAILED|NonZeroExitCode|0|256|||/w|"
    cluster.files["/w/exitcode-8"] = b"77\n"
    b = SlurmBackend(executor(), transport=cluster)
    h = Handle("slurm", "local", "8")
    assert (await b.poll([h]))[h].exit_code == 77


async def test_rate_limiter_spaces_scheduler_calls() -> None:
    limiter = RateLimiter(rate=20.0, burst=2)
    started = time.monotonic()
    for _ in range(12):
        await limiter.acquire()
    elapsed = time.monotonic() - started
    assert elapsed >= (12 - 2) / 20.0 * 0.9  # burst of 2, then 20/s


async def test_default_rate_limit_is_half_a_call_per_second() -> None:
    ex = SlurmExecutor()
    assert ex.poll_rate == 0.5
    assert SlurmBackend(ex).limiter.rate == 0.5


async def test_submit_passes_secrets_as_environment_never_in_files() -> None:
    cluster = FakeCluster()
    ex = executor()
    b = SlurmBackend(ex, transport=cluster)
    h = await b.submit(spec(ex, secret_env={"TOKEN": "hunter2"}))
    assert h == Handle("slurm", "local", "100")
    sbatch = [i for i, c in enumerate(cluster.commands) if c[0] == "sbatch"]
    assert cluster.envs[sbatch[0]] == {"TOKEN": "hunter2"}
    assert all(b"hunter2" not in data for data in cluster.files.values())


async def test_ambiguous_sbatch_failure_looks_up_the_tag_instead_of_resubmitting() -> None:
    cluster = FakeCluster()

    def connection_drops() -> None:
        raise TransportError("connection lost while running sbatch")

    cluster.sbatch_hook = connection_drops
    ex = executor()
    b = SlurmBackend(ex, transport=cluster)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(asyncio, "sleep", _no_sleep)
        h = await b.submit(spec(ex))
    assert h.job_id == "100"
    assert cluster.count("sbatch") == 1, "submitted twice"
    assert cluster.count("squeue") == 1  # the tag lookup


async def test_resubmitting_the_same_run_finds_the_earlier_job() -> None:
    """A crash after sbatch but before the handle was recorded: the retry must not duplicate."""
    cluster = FakeCluster()
    ex = executor()
    first = await SlurmBackend(ex, transport=cluster).submit(spec(ex))
    again = await SlurmBackend(ex, transport=cluster).submit(spec(ex))
    assert first == again
    assert cluster.count("sbatch") == 1


async def test_cancel_of_a_bad_id_is_refused_without_running_anything() -> None:
    cluster = FakeCluster()
    b = SlurmBackend(executor(), transport=cluster)
    with pytest.raises(BackendError):
        await b.cancel(Handle("slurm", "local", "1; rm -rf /"))
    assert cluster.commands == []


async def _no_sleep(_delay: float, *args: object) -> None:
    return None


def test_config_toml_profile_with_flat_ssh_fields() -> None:
    """``[executors.ci] backend="slurm" host=... job_dir=...`` as a new user would write it."""
    from core.settings import build_profile

    profile = build_profile(
        "ci",
        {
            "backend": "slurm",
            "host": "nemorun-ci",
            "user": "me",
            "port": 2222,
            "identity": "~/.ssh/id_ed25519",
            "job_dir": "/scratch/me/nemorun",
            "partition": "debug",
            "secret_env": ["WANDB_API_KEY"],
        },
    )
    assert isinstance(profile, SlurmExecutor)
    assert profile.tunnel == SSHTunnel(
        host="nemorun-ci",
        user="me",
        port=2222,
        identity="~/.ssh/id_ed25519",
        job_dir="/scratch/me/nemorun",
    )
    assert profile.target() == "ssh://me@nemorun-ci:2222"
    assert profile_from_dict(profile.to_dict()).target() == profile.target()


class BrokenQueries(FakeCluster):
    """squeue/sacct fail (controller overloaded, slurmdbd down) as a test switches them off."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: set[str] = set()

    async def run(self, argv: Sequence[str], **kw: Any) -> CommandResult:
        if argv[0] in self.fail:
            self.commands.append(tuple(argv))
            return CommandResult(tuple(argv), 1, b"", b"Socket timed out on send/recv")
        return await super().run(argv, **kw)


async def test_ambiguous_sbatch_with_failing_lookups_never_submits_again() -> None:
    cluster = BrokenQueries()

    def connection_drops() -> None:
        cluster.fail = {"squeue", "sacct"}
        raise TransportError("connection lost while running sbatch")

    cluster.sbatch_hook = connection_drops
    ex = executor()
    b = SlurmBackend(ex, transport=cluster)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(asyncio, "sleep", _no_sleep)
        with pytest.raises(BackendError, match="sbatch outcome unknown"):
            await b.submit(spec(ex))
    assert cluster.count("sbatch") == 1, "sbatch ran again without knowing the first outcome"


async def test_array_is_not_final_while_tasks_are_unaccounted_for() -> None:
    cluster = BrokenQueries()
    ex = executor(array="0-2")
    b = SlurmBackend(ex, transport=cluster)
    h = await b.submit(spec(ex))
    # squeue only still lists two finished tasks; task 0 is gone and sacct is down
    del cluster.squeue[h.job_id]
    for t in ("1", "2"):
        key = f"{h.job_id}_{t}"
        cluster.squeue[key] = f"{key}|{h.job_id}|{t}|COMPLETED|None|0|0|||/jobs|"
    cluster.fail = {"sacct"}
    report = (await b.poll([h]))[h]
    assert not report.state.is_terminal, report
    # once sacct answers with every task, the array's outcome is known (task 0 failed)
    cluster.fail = set()
    tag = next(name for name, job in cluster.names.items() if job == h.job_id)
    cluster.sacct[f"{h.job_id}_0"] = f"{h.job_id}_0|FAILED|1:0|None|{T0}|||{tag}|/jobs"
    for t in ("1", "2"):
        cluster.sacct[f"{h.job_id}_{t}"] = f"{h.job_id}_{t}|COMPLETED|0:0|None|{T0}|||{tag}|/jobs"
    report = (await b.poll([h]))[h]
    assert report.state is JobState.FAILED, report


async def test_sacct_answers_for_the_job_we_submitted_even_when_a_newer_one_reused_its_id() -> None:
    """Ids restart after slurmctld loses its state: the job we submitted under a run tag is
    the one reported, not a newer stranger with the same id, and sacct gets ISO times."""
    cluster = FakeCluster()
    ex = executor()
    b = SlurmBackend(ex, transport=cluster)
    h = await b.submit(spec(ex))
    tag = next(name for name, job in cluster.names.items() if job == h.job_id)
    del cluster.squeue[h.job_id]
    cluster.sacct[h.job_id] = (
        f"{h.job_id}|FAILED|3:0|None|{T0}|||{tag}|/jobs\n"
        f"{h.job_id}|COMPLETED|0:0|None|{T1}|||someone-elses-job|/elsewhere"
    )
    report = (await b.poll([h]))[h]
    assert (report.state, report.exit_code) == (JobState.FAILED, 3), report
    sacct_env = next(
        e for c, e in zip(cluster.commands, cluster.envs, strict=True) if c[0] == "sacct"
    )
    assert sacct_env == {"SLURM_TIME_FORMAT": "standard", "TZ": "UTC"}


def test_times_come_from_the_scheduler_and_forecasts_are_ignored() -> None:
    """sacct Start/End (and squeue's, once a job ended) become the report's times; squeue's
    forecast End of a running job and Start of a pending one are not times that happened."""
    end_ts = parse.parse_time("2026-11-25T20:11:13")
    assert end_ts == 1795637473.0  # read as UTC (the backend asks Slurm for UTC)
    assert parse.parse_time("Unknown") is None and parse.parse_time("") is None
    assert parse.parse_time("None") is None and parse.parse_time("2026-99-99T00:00:00") is None
    rows = parse.group_by_key(
        parse.parse_sacct(
            "30|COMPLETED|0:0|None|2026-11-25T20:11:10|2026-11-25T20:11:12|2026-11-25T20:11:13"
            "|a|/w\n"
            "31|RUNNING|0:0|None|2026-11-25T20:11:10|2026-11-25T20:11:12|Unknown|b|/w\n"
        )
    )
    done = parse.report_from_row(rows["30"], now=end_ts + 8)
    assert (done.started_at, done.ended_at) == (end_ts - 1, end_ts)
    assert done.end_time() == end_ts  # not the 8 s later moment it was seen
    running = parse.report_from_row(rows["31"], now=end_ts + 8)
    assert running.started_at == end_ts - 1 and running.ended_at is None
    squeue = parse.group_by_key(
        parse.parse_squeue(
            "40|40|N/A|RUNNING|None|0|0|2026-11-25T20:11:12|2026-11-25T21:11:12|/w|\n"
            "41|41|N/A|PENDING|Priority|0|0|2026-11-25T22:00:00|2026-11-25T23:00:00|/w|\n"
            "42|42|N/A|COMPLETED|None|0|0|2026-11-25T20:11:12|2026-11-25T20:11:13|/w|\n"
        )
    )
    assert squeue["40"].started_at == end_ts - 1 and squeue["40"].ended_at is None
    assert squeue["41"].started_at is None and squeue["41"].ended_at is None
    assert squeue["42"].ended_at == end_ts
    tasks = parse.ArraySummary(
        {
            "5_0": parse.report_from_row(rows["30"], now=end_ts + 8),
            "5_1": parse.StatusReport(
                JobState.SUCCEEDED, "sacct", end_ts + 8, 0, started_at=end_ts, ended_at=end_ts + 2
            ),
        }
    ).aggregate()
    assert (tasks.started_at, tasks.ended_at) == (end_ts - 1, end_ts + 2)


def test_every_rendered_script_exports_the_job_depth() -> None:
    """Even a JobSpec built without the engine gets the depth marker (core.engine.launch_guard)."""
    ex = executor()
    bare = render(ex, spec(ex))
    assert "export NEMORUN_TUI_DEPTH=1\n" in bare.script
    engine_built = render(ex, spec(ex, env={"NEMORUN_TUI_DEPTH": "2"}))
    assert "export NEMORUN_TUI_DEPTH=2\n" in engine_built.script
    held = render(ex, spec(ex, held=True))
    assert "--hold" in held.sbatch_argv and "--hold" not in bare.sbatch_argv
