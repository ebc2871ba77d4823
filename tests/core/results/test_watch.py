"""Incremental metrics: each refresh reads what the files grew by, locally and over SSH."""

from __future__ import annotations

import json
import os
from pathlib import Path

from results_helpers import Counting

from core.results.locate import Declared, JobOutputs
from core.results.protowire import split_records
from core.results.readers import CsvDecoder, JsonlDecoder
from core.results.watch import JobMetrics, MetricFile, ReadStats


def append(path: Path, text: str | bytes) -> int:
    data = text.encode() if isinstance(text, str) else text
    with path.open("ab") as fh:
        fh.write(data)
    return len(data)


def jsonl(steps: range) -> str:
    return "".join(json.dumps({"step": s, "loss": 1.0 / (s + 1)}) + "\n" for s in steps)


async def test_bytes_read_per_refresh_equal_what_the_file_grew_by(
    tmp_path: Path, transport: Counting
) -> None:
    path = tmp_path / "metrics.jsonl"
    grown = append(path, jsonl(range(1000)))  # a long history before we look
    f = MetricFile(transport, str(path), JsonlDecoder, "metrics.jsonl")
    stats = ReadStats()
    await f.refresh(stats)
    assert transport.bytes_read == grown == os.path.getsize(path)
    per_refresh = []
    for new_lines in (1, 10, 100, 0, 0, 3):
        before = transport.bytes_read
        grown = append(
            path,
            jsonl(range(1000 + len(per_refresh) * 200, 1000 + len(per_refresh) * 200 + new_lines)),
        )
        await f.refresh(stats)
        per_refresh.append((grown, transport.bytes_read - before))
    # Exactly the new bytes every time: the 1000-line history is never read again.
    assert all(read == grown for grown, read in per_refresh), per_refresh
    assert transport.bytes_read == os.path.getsize(path) == stats.data
    assert len(f.series["loss"]) == 1000 + 1 + 10 + 100 + 3


async def test_tfevents_jsonl_csv_found_under_the_job_dir_and_read_as_they_grow(
    tmp_path: Path, transport: Counting
) -> None:
    from tensorboardX import SummaryWriter

    job_dir = tmp_path / "job"
    (job_dir / "tb").mkdir(parents=True)
    (job_dir / "code").mkdir()
    (job_dir / "code" / "metrics.jsonl").write_text(jsonl(range(3)))  # packaged code: not ours
    writer = SummaryWriter(str(tmp_path / "writer"))
    for step in range(50):
        writer.add_scalar("train/loss", 10.0 - step * 0.1, step)
    writer.close()
    (real,) = (tmp_path / "writer").glob("*tfevents*")
    frames = split_records(real.read_bytes())
    records: list[bytes] = []  # the writer's frames, to append one by one as if live
    pos = 0
    raw = real.read_bytes()
    for record in frames.records:
        records.append(raw[pos : pos + 16 + len(record)])
        pos += 16 + len(record)
    events = job_dir / "tb" / real.name
    append(events, b"".join(records[:20]) + records[20][:7])  # a torn record at the end
    append(job_dir / "metrics.jsonl", jsonl(range(5)))
    csv_dir = job_dir / "lightning_logs" / "version_0"
    csv_dir.mkdir(parents=True)
    append(csv_dir / "metrics.csv", "epoch,step,val_loss\n0,0,3.0\n")

    metrics = JobMetrics(JobOutputs(transport, str(job_dir)), rediscover_seconds=0)
    snap = await metrics.refresh()
    assert sorted(snap.files) == [
        "lightning_logs/version_0/metrics.csv",
        "metrics.jsonl",
        f"tb/{real.name}",
    ]
    assert snap.problems == []
    loss = snap.series["train/loss"]
    assert len(loss) == 19  # record 0 is the file header; the torn 20th waits
    assert snap.series["loss"].steps.tolist() == [0, 1, 2, 3, 4]
    assert snap.series["val_loss"].values.tolist() == [3.0]

    append(events, records[20][7:] + b"".join(records[21:]))
    append(job_dir / "metrics.jsonl", jsonl(range(5, 8)))
    append(csv_dir / "metrics.csv", "0,1,2.5\n")
    snap = await metrics.refresh()
    assert len(snap.series["train/loss"]) == 50
    step, value, _ = snap.series["train/loss"].last()  # type: ignore[misc]
    assert step == 49.0 and abs(value - (10.0 - 49 * 0.1)) < 1e-5  # a float32 on disk
    assert snap.series["loss"].steps.tolist() == list(range(8))
    assert snap.series["val_loss"].values.tolist() == [3.0, 2.5]
    assert snap.series["train/loss"].has_times()  # wall times come from the events


async def test_a_rewritten_csv_and_a_truncated_file_restart_cleanly(
    tmp_path: Path, transport: Counting
) -> None:
    csv = tmp_path / "metrics.csv"
    csv.write_text("epoch,step,loss\n0,0,2.0\n0,1,1.5\n")
    f = MetricFile(
        transport,
        str(csv),
        CsvDecoder,
        "m",
    )
    await f.refresh(ReadStats())
    assert f.series["loss"].values.tolist() == [2.0, 1.5]
    # Lightning's CSVLogger rewrites the file with a wider header when a metric appears.
    csv.write_text("epoch,step,loss,val_loss\n0,0,2.0,\n0,1,1.5,\n0,1,,1.4\n")
    await f.refresh(ReadStats())
    assert f.series["loss"].values.tolist() == [2.0, 1.5]
    assert f.series["val_loss"].values.tolist() == [1.4]
    assert f.resets == 1
    jl = tmp_path / "metrics.jsonl"
    jl.write_text(jsonl(range(10)))
    g = MetricFile(transport, str(jl), JsonlDecoder, "j")
    await g.refresh(ReadStats())
    jl.write_text(jsonl(range(2)))  # a new run overwrote it
    await g.refresh(ReadStats())
    assert g.series["loss"].steps.tolist() == [0, 1] and g.resets == 1


async def test_declared_paths_and_the_stdout_pattern(tmp_path: Path, transport: Counting) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    elsewhere = tmp_path / "shared" / "run.jsonl"
    elsewhere.parent.mkdir()
    elsewhere.write_text(jsonl(range(2)))
    (job_dir / "out").mkdir()
    (job_dir / "out" / "custom.csv").write_text("step,acc\n0,0.5\n")
    stdout = tmp_path / "stdout.log"
    stdout.write_text("it 1 loss=0.9\nit 2 loss=0.8\n")
    declared = Declared(
        metrics=[str(elsewhere), "out/*.csv"],
        metrics_regex=r"it (?P<step>\d+) loss=(?P<ppl>[0-9.]+)",
    )
    outputs = JobOutputs(transport, str(job_dir), {"stdout": str(stdout)})
    snap = await JobMetrics(outputs, declared).refresh()
    assert snap.series["ppl"].steps.tolist() == [1, 2]
    assert snap.series["acc"].values.tolist() == [0.5]
    assert snap.series["loss"].steps.tolist() == [0, 1]
    assert snap.last_values()["ppl"] == 0.8
