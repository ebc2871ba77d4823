"""Just enough protobuf and TFRecord to read TensorBoard event files, with no dependency.

Why our own decoder: TensorBoard's event files are TFRecord streams of ``Event`` protobuf
messages; reading them with the tensorflow (or even the protobuf) package would pull hundreds
of megabytes into a terminal app for a dozen fields. The wire format is small and stable:

* TFRecord frame: ``uint64 length | uint32 masked_crc32c(length) | data | uint32
  masked_crc32c(data)``, all little-endian.
* protobuf: a sequence of ``(field_number << 3 | wire_type)`` varint keys, each followed by a
  varint (type 0), 8 bytes (type 1), a length-prefixed blob (type 2) or 4 bytes (type 5).

Both CRCs are checked: a frame whose bytes do not match is damage (reported, never parsed as
numbers), while a frame whose bytes have not all arrived yet is simply "not yet".
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass


class WireError(ValueError):
    """The bytes are not a valid protobuf message / TFRecord frame."""


# --------------------------------------------------------------------------- protobuf
def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` for each field of one message.

    Varints come as ints, fixed64/fixed32 as their raw little-endian bytes (the caller knows
    whether a field is a double, a float or an integer), length-delimited fields as bytes.
    """
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == 0:
            value, pos = read_varint(data, pos)
            yield number, wire, value
        elif wire == 1:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            yield number, wire, data[pos : pos + 8]
            pos += 8
        elif wire == 2:
            size, pos = read_varint(data, pos)
            if pos + size > end:
                raise WireError("truncated length-delimited field")
            yield number, wire, data[pos : pos + size]
            pos += size
        elif wire == 5:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            yield number, wire, data[pos : pos + 4]
            pos += 4
        else:  # groups (3, 4) are long deprecated and never used by TensorBoard
            raise WireError(f"unsupported wire type {wire}")


def as_double(raw: int | bytes) -> float:
    if not isinstance(raw, bytes) or len(raw) != 8:
        raise WireError("expected a double")
    return float(struct.unpack("<d", raw)[0])


def as_float(raw: int | bytes) -> float:
    if not isinstance(raw, bytes) or len(raw) != 4:
        raise WireError("expected a float")
    return float(struct.unpack("<f", raw)[0])


def as_signed64(raw: int | bytes) -> int:
    """An ``int64`` varint (two's complement in 64 bits)."""
    if not isinstance(raw, int):
        raise WireError("expected a varint")
    return raw - (1 << 64) if raw >= 1 << 63 else raw


def packed_varints(raw: bytes) -> list[int]:
    out = []
    pos = 0
    while pos < len(raw):
        value, pos = read_varint(raw, pos)
        out.append(value)
    return out


# --------------------------------------------------------------------------- CRC32C
def _crc_table() -> list[int]:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC: rotate right by 15 and add a constant (mod 2**32)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --------------------------------------------------------------------------- TFRecord
#: A record longer than this is treated as damage, not as a reason to wait for 2**60 bytes.
MAX_RECORD_BYTES = 256 << 20


@dataclass
class Frames:
    """Complete records found in a buffer, and how many bytes of it they used."""

    records: list[bytes]
    consumed: int
    problem: str | None = None


def split_records(buffer: bytes, *, check_data_crc: bool = True) -> Frames:
    """The complete TFRecord frames at the start of ``buffer``.

    An incomplete last frame is left for later (``consumed`` stops before it). A frame whose
    length or data CRC does not match ends the scan with ``problem`` set: nothing after
    damage is trusted.
    """
    records: list[bytes] = []
    pos = 0
    end = len(buffer)
    while end - pos >= 12:
        header = buffer[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", buffer[pos + 8 : pos + 12])
        if masked_crc(header) != length_crc:
            return Frames(records, pos, f"bad length checksum at byte {pos}")
        if length > MAX_RECORD_BYTES:
            return Frames(records, pos, f"record of {length} bytes at byte {pos}")
        if end - pos < 12 + length + 4:
            break
        data = buffer[pos + 12 : pos + 12 + length]
        if check_data_crc:
            (data_crc,) = struct.unpack("<I", buffer[pos + 12 + length : pos + 16 + length])
            if masked_crc(data) != data_crc:
                return Frames(records, pos, f"bad data checksum at byte {pos}")
        records.append(data)
        pos += 16 + length
    return Frames(records, pos)


def encode_record(data: bytes) -> bytes:
    """One TFRecord frame (tests and benchmarks write event files with it)."""
    header = struct.pack("<Q", len(data))
    return (
        header + struct.pack("<I", masked_crc(header)) + data + struct.pack("<I", masked_crc(data))
    )
