"""Where interactive authentication questions (2FA codes, passwords) are answered.

A tiny module on purpose: the app installs its handler at start-up without importing the
SSH transport (and asyncssh); the transport asks whatever handler is installed when a
server sends a keyboard-interactive challenge.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

#: ``handler(name, instructions, [(prompt, echo), ...])`` returns the answers (or an
#: awaitable of them); None means "cannot answer" and the authentication method is refused.
PromptHandler = Callable[
    [str, str, list[tuple[str, bool]]],
    "list[str] | Awaitable[list[str] | None] | None",
]

_handler: PromptHandler | None = None


def set_prompt_handler(handler: PromptHandler | None) -> None:
    """Install the process-wide handler (the TUI shows a modal; the CLI uses the terminal)."""
    global _handler
    _handler = handler


def prompt_handler() -> PromptHandler | None:
    """The installed handler, if any."""
    return _handler
