"""Artifact listings (locally and over the real sshd) and resumable, verified fetches."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from results_helpers import Counting, PrivateSSHD

from core.results.artifacts import (
    ArtifactListing,
    is_checkpoint,
    list_artifacts,
    record,
    recorded,
)
from core.results.fetch import FetchError, fetch, source_path
from core.results.locate import Declared, JobOutputs
from core.store import Store


def make_job_dir(root: Path) -> Path:
    job = root / "job"
    for rel, size in (
        ("checkpoints/epoch=0-step=10.ckpt", 3000),
        ("checkpoints/step_20/model.distcp", 100),
        ("model.safetensors", 2048),
        ("final.nemo", 10),
        ("results/eval.json", 20),
        ("metrics.jsonl", 40),
        # what the backends keep there for themselves
        ("spec.json", 5),
        ("pid.json", 5),
        ("result.json", 5),
        ("logs/stdout.log", 5),
        ("sbatch-abc.sh", 5),
        ("slurm-12.out", 5),
        ("exitcode-12", 2),
        ("code/train.py", 5),
        (".hidden", 5),
    ):
        path = job / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    (job / "latest").symlink_to("/etc")  # listed, never followed
    return job


async def test_listing_marks_checkpoints_hashes_small_files_and_skips_bookkeeping(
    tmp_path: Path, transport: Counting
) -> None:
    job = make_job_dir(tmp_path)
    outside = tmp_path / "scratch" / "ckpts"
    outside.mkdir(parents=True)
    (outside / "big.pt").write_bytes(b"x" * 100)
    (outside / "notes.txt").write_text("not matched")
    declared = Declared(artifacts=[str(outside / "*.pt"), "../escape/*"])
    listing = await list_artifacts(JobOutputs(transport, str(job)), declared)
    paths = [a.path for a in listing.artifacts]
    assert paths == [
        "checkpoints",
        "checkpoints/epoch=0-step=10.ckpt",
        "checkpoints/step_20",
        "checkpoints/step_20/model.distcp",
        "final.nemo",
        "latest",
        "metrics.jsonl",
        "model.safetensors",
        "results",
        "results/eval.json",
        str(outside / "big.pt"),
    ]
    by_path = {a.path: a for a in listing.artifacts}
    ckpt = by_path["checkpoints/epoch=0-step=10.ckpt"]
    assert ckpt.checkpoint and ckpt.size == 3000
    assert ckpt.sha256 == hashlib.sha256((job / ckpt.path).read_bytes()).hexdigest()
    assert by_path["checkpoints/step_20/model.distcp"].checkpoint  # in a checkpoints/ folder
    assert by_path["final.nemo"].checkpoint and by_path["model.safetensors"].checkpoint
    assert not by_path["results/eval.json"].checkpoint
    assert by_path["latest"].kind == "l" and by_path["latest"].sha256 is None
    assert by_path[str(outside / "big.pt")].sha256 == hashlib.sha256(b"x" * 100).hexdigest()
    assert abs(ckpt.mtime - (job / ckpt.path).stat().st_mtime) < 1e-3
    assert listing.problem is not None and "`..`" in listing.problem


def test_checkpoint_names() -> None:
    assert is_checkpoint("a/b/last.ckpt") and is_checkpoint("x.pt") and is_checkpoint("m.nemo")
    assert is_checkpoint("checkpoints", "d") and not is_checkpoint("checkpoints.txt")
    assert not is_checkpoint("ptfile") and not is_checkpoint("events.out.tfevents.1")


async def test_listing_is_recorded_atomically_in_the_job_folder(tmp_path: Path) -> None:
    from core.transport.local import LocalTransport

    store = Store(tmp_path / "home")
    from core.store import ExperimentRecord, JobRecord

    rec = store.create(
        ExperimentRecord(
            id="exp-1", title="t", created_at=1.0, jobs=[JobRecord("j", "s", "local")]
        ),
        {"j": {"task.json": "{}"}},
    )
    job = make_job_dir(tmp_path)
    listing = await list_artifacts(JobOutputs(LocalTransport(), str(job)))
    record(store, rec.id, "j", listing)
    again = recorded(store, rec.id, "j")
    assert isinstance(again, ArtifactListing)
    assert again.to_dict() == listing.to_dict()
    assert not list((store.job_dir(rec.id, "j")).glob(".*tmp"))  # no temp file left


async def test_fetch_resumes_after_the_connection_is_killed_and_after_an_interruption(
    tmp_path: Path, private_sshd: PrivateSSHD
) -> None:
    from core.transport.ssh import SSHTransport

    job = tmp_path / "job"
    (job / "checkpoints").mkdir(parents=True)
    source = job / "checkpoints" / "last.ckpt"
    payload = os.urandom(6 << 20)
    source.write_bytes(payload)
    transport = SSHTransport(private_sshd.alias, ssh_config=str(private_sshd.ssh_config))
    outputs = JobOutputs(transport, str(job))
    try:
        # 1. The server side of the connection is killed mid-transfer: the transport
        #    reconnects and the same fetch goes on from its offset.
        killed: list[int] = []

        def kill_once(done: int, total: int) -> None:
            if done >= 2 << 20 and not killed:
                killed.append(private_sshd.kill_connections())

        dest = tmp_path / "out" / "a.ckpt"
        result = await fetch(
            outputs,
            source_path(outputs, "checkpoints/last.ckpt"),
            dest,
            progress=kill_once,
            chunk=256 << 10,
        )
        assert killed and killed[0] >= 1
        assert transport.handshakes >= 2  # it really reconnected
        assert dest.read_bytes() == payload
        assert result.sha256 == hashlib.sha256(payload).hexdigest()

        # 2. The fetch itself is interrupted (ctrl+c, a closed laptop): the partial file
        #    stays, and the next fetch starts from its size.
        class Interrupted(Exception):
            pass

        def stop_at_half(done: int, total: int) -> None:
            if done >= total // 2:
                raise Interrupted

        dest2 = tmp_path / "out" / "b.ckpt"
        with pytest.raises(Interrupted):
            await fetch(outputs, str(source), dest2, progress=stop_at_half, chunk=512 << 10)
        part = dest2.with_name("b.ckpt.part")
        assert not dest2.exists() and 0 < part.stat().st_size < len(payload)
        kept = part.stat().st_size
        again = await fetch(outputs, str(source), dest2)
        assert again.resumed_from == kept
        assert dest2.read_bytes() == payload and not part.exists()
    finally:
        await transport.close()


async def test_a_corrupt_partial_file_is_caught_by_the_hash(tmp_path: Path) -> None:
    from core.transport.local import LocalTransport

    job = tmp_path / "job"
    job.mkdir()
    (job / "m.pt").write_bytes(b"A" * 5000)
    dest = tmp_path / "m.pt"
    dest.with_name("m.pt.part").write_bytes(b"B" * 100)  # not a prefix of the source
    outputs = JobOutputs(LocalTransport(), str(job))
    with pytest.raises(FetchError, match="sha256 mismatch"):
        await fetch(outputs, str(job / "m.pt"), dest)
    assert not dest.exists() and not dest.with_name("m.pt.part").exists()
    assert (await fetch(outputs, str(job / "m.pt"), dest)).resumed_from == 0
    assert dest.read_bytes() == b"A" * 5000


def test_fetch_refuses_paths_outside_the_job_dir(tmp_path: Path) -> None:
    from core.transport.local import LocalTransport

    outputs = JobOutputs(LocalTransport(), str(tmp_path / "job"))
    with pytest.raises(FetchError, match="outside"):
        source_path(outputs, "../other/secret")
    with pytest.raises(FetchError, match="outside"):
        source_path(outputs, "/etc/passwd")
    assert source_path(outputs, "/etc/passwd", allow_outside=True) == "/etc/passwd"
