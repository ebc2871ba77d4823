"""Escape families a hostile job or store can try on a terminal, shared by the safety tests.

Each family has a name (the tests are parametrized by it), a payload, and the byte sequences
that must never reach a terminal once the payload went through the app or the CLI. Every
string payload carries ``PWNED`` inside the sequence itself, so "PWNED inside an escape
sequence" is one check for all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """One kind of terminal command hidden in text."""

    name: str
    payload: str
    forbidden: tuple[bytes, ...]  # byte sequences that must not arrive (after UTF-8 encoding)
    visible: str = ""  # the text a sanitized payload leaves (a link's text, say)


FAMILIES: tuple[Family, ...] = (
    Family("c0-controls", "\x00\x01\x05\x07\x08\x0b\x0c\x18\x1a\x1c\x1f", (b"\x05", b"\x1c")),
    Family("del", "\x7f", (b"\x7f",)),
    Family("esc-c-ris", "\x1bc", (b"\x1bc",)),
    Family("esc-hash-8-decaln", "\x1b#8", (b"\x1b#8",)),
    Family(
        "charset-designation",
        "\x1b(0\x1b)0\x1b*0\x1b+0",
        (b"\x1b(0", b"\x1b)0", b"\x1b*0", b"\x1b+0"),
    ),
    Family("si-so-shift", "\x0e\x0f", (b"\x0e", b"\x0f")),
    Family("esc-percent-charset", "\x1b%@\x1b%G", (b"\x1b%@", b"\x1b%G")),
    Family("esc-fp-cursor", "\x1b7\x1b8\x1b=\x1bD\x1bM", (b"\x1b7", b"\x1b8", b"\x1bD", b"\x1bM")),
    Family("csi-clear-screen", "\x1b[2J\x1b[3J", (b"\x1b[3J",)),
    Family("csi-cursor-move", "\x1b[7;77H\x1b[77;7f", (b"\x1b[7;77H", b"\x1b[77;7f")),
    Family("csi-alt-screen", "\x1b[?47h\x1b[?1049;77h", (b"\x1b[?47h", b"\x1b[?1049;77h")),
    Family("csi-device-status-report", "\x1b[5n\x1b[77;6n", (b"\x1b[5n", b"\x1b[77;6n")),
    Family("csi-private-sgr-lookalike", "\x1b[>4;2m", (b"\x1b[>4;2m",)),
    Family("osc-0-title", "\x1b]0;PWNED title\x07", (b"\x1b]0;PWNED",)),
    Family("osc-2-title-st", "\x1b]2;PWNED title\x1b\\", (b"\x1b]2;PWNED",)),
    Family("osc-52-clipboard", "\x1b]52;c;UFdORUQ=PWNED\x07", (b"\x1b]52;",)),
    Family(
        "osc-8-hyperlink",
        "\x1b]8;;https://PWNED.example/\x1b\\link\x1b]8;;\x1b\\",
        (b"\x1b]8;",),
        visible="link",
    ),
    Family("dcs", "\x1bPq#0;PWNED\x1b\\", (b"\x1bP",)),
    Family("apc", "\x1b_PWNED apc\x1b\\", (b"\x1b_",)),
    Family("pm", "\x1b^PWNED pm\x1b\\", (b"\x1b^",)),
    Family("sos", "\x1bXPWNED sos\x1b\\", (b"\x1bX",)),
    Family("c1-csi-u009b", "\x9b2J\x9b7;7H", ("\x9b".encode(),)),
    Family("c1-osc-u009d", "\x9d0;PWNED c1\x07", ("\x9d".encode(),)),
    Family("c1-dcs-u0090", "\x90qPWNED\x9c", ("\x90".encode(), "\x9c".encode())),
    Family("c1-other", "\x84\x85\x8d\x8e\x8f\x9a", ("\x85".encode(), "\x8d".encode())),
    Family("bidi-override", "\u202eRLO\u202c\u2066iso\u2069", ("\u202e".encode(),), "RLOiso"),
    Family("lone-esc", "\x1b\x1b\u00e9", (), "\u00e9"),
)

#: A colour that must survive where colours are kept (logs).
SGR = "\x1b[31;1m"
SGR_RESET = "\x1b[0m"

#: Raw bytes 0x9B/0x9D/0x90 (not UTF-8): 8-bit CSI, OSC and DCS to some terminals.
RAW_C1_BYTES = b"raw\x9b2J\x9d0;PWNED raw\x07\x90qPWNED\x9c!"

#: Every family in one string (with text around, so neighbours are kept apart).
ALL_PAYLOADS = "".join(f"<{f.name}:{f.payload}>" for f in FAMILIES)

#: "PWNED" inside a sequence that a terminal would act on.
PWNED_IN_SEQUENCE = re.compile(rb"(?:\x1b[\]P_^X]|\xc2[\x90\x9d\x98\x9e\x9f])[^\x07\x1b\n]*PWNED")


def forbidden_found(data: bytes) -> list[tuple[str, bytes]]:
    """(family, sequence) for each forbidden sequence present in ``data``."""
    return [(f.name, seq) for f in FAMILIES for seq in f.forbidden if seq in data]
