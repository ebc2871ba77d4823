"""Answer an SSH server's interactive question (2FA code, password) inside the app.

The SSH transport runs on the engine thread; it calls :func:`make_prompt_handler`'s handler,
which shows :class:`AuthPromptScreen` on the UI thread and waits (without blocking the UI)
for the answers. Hidden prompts use a password input; nothing typed is logged or stored.
Every string shown comes from the SSH server, so it is shown as text: no markup, no
terminal sequences.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from core.textsafe import sanitize_terminal

if TYPE_CHECKING:
    from textual.app import App


class AuthPromptScreen(ModalScreen[list[str] | None]):
    """One input per prompt; enter on the last submits, escape refuses (None)."""

    DEFAULT_CSS = """
    AuthPromptScreen { align: center middle; }
    AuthPromptScreen > Vertical {
        width: 70; max-width: 95%; height: auto;
        border: thick $warning; background: $surface; padding: 1 2;
    }
    AuthPromptScreen .label { margin-top: 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "refuse", "Cancel")]

    def __init__(self, title: str, instructions: str, prompts: list[tuple[str, bool]]) -> None:
        super().__init__()
        self.title_text = title
        self.instructions = instructions
        self.prompts = prompts

    def compose(self) -> ComposeResult:
        with Vertical():
            yield _text(self.title_text or "The SSH server asks:", id="auth-title")
            if self.instructions:
                yield _text(self.instructions, id="auth-instructions")
            for i, (text, echo) in enumerate(self.prompts):
                yield _text(text, classes="label")
                yield Input(password=not echo, id=f"answer-{i}")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        index = inputs.index(event.input)
        if index + 1 < len(inputs):
            inputs[index + 1].focus()
        else:
            self.dismiss([i.value for i in inputs])

    def action_refuse(self) -> None:
        """Escape: do not answer (the authentication method is refused)."""
        self.dismiss(None)


def _text(text: str, **kw: Any) -> Static:
    return Static(sanitize_terminal(text, keep_sgr=False), markup=False, **kw)


def make_prompt_handler(app: App[Any]) -> Any:
    """A ``core.transport.prompts`` handler asking through ``app`` from any thread's loop."""

    async def handler(
        name: str, instructions: str, prompts: list[tuple[str, bool]]
    ) -> list[str] | None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[str] | None] = loop.create_future()

        def done(result: list[str] | None) -> None:
            loop.call_soon_threadsafe(answer.set_result, result)

        app.call_from_thread(app.push_screen, AuthPromptScreen(name, instructions, prompts), done)
        return await answer

    return handler
