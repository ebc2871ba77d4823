"""Strings from jobs and from the store are text, never terminal commands.

A job's output, a title, a tag, an override, a backend's reason and a job name are all
written by someone else. Sent to a terminal as they are, an ``ESC c`` resets it, an OSC 52
writes the user's clipboard, ``ESC[6n`` makes the terminal *type* a reply into the program
reading it, and an OSC 0 renames the window. Everything that shows such strings passes
them through this module first; it is shared by the CLI and the app so both agree on what
is allowed.

Three tools, one policy:

* :func:`sanitize_terminal` (and :func:`sanitize_bytes`, :class:`TerminalFilter` for
  streams) for multi-line text such as logs: every escape sequence and C0/C1 control is
  removed, whole, except SGR colours (``CSI … m``), tabs and newlines. A sequence is removed
  the way a terminal would consume it, so what remains is the text the job meant to show.
  A string sequence (OSC, DCS, SOS, PM, APC) ends at BEL, ST, CAN, SUB *or the end of the
  line*: one line can never swallow the next.
* :func:`escape_cell` for one-line cells (tables, labels, titles): nothing is removed,
  every control is shown visibly (``\\n``, ``\\x1b``, ``\\u202e``), so a newline in a
  title can never split a row and an SGR in a title cannot colour the rest of a table.
  Backslashes are not doubled: ordinary titles stay readable, at the cost of ``a\\nb``
  looking the same whether it held a newline or a backslash and an ``n``.
* ``\\r``: dropped by default. The app's log view resolves carriage returns first (it
  shows what follows the last ``\\r`` of a line, as a terminal would after a progress bar
  redrew itself); the CLI keeps them (``keep_cr=True``) when streaming to a terminal, since
  a carriage return only moves the cursor to the start of the current line.

Bidi controls (U+202A-U+202E, U+2066-U+2069) are removed too: they can make a terminal
that does bidi show text in another order than it was written. Raw bytes 0x80-0x9F that
are not part of a UTF-8 character are 8-bit C1 controls to some terminals (0x9B is CSI):
:func:`sanitize_bytes` treats them exactly like U+0080-U+009F; other invalid bytes become
U+FFFD.

Stdlib only, one regex pass, with a fast path for text that has nothing to remove (the
common case: a log line without colours costs one ``search``).
"""

from __future__ import annotations

import codecs
import functools
import re

#: The body of a string sequence: up to its terminator, a CAN/SUB, or the end of the line.
_BODY = r"[^\x07\x18\x1a\x1b\x9c\n]*"
_STRING_END = r"(?:\x07|\x9c|\x1b\\)?"
_BIDI = "\u202a-\u202e\u2066-\u2069"


def _pattern(*, keep_sgr: bool, keep_cr: bool, unicode: bool) -> str:
    """One alternation: the escape sequences first (longest forms), then lone controls."""
    not_sgr = r"(?!\[[0-9;:]*m)" if keep_sgr else ""
    # ESC itself is left to the branches above (it is kept only as the start of an SGR).
    c0 = r"\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f" + ("" if keep_cr else r"\x0d")
    parts = [
        rf"\x1b{not_sgr}\[[0-?]*[ -/]*[@-~]?",  # CSI but SGR when kept
        rf"\x1b[\]PX^_]{_BODY}{_STRING_END}",  # OSC, DCS, SOS, PM, APC
        r"\x1b(?![\[\]PX^_])[ -/]*[0-~]?",  # nF (ESC ( 0, ESC # 8, ESC % @), ESC c, lone ESC
    ]
    if unicode:
        parts += [
            r"\x9b[0-?]*[ -/]*[@-~]?",  # 8-bit CSI
            rf"[\x90\x98\x9d\x9e\x9f]{_BODY}{_STRING_END}",  # 8-bit DCS, SOS, OSC, PM, APC
            rf"[{c0}\x80-\x9f{_BIDI}]",
        ]
    else:
        parts.append(rf"[{c0}]")
    return "|".join(parts)


@functools.cache
def _compile(keep_sgr: bool, keep_cr: bool) -> tuple[re.Pattern[str], re.Pattern[bytes]]:
    """Compiled on first need (a few ms each): most text has nothing to remove."""
    text = re.compile(_pattern(keep_sgr=keep_sgr, keep_cr=keep_cr, unicode=True))
    ascii_only = re.compile(_pattern(keep_sgr=keep_sgr, keep_cr=keep_cr, unicode=False).encode())
    return text, ascii_only


