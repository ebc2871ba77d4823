"""``LogView``: renders the visible rows of a :class:`LogReader`, nothing more.

The view owns only a position (follow the end, or a top row), wrap, and highlighting. It
asks its reader for exactly one screenful of rows and draws them with the Line API, so a
1 GB file costs the same to show as a 1 KB one. Redraws happen when the reader publishes a
window (at most ``max_rate`` per second while the file grows) or when the user moves.
"""

from __future__ import annotations

import re
from typing import ClassVar

from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from core.textsafe import sanitize_terminal
from nemorun_tui.logview.reader import LogReader, Window


def to_text(line: str, tab_size: int = 8) -> Text:
    """A log line as Rich text: SGR colours kept, every other control and sequence removed.

    Done here, per visible line at render time, so the index keeps working on the file's
    own bytes and offsets. Rich's ``from_ansi`` alone lets ``ESC c``, ``ESC #8``, charset
    shifts and C1 controls through, so :func:`sanitize_terminal` goes first.
    """
    line = sanitize_terminal(line)
    # Only SGR is left: from_ansi turns it into styles (never raw bytes on the screen).
    text = Text.from_ansi(line, end="") if "\x1b" in line else Text(line, end="")
    if "\t" in line:
        text.expand_tabs(tab_size)
    return text


