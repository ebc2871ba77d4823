"""Scalars out of TensorBoard ``Event`` messages (see :mod:`core.results.protowire`).

Only what a loss curve needs is decoded: ``Event.wall_time`` (1, double), ``Event.step``
(2, int64), ``Event.summary`` (5) → ``Summary.value`` (1) → ``Value.tag`` (1) with either
``simple_value`` (2, float; what tensorboardX and ``torch.utils.tensorboard`` write) or a
one-element numeric ``tensor`` (8; what TF2's ``tf.summary.scalar`` writes). Images,
histograms, text and graphs are skipped without being looked into.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from core.results.protowire import (
    WireError,
    as_double,
    as_float,
    as_signed64,
    fields,
    packed_varints,
)

# TensorFlow DataType enum values of the numeric types a scalar may have.
_DT_FLOAT, _DT_DOUBLE, _DT_INT32, _DT_INT64, _DT_HALF, _DT_BFLOAT16 = 1, 2, 3, 9, 19, 14
_CONTENT_FORMAT = {_DT_FLOAT: "<f", _DT_DOUBLE: "<d", _DT_INT32: "<i", _DT_INT64: "<q"}


@dataclass(frozen=True, slots=True)
class Scalar:
    tag: str
    step: int
    wall_time: float
    value: float


def scalars(event: bytes) -> list[Scalar]:
    """The scalar values one serialized ``Event`` carries (often none: a header, a graph)."""
    wall_time = 0.0
    step = 0
    summary: bytes | None = None
    for number, wire, value in fields(event):
        if number == 1 and wire == 1:
            wall_time = as_double(value)
        elif number == 2 and wire == 0:
            step = as_signed64(value)
        elif number == 5 and wire == 2:
            assert isinstance(value, bytes)
            summary = value
    if summary is None:
        return []
    out = []
    for number, wire, value in fields(summary):
        if number != 1 or wire != 2:
            continue
        assert isinstance(value, bytes)
        found = _summary_value(value)
        if found is not None:
            out.append(Scalar(found[0], step, wall_time, found[1]))
    return out


def _summary_value(data: bytes) -> tuple[str, float] | None:
    tag = ""
    number_value: float | None = None
    tensor: bytes | None = None
    for number, wire, value in fields(data):
        if number == 1 and wire == 2:
            assert isinstance(value, bytes)
            tag = value.decode("utf-8", "replace")
        elif number == 2 and wire == 5:
            number_value = as_float(value)
        elif number == 8 and wire == 2:
            assert isinstance(value, bytes)
            tensor = value
    if number_value is None and tensor is not None:
        number_value = _tensor_scalar(tensor)
    if not tag or number_value is None:
        return None
    return tag, number_value


def _tensor_scalar(data: bytes) -> float | None:
    """The value of a one-element numeric ``TensorProto``, else None."""
    dtype = 0
    values: list[float] = []
    content = b""
    for number, wire, value in fields(data):
        if number == 1 and wire == 0:
            assert isinstance(value, int)
            dtype = value
        elif number == 4 and wire == 2:
            assert isinstance(value, bytes)
            content = value
        elif number == 5:  # float_val, packed or not
            values.extend(_repeated(value, wire, 4, "<f"))
        elif number == 6:  # double_val
            values.extend(_repeated(value, wire, 8, "<d"))
        elif number in (7, 10):  # int_val, int64_val
            if wire == 2:
                assert isinstance(value, bytes)
                values.extend(float(as_signed64(v)) for v in packed_varints(value))
            elif wire == 0:
                values.append(float(as_signed64(value)))
        elif number == 8:  # string_val: not a number
            return None
    if not values and content:
        fmt = _CONTENT_FORMAT.get(dtype)
        if fmt is None:
            return None
        size = struct.calcsize(fmt)
        if len(content) != size:
            return None
        values = [float(struct.unpack(fmt, content)[0])]
    if len(values) != 1 or dtype not in (0, *_CONTENT_FORMAT, _DT_HALF, _DT_BFLOAT16):
        return None
    return values[0]


def _repeated(value: int | bytes, wire: int, size: int, fmt: str) -> list[float]:
    if wire == 2:
        assert isinstance(value, bytes)
        if len(value) % size:
            raise WireError("packed field of the wrong length")
        return [float(v[0]) for v in struct.iter_unpack(fmt, value)]
    return [as_float(value) if size == 4 else as_double(value)]
