"""The metric decoders on files written by real writers, fed in arbitrary pieces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.results.protowire import crc32c, encode_record, masked_crc, split_records
from core.results.readers import (
    CsvDecoder,
    Decoder,
    JsonlDecoder,
    RegexDecoder,
    RegexError,
    TfeventsDecoder,
    compile_pattern,
)


def feed_in_pieces(decoder: Decoder, data: bytes, size: int) -> list[tuple[str, float, float]]:
    points = []
    for start in range(0, len(data), size):
        points += decoder.feed(data[start : start + size])
    return [(p.name, p.step, round(p.value, 6)) for p in points]


def tfevents_file(tmp_path: Path, steps: int, *, new_style: bool = False) -> Path:
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    for step in range(steps):
        if new_style:  # TF2's form: a one-element tensor (float, then double), not simple_value
            tensor_scalar(writer, "train/loss", 1.0 / (step + 1), step, dtype=1)
            tensor_scalar(writer, "lr", 0.5, step, dtype=2)
        else:
            writer.add_scalar("train/loss", 1.0 / (step + 1), step, display_name="Loss")
            writer.add_scalar("lr", 0.5, step)
    writer.add_text("note", "text is not a scalar", 0)
    writer.close()
    (path,) = (tmp_path / "tb").glob("*tfevents*")
    return path


def tensor_scalar(writer: object, tag: str, value: float, step: int, *, dtype: int) -> None:
    from tensorboardX.proto.summary_pb2 import Summary
    from tensorboardX.proto.tensor_pb2 import TensorProto

    tensor = TensorProto(
        dtype=dtype, **({"float_val": [value]} if dtype == 1 else {"double_val": [value]})
    )
    summary = Summary(value=[Summary.Value(tag=tag, tensor=tensor)])
    writer._get_file_writer().add_summary(summary, step)  # type: ignore[attr-defined]


def test_crc32c_known_vector() -> None:
    # RFC 3720 test vector: 32 bytes of zeros.
    assert crc32c(b"\x00" * 32) == 0x8A9136AA
    assert crc32c(b"123456789") == 0xE3069283


@pytest.mark.parametrize("new_style", [False, True], ids=["simple_value", "tensor"])
@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_tfevents_from_tensorboardx_in_any_pieces(
    tmp_path: Path, new_style: bool, piece: int
) -> None:
    data = tfevents_file(tmp_path, 20, new_style=new_style).read_bytes()
    decoder = TfeventsDecoder()
    points = feed_in_pieces(decoder, data, piece)
    loss = [(s, v) for n, s, v in points if n == "train/loss"]
    assert loss == [(float(s), round(1.0 / (s + 1), 6)) for s in range(20)]
    assert {n for n, _, _ in points} == {"train/loss", "lr"}  # the text summary is skipped
    assert decoder.problem is None and not decoder.pending


def test_tfevents_damage_is_reported_and_nothing_after_it_is_trusted(tmp_path: Path) -> None:
    data = bytearray(tfevents_file(tmp_path, 10).read_bytes())
    frames = split_records(bytes(data))
    # Flip one byte inside the 5th record's payload.
    pos = 0
    for record in frames.records[:4]:
        pos += 16 + len(record)
    data[pos + 14] ^= 0xFF
    decoder = TfeventsDecoder()
    points = decoder.feed(bytes(data))
    assert decoder.problem is not None and "checksum" in decoder.problem
    before = sum(1 for r in frames.records[:4] for _ in [r])
    assert len(points) <= 2 * before  # only what came before the damage
    assert decoder.feed(b"more") == []


def test_a_partial_frame_waits_for_the_rest() -> None:
    frame = encode_record(b"\x09" + b"\x00" * 8)  # an Event with wall_time 0 only
    frames = split_records(frame[:-1])
    assert frames.records == [] and frames.consumed == 0 and frames.problem is None
    assert masked_crc(b"") == masked_crc(b"")  # deterministic


def test_jsonl_lines_with_step_time_and_partial_last_line() -> None:
    lines = [
        {"step": 0, "loss": 2.0, "acc": 0.1, "time": 1000.5, "tag": "x", "ok": True},
        {"step": 10, "loss": 1.5},
        {"loss": 1.0},  # no step: its line number
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode() + b'{"step": 20, "lo'
    decoder = JsonlDecoder()
    points = decoder.feed(data)
    assert [(p.name, p.step, p.value) for p in points] == [
        ("loss", 0, 2.0),
        ("acc", 0, 0.1),
        ("loss", 10, 1.5),
        ("loss", 2, 1.0),
    ]
    assert points[0].time == 1000.5 and points[2].time is None
    assert decoder.feed(b'ss": 0.5}\nnot json\n') == [type(points[0])("loss", 20.0, 0.5, None)]
    assert decoder.skipped == 1


def test_lightning_csv_with_empty_cells() -> None:
    text = "epoch,step,train_loss,val_loss\n0,0,2.5,\n0,1,2.0,\n0,1,,1.9\n1,3,1.5,"
    decoder = CsvDecoder()
    points = decoder.feed(text.encode())
    assert [(p.name, p.step, p.value) for p in points] == [
        ("epoch", 0, 0),
        ("train_loss", 0, 2.5),
        ("epoch", 1, 0),
        ("train_loss", 1, 2.0),
        ("epoch", 1, 0),
        ("val_loss", 1, 1.9),
    ]
    assert decoder.header == b"epoch,step,train_loss,val_loss\n"
    assert [(p.name, p.value) for p in decoder.feed(b"\n")] == [("epoch", 1), ("train_loss", 1.5)]


def test_stdout_regex_with_and_without_a_step_group() -> None:
    with_step = RegexDecoder(r"step (?P<step>\d+) loss (?P<loss>[0-9.e+-]+)")
    out = b"starting\nstep 5 loss 0.75\nstep 6 loss 7e-1\nnoise loss x\n"
    assert [(p.step, p.value) for p in with_step.feed(out)] == [(5, 0.75), (6, 0.7)]
    counted = RegexDecoder(r"loss (?P<loss>[0-9.e+-]+)")
    assert [(p.step, p.value) for p in counted.feed(out)] == [(0, 0.75), (1, 0.7)]
    with pytest.raises(RegexError, match="no named group"):
        compile_pattern(r"loss [0-9.]+")
    with pytest.raises(RegexError):
        compile_pattern(r"loss (?P<loss>[0-9.]+")
