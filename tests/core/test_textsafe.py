"""core.textsafe: every escape family is neutralised; SGR, tabs, newlines and text survive."""

from __future__ import annotations

import re

import pytest
from hostile_strings import ALL_PAYLOADS, FAMILIES, RAW_C1_BYTES, SGR, SGR_RESET, Family

from core.textsafe import (
    MAX_HELD,
    TerminalFilter,
    escape_cell,
    sanitize_bytes,
    sanitize_terminal,
)

#: What may be left after sanitizing (SGR kept): no ESC outside SGR, no C0 but \t \n, no C1.
_ESC_NOT_SGR = re.compile(r"\x1b(?!\[[0-9;:]*m)")
_BAD_CONTROL = re.compile("[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

ORDINARY = [
    "hello world",
    "step 10 | loss 0.1234 | lr 3e-4",
    "tab\tseparated\tcolumns\nand a second line\n",
    "日本語のログ 🎉🚀 emoji, CJK — and “quotes”",
    "Ünïcödé ñ ø å ß € ¥",
    "[bold red]not markup[/] [link=https://x]y[/link]",
    "a\\nb with a literal backslash",
    "שלום مرحبا",  # right-to-left text without bidi controls
]


def _safe(text: str) -> bool:
    return _ESC_NOT_SGR.search(text) is None and _BAD_CONTROL.search(text) is None


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_family_is_removed_and_the_text_around_it_kept(family: Family) -> None:
    text = f"before{family.payload}after\n"
    out = sanitize_terminal(text)
    assert out == f"before{family.visible}after\n"
    assert "PWNED" not in out
    for seq in family.forbidden:
        assert seq.decode() not in out


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_family_is_removed_from_bytes(family: Family) -> None:
    data = f"before{family.payload}after{SGR}red{SGR_RESET}".encode()
    out = sanitize_bytes(data)
    assert out == f"before{family.visible}after{SGR}red{SGR_RESET}".encode()


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_family_is_shown_visibly_in_a_cell(family: Family) -> None:
    out = escape_cell(f"title {family.payload}\nsecond line")
    assert "\n" not in out and "\x1b" not in out
    assert _BAD_CONTROL.search(out) is None
    assert out.startswith("title ") and out.endswith("\\nsecond line")
    if family.payload.startswith("\x1b"):
        assert out.startswith("title \\x1b")


def test_sgr_survives_and_can_be_removed_on_request() -> None:
    text = f"{SGR}error{SGR_RESET} plain \x1b[38;5;196mx\x1b[m \x1b[38:2:1:2:3my\x1b[0m"
    assert sanitize_terminal(text) == text
    assert sanitize_terminal(text, keep_sgr=False) == "error plain x y"
    assert sanitize_bytes(text.encode()) == text.encode()


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert sanitize_terminal(text) == text
    assert sanitize_bytes(text.encode()) == text.encode()
    assert TerminalFilter().feed(text.encode()) == text.encode()
    assert escape_cell(text.replace("\n", " ").replace("\t", " ")) == text.replace(
        "\n", " "
    ).replace("\t", " ")


def test_carriage_returns_are_dropped_unless_kept() -> None:
    assert sanitize_terminal("50%\r100%\r\n") == "50%100%\n"
    assert sanitize_terminal("50%\r100%\r\n", keep_cr=True) == "50%\r100%\r\n"
    assert sanitize_bytes(b"a\rb", keep_cr=True) == b"a\rb"
    assert escape_cell("a\r\nb") == "a\\r\\nb"


def test_a_string_sequence_never_swallows_the_next_line() -> None:
    # A terminal would hide everything up to a BEL; the sanitizer stops at the line end.
    out = sanitize_terminal("one\x1b]0;PWNED without end\ntwo\n")
    assert out == "one\ntwo\n"
    assert sanitize_terminal("\x1bPq unterminated dcs\nnext") == "\nnext"
    assert sanitize_terminal("cancelled \x1b]0;x\x18shown") == "cancelled shown"


def test_esc_and_a_letter_is_consumed_like_a_terminal_would() -> None:
    # ESC Fs (0x60-0x7e; ESC c is one of them) and ESC Fp (ESC 7) are whole sequences.
    assert sanitize_terminal("x\x1bay\x1b7z\x1b") == "xyz"


def test_all_families_together() -> None:
    out = sanitize_terminal(ALL_PAYLOADS)
    assert _safe(out)
    assert "PWNED" not in out
    for family in FAMILIES:
        assert f"<{family.name}:" in out


def test_raw_c1_bytes_are_controls_and_other_invalid_bytes_are_replaced() -> None:
    assert sanitize_bytes(RAW_C1_BYTES) == b"raw!"
    # U+009B encoded as UTF-8 is a C1 control too; a latin-1 byte is not text in UTF-8.
    assert sanitize_bytes("x\x9b2Jy".encode()) == b"xy"
    assert sanitize_bytes(b"caf\xe9 ok") == "caf\ufffd ok".encode()
    # 0x9B as part of a real character is not a control.
    assert sanitize_bytes("\u011b \u203a".encode()) == "\u011b \u203a".encode()


def test_a_stream_cut_anywhere_lets_no_sequence_through() -> None:
    payload = (f"{ALL_PAYLOADS}{SGR}red{SGR_RESET} 日本 🎉\n").encode() + RAW_C1_BYTES
    whole = sanitize_bytes(payload)
    for size in (1, 2, 3, 7, 64):
        stream = TerminalFilter()
        pieces = [stream.feed(payload[i : i + size]) for i in range(0, len(payload), size)]
        out = b"".join(pieces) + stream.flush()
        assert out == whole, size
        for piece in pieces:
            piece.decode("utf-8")  # never half a character
            assert _safe(piece.decode())


def test_a_stream_holds_back_only_a_bounded_open_sequence() -> None:
    stream = TerminalFilter()
    assert stream.feed(b"ok \x1b]0;") == b"ok "
    assert stream.feed(b"PWNED\x07 done") == b" done"
    long = b"\x1b]52;c;" + b"A" * (MAX_HELD * 2)
    out = stream.feed(long)
    assert b"\x1b" not in out and len(stream._held) <= MAX_HELD
    assert stream.flush() == b""


def test_cell_escapes_line_separators_and_keeps_unicode() -> None:
    assert escape_cell("a\u2028b\u2029c") == "a\\u2028b\\u2029c"
    assert escape_cell("日本\t🎉") == "日本\\t🎉"
    assert escape_cell("\x1b[31mred") == "\\x1b[31mred"


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    given = None

if given is not None:
    _pieces = st.one_of(
        st.text(max_size=8),
        st.sampled_from([f.payload for f in FAMILIES]),
        st.sampled_from(["\x1b", "\x1b[", "\x1b]", "\x9b", "\x90", "\x9d", "[", ";", "m", "7"]),
        st.sampled_from([SGR, SGR_RESET, "\x1b[38;5;1m", "\n", "\t", "\r"]),
        st.characters(min_codepoint=0, max_codepoint=0x2070),
    )
    _texts = st.lists(_pieces, max_size=30).map("".join)

    @settings(max_examples=1000, deadline=None)
    @given(_texts, st.booleans())
    def test_property_output_is_never_a_command(text: str, keep_sgr: bool) -> None:
        out = sanitize_terminal(text, keep_sgr=keep_sgr)
        assert _safe(out)
        if not keep_sgr:
            assert "\x1b" not in out
        assert sanitize_terminal(out, keep_sgr=keep_sgr) == out  # idempotent
        cell = escape_cell(text)
        assert "\n" not in cell and "\x1b" not in cell and _BAD_CONTROL.search(cell) is None

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=200), st.lists(st.integers(1, 50), max_size=8))
    def test_property_bytes_and_streams_are_never_a_command(data: bytes, cuts: list[int]) -> None:
        data = data + "".join(f.payload for f in FAMILIES[:3]).encode()
        out = sanitize_bytes(data)
        assert _safe(out.decode("utf-8"))
        stream = TerminalFilter()
        pieces, position = [], 0
        for cut in cuts:
            pieces.append(stream.feed(data[position : position + cut]))
            position += cut
        pieces.append(stream.feed(data[position:]))
        pieces.append(stream.flush())
        for piece in pieces:
            assert _safe(piece.decode("utf-8"))