class LogView(Widget, can_focus=True):
    """One log (one job, one stream), followed live."""

    DEFAULT_CSS = """
    LogView {
        height: 1fr;
        background: $surface;
    }
    LogView > .log-view--gutter { color: $text-muted; }
    LogView > .log-view--gap { color: $accent; }
    LogView > .log-view--match { background: $warning 40%; color: $text; }
    LogView > .log-view--current { background: $error; color: $text; text-style: bold; }
    LogView > .log-view--current-line { background: $boost; }
    LogView > .log-view--scrollbar { color: $primary 60%; }
    LogView > .log-view--message { color: $text-muted; text-style: italic; }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "log-view--gutter",
        "log-view--gap",
        "log-view--match",
        "log-view--current",
        "log-view--current-line",
        "log-view--scrollbar",
        "log-view--message",
    }

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "scroll(-1)", "Up", show=False),
        Binding("down,j", "scroll(1)", "Down", show=False),
        Binding("pageup,ctrl+b", "page(-1)", "Page up", show=False),
        Binding("pagedown,ctrl+f,space", "page(1)", "Page down", show=False),
        Binding("home,g", "top", "Top", show=False),
        Binding("end,G", "follow", "Follow (end)", id="log-follow"),
        Binding("left,h", "pan(-8)", "Left", show=False),
        Binding("right", "pan(8)", "Right", show=False),
        Binding("w", "toggle_wrap", "Wrap", id="log-wrap"),
        Binding("n", "find(False)", "Next match", id="log-next"),
        Binding("N", "find(True)", "Previous match", id="log-previous"),
        Binding("y", "copy", "Copy", id="log-copy"),
    ]

    class StatusChanged(Message):
        """Follow/paused, counts or filter state changed: the pane updates its status line."""

        def __init__(self, view: LogView) -> None:
            super().__init__()
            self.view = view

        @property
        def control(self) -> LogView:
            """The view that changed (for ``@on(LogView.StatusChanged, "#id")`` selectors)."""
            return self.view

    class _WindowReady(Message):
        """The reader published a window (posted from the reader thread)."""

    def __init__(
        self,
        path: str,
        *,
        label: str = "",
        max_rate: float = 10.0,
        poll: float = 0.05,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.path = path
        self.label = label
        self.reader = LogReader(path, self._reader_changed, poll=poll, max_rate=max_rate)
        self.follow = True
        self.top = 0
        self.pan = 0
        self.wrap = False
        self.highlight: re.Pattern[str] | None = None
        self.current_match: int | None = None
        self.paused_at_appended = 0
        self._seen_prepended = 0
        self._seen_generation = 0
        self._pending = False
        self._frame: list[Strip] | None = None
        self._frame_key: tuple[object, ...] | None = None
        self.redraws = 0
        self.last_window_shown: Window | None = None
        self._find_waiting = False

    # -- lifecycle --------------------------------------------------------------------------
    def on_mount(self) -> None:
        """Start the reader with a request for the tail."""
        self.reader.request(None, max(1, self.size.height or 50))
        self.reader.start()

    def on_unmount(self) -> None:
        """Stop the reader thread."""
        self.reader.close()

    def _reader_changed(self) -> None:
        # Called on the reader thread: coalesce into at most one pending message.
        if not self._pending:
            self._pending = True
            self.post_message(self._WindowReady())

    def on_log_view__window_ready(self, message: _WindowReady) -> None:
        """A new window arrived: adjust for prepended lines, redraw, maybe finish a find."""
        self._pending = False
        window = self.reader.window
        if window.generation != self._seen_generation:
            self._seen_generation = window.generation
            self._seen_prepended = 0
            self.paused_at_appended = 0
            self.top = 0
        if not window.filtering and window.prepended != self._seen_prepended:
            if not self.follow:
                self.top += window.prepended - self._seen_prepended
                self._request()
            if self.current_match is not None:
                self.current_match += window.prepended - self._seen_prepended
            self._seen_prepended = window.prepended
        if self._find_waiting and self.reader.found is not None:
            self._find_done()
        self.refresh()
        self.post_message(self.StatusChanged(self))

    def _request(self) -> None:
        height = max(1, self.size.height)
        self.reader.request(None if self.follow else self.top, height)

    def on_resize(self, event: events.Resize) -> None:
        """Ask for a window matching the new height."""
        self._request()

    # -- state for the status line -------------------------------------------------------------
    @property
    def window(self) -> Window:
        """The reader's latest window."""
        return self.reader.window

    @property
    def new_lines(self) -> int:
        """Lines appended since following was paused."""
        if self.follow:
            return 0
        return max(0, self.window.appended - self.paused_at_appended)

    # -- movement -----------------------------------------------------------------------------
    def _pause(self) -> None:
        if self.follow:
            self.follow = False
            window = self.window
            self.top = max(0, window.total_rows - max(1, self.size.height))
            self.paused_at_appended = window.appended
            self.post_message(self.StatusChanged(self))

    def _scroll_top_to(self, top: int) -> None:
        total = self.window.total_rows
        height = max(1, self.size.height)
        self.top = max(0, min(top, max(0, total - height)))
        self._request()
        self.refresh()

    def action_scroll(self, delta: int) -> None:
        """Scroll by ``delta`` rows (scrolling up pauses following)."""
        if delta < 0:
            self._pause()
        elif self.follow:
            return
        self._scroll_top_to(self.top + delta)

    def action_page(self, direction: int) -> None:
        """Scroll by a screenful."""
        self.action_scroll(direction * max(1, self.size.height - 1))

    def action_top(self) -> None:
        """Jump to the first line (pauses following)."""
        self._pause()
        self._scroll_top_to(0)

    def action_follow(self) -> None:
        """Resume following the end."""
        self.follow = True
        self.pan = 0
        self._request()
        self.refresh()
        self.post_message(self.StatusChanged(self))

    def action_pan(self, delta: int) -> None:
        """Scroll sideways (no-wrap mode)."""
        if self.wrap:
            return
        self.pan = max(0, self.pan + delta)
        self.refresh()

    def action_toggle_wrap(self) -> None:
        """Wrap long lines or cut them (and pan with left/right)."""
        self.wrap = not self.wrap
        self.pan = 0
        self.refresh()
        self.post_message(self.StatusChanged(self))

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        """Wheel up: three rows up, pausing follow."""
        event.stop()
        self.action_scroll(-3)

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        """Wheel down: three rows down."""
        event.stop()
        self.action_scroll(3)

    # -- search ------------------------------------------------------------------------------
    def set_highlight(self, pattern: re.Pattern[str] | None) -> None:
        """Highlight matches of ``pattern`` in the visible rows."""
        self.highlight = pattern
        self.current_match = None
        self.refresh()

    def action_find(self, backwards: bool) -> None:
        """Jump to the next (or previous) line matching the search."""
        if self.highlight is None:
            self.notify("no search yet: press / to search", severity="warning", timeout=3)
            return
        window = self.window
        if self.current_match is not None:
            origin = self.current_match
        elif self.follow:
            origin = window.line_count if backwards else window.line_count - 1
        else:
            rows = window.rows
            index = self.top - window.first
            origin = rows[index][0] if 0 <= index < len(rows) else self.top
            if not backwards:
                origin -= 1
        flags = self.highlight.flags & (re.IGNORECASE | re.MULTILINE)
        pattern = re.compile(self.highlight.pattern.encode(), flags)
        self.reader.found = None
        self._find_waiting = True
        self.reader.find(pattern, origin, backwards=backwards)

    def _find_done(self) -> None:
        self._find_waiting = False
        found = self.reader.found
        self.reader.found = None
        if found is None:
            return
        line, message = found
        if line is None:
            self.notify(message, timeout=2)
            return
        if message:  # "wrapped around to the top"
            self.notify(message, timeout=2)
        self.current_match = line
        self._pause()
        height = max(1, self.size.height)
        window = self.window
        if window.filtering:
            self.notify("match is outside the filter; clear the filter to see it", timeout=2)
            return
        self._scroll_top_to(max(0, line - height // 3))

    # -- copy ---------------------------------------------------------------------------------
    def visible_text(self) -> str:
        """The rows on screen as plain text (what ``y`` copies)."""
        rows = self._visible_rows()
        # What is seen, not the raw bytes: a pasted copy must not carry escape sequences.
        return "\n".join(sanitize_terminal(text, keep_sgr=False) for _, text in rows)

    def action_copy(self) -> None:
        """Copy the visible lines to the clipboard (OSC 52, works over SSH)."""
        text = self.visible_text()
        self.app.copy_to_clipboard(text)
        count = text.count("\n") + 1 if text else 0
        self.notify(f"copied {count} lines to the clipboard", timeout=2)

    # -- rendering ------------------------------------------------------------------------------
    def _visible_rows(self) -> list[tuple[int, str]]:
        window = self.window
        height = max(1, self.size.height)
        rows = window.rows
        if self.follow:
            return rows[-height:]
        start = max(0, self.top - window.first)
        return rows[start : start + height]

    def _frame_rows(self, width: int, height: int) -> list[tuple[int | None, Text, bool]]:
        """(line, text, first-row-of-line) for each screen row."""
        out: list[tuple[int | None, Text, bool]] = []
        for line, raw in self._visible_rows():
            text = to_text(raw)
            self._apply_highlight(text, line)
            if not self.wrap:
                out.append((line, text, True))
                continue
            pieces = text.wrap(self.app.console, max(4, width), no_wrap=False) if text else [text]
            for i, piece in enumerate(pieces or [Text("")]):
                out.append((line, piece, i == 0))
        if self.wrap:
            out = out[-height:] if self.follow else out[:height]
        return out

    def _apply_highlight(self, text: Text, line: int) -> None:
        if self.highlight is None:
            return
        style = self.get_component_rich_style(
            "log-view--current" if line == self.current_match else "log-view--match",
            partial=True,
        )
        text.highlight_regex(self.highlight, style)

    def _gutter_width(self, window: Window) -> int:
        if not window.complete:
            return 0
        return len(str(max(1, window.line_count))) + 1

    def render_line(self, y: int) -> Strip:
        """One screen row, from the frame computed for the current state."""
        frame = self._get_frame()
        if y < len(frame):
            return frame[y]
        return Strip.blank(self.size.width, self.rich_style)

    def _get_frame(self) -> list[Strip]:
        window = self.window
        width, height = self.size.width, self.size.height
        key = (
            id(window),
            width,
            height,
            self.follow,
            self.top,
            self.pan,
            self.wrap,
            self.highlight.pattern if self.highlight else None,
            self.current_match,
            self.app.theme,
        )
        if self._frame is not None and key == self._frame_key:
            return self._frame
        self._frame_key = key
        self._frame = self._build_frame(window, width, height)
        self.redraws += 1
        self.last_window_shown = window
        return self._frame

    def _build_frame(self, window: Window, width: int, height: int) -> list[Strip]:
        base = self.rich_style
        if window.error or (not window.rows and window.total_rows == 0):
            message = window.error or (
                "no matching lines" if window.filtering else "(empty log; waiting for output)"
            )
            style = base + self.get_component_rich_style("log-view--message", partial=True)
            return [Strip([Segment(f" {message}".ljust(width)[:width], style)])]
        gutter_width = self._gutter_width(window)
        gutter_style = base + self.get_component_rich_style("log-view--gutter", partial=True)
        gap_style = base + self.get_component_rich_style("log-view--gap", partial=True)
        body_width = max(1, width - gutter_width - 1)
        strips: list[Strip] = []
        previous: int | None = None
        for line, text, first in self._frame_rows(body_width, height):
            segments: list[Segment] = []
            if gutter_width:
                gap = window.filtering and previous is not None and line != previous + 1 and first
                label = f"{line + 1}" if first and line is not None else ""
                segments.append(
                    Segment(
                        label.rjust(gutter_width - 1) + ("┊" if gap else " "),
                        gap_style if gap else gutter_style,
                    )
                )
            if first:
                previous = line
            body = list(text.render(self.app.console, end=""))
            body_strip = Strip(body)
            if not self.wrap and self.pan:
                body_strip = body_strip.crop(self.pan, self.pan + body_width)
            body_strip = body_strip.crop(0, body_width).extend_cell_length(body_width)
            segments.extend(
                Segment(s.text, base + s.style if s.style else base) for s in body_strip
            )
            strips.append(Strip(segments))
        strips = self._with_scrollbar(strips, window, width, height)
        return strips

    def _with_scrollbar(
        self, strips: list[Strip], window: Window, width: int, height: int
    ) -> list[Strip]:
        base = self.rich_style
        bar_style = base + self.get_component_rich_style("log-view--scrollbar", partial=True)
        total = max(1, window.total_rows)
        if total <= height:
            thumb = range(0)
        else:
            first = window.total_rows - height if self.follow else self.top
            size = max(1, height * height // total)
            start = min(height - size, first * height // total)
            thumb = range(start, start + size)
        out = []
        for y in range(height):
            strip = strips[y] if y < len(strips) else Strip.blank(width - 1, base)
            strip = strip.crop(0, width - 1).extend_cell_length(width - 1, base)
            mark = Segment("▐", bar_style) if y in thumb else Segment(" ", base)
            out.append(Strip([*strip, mark]))
        return out

    def refresh_now(self) -> None:
        """Drop the cached frame and redraw (used after theme changes)."""
        self._frame = None
        self.refresh()