#: Anything that might need removing; text without it is returned as it is.
_SUSPECT = re.compile(rf"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
_SUSPECT_ASCII = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")

#: Undecodable bytes (surrogateescape): 0x80-0x9F are C1 controls, the rest U+FFFD.
_RAW_BYTES = re.compile("[\udc80-\udcff]")
_RAW_TO_TEXT = {0xDC00 + b: (chr(b) if b < 0xA0 else "\ufffd") for b in range(0x80, 0x100)}


def sanitize_terminal(text: str, *, keep_sgr: bool = True, keep_cr: bool = False) -> str:
    """``text`` with every escape sequence and control removed but SGR, ``\\t`` and ``\\n``.

    ``keep_sgr=False`` removes colours too; ``keep_cr=True`` keeps carriage returns.
    """
    if _SUSPECT.search(text) is None:
        return text
    return _compile(keep_sgr, keep_cr)[0].sub("", text)


def sanitize_bytes(data: bytes, *, keep_sgr: bool = True, keep_cr: bool = False) -> bytes:
    """:func:`sanitize_terminal` for undecoded output; returns UTF-8.

    A raw 0x9B is CSI to an 8-bit terminal, so bytes 0x80-0x9F outside a UTF-8 character
    count as C1 controls; other invalid bytes become U+FFFD.
    """
    if data.isascii():
        if _SUSPECT_ASCII.search(data) is None:
            return data
        return _compile(keep_sgr, keep_cr)[1].sub(b"", data)
    return sanitize_terminal(decode_output(data), keep_sgr=keep_sgr, keep_cr=keep_cr).encode()


def decode_output(data: bytes) -> str:
    """Job output as text: UTF-8, where a stray byte 0x80-0x9F becomes the C1 control it
    is to an 8-bit terminal (so the sanitizer removes it, with its sequence) and any other
    invalid byte becomes U+FFFD. Nothing is sanitized yet."""
    return _undecodable_as_text(data.decode("utf-8", "surrogateescape"))


def _undecodable_as_text(text: str) -> str:
    if _RAW_BYTES.search(text) is None:
        return text
    return text.translate(_RAW_TO_TEXT)


#: A sequence still open at the end of a chunk (held back until the next one).
_OPEN_TAIL = re.compile(
    rf"(?:\x1b(?:\[[0-?]*[ -/]*|[\]PX^_]{_BODY}\x1b?|[ -/]*)"
    rf"|\x9b[0-?]*[ -/]*|[\x90\x98\x9d\x9e\x9f]{_BODY}\x1b?)\Z"
)
#: Longest open sequence held back; a longer one is cut (its rest then shows as text).
MAX_HELD = 4096


class TerminalFilter:
    """:func:`sanitize_bytes` for a stream cut into arbitrary chunks.

    A UTF-8 character or an escape sequence split between two chunks is held back until
    the rest arrives (at most :data:`MAX_HELD` characters), so cutting a stream never lets
    half a sequence through, nor mangles a character.
    """

    def __init__(self, *, keep_sgr: bool = True, keep_cr: bool = False) -> None:
        self.keep_sgr = keep_sgr
        self.keep_cr = keep_cr
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self._held = ""

    def feed(self, data: bytes) -> bytes:
        """Sanitize the next chunk; may keep its last few characters for the next call."""
        text = self._held + _undecodable_as_text(self._decoder.decode(data))
        start = max(0, len(text) - MAX_HELD)
        match = _OPEN_TAIL.search(text, start) if _SUSPECT.search(text, start) else None
        cut = match.start() if match is not None else len(text)
        self._held = text[cut:]
        return self._clean(text[:cut])

    def flush(self) -> bytes:
        """The end of the stream: whatever was held back, sanitized."""
        text = self._held + _undecodable_as_text(self._decoder.decode(b"", final=True))
        self._held = ""
        return self._clean(text)

    def _clean(self, text: str) -> bytes:
        return sanitize_terminal(text, keep_sgr=self.keep_sgr, keep_cr=self.keep_cr).encode()


def _visible(code: int) -> str:
    named = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
    if code in named:
        return named[code]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_CELL_CODES = [
    *range(0x00, 0x20),
    *range(0x7F, 0xA0),
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    0x2028,
    0x2029,
]
_CELL_TABLE = {code: _visible(code) for code in _CELL_CODES}
_CELL_SUSPECT = re.compile(rf"[\x00-\x1f\x7f-\x9f{_BIDI}\u2028\u2029]")


def escape_cell(text: str) -> str:
    """One line of plain text: every control shown visibly (``\\n``, ``\\x1b``, ``\\u202e``).

    For table cells and labels (titles, tags, job names, reasons, overrides): nothing is
    hidden, nothing is interpreted, and the result never spans two lines.
    """
    if _CELL_SUSPECT.search(text) is None:
        return text
    return text.translate(_CELL_TABLE)


__all__ = [
    "MAX_HELD",
    "TerminalFilter",
    "decode_output",
    "escape_cell",
    "sanitize_bytes",
    "sanitize_terminal",
]
