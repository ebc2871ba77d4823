"""Command-palette providers (ctrl+p).

:class:`RunsProvider` opens a run by id, id prefix or title. It searches the summaries the
app already holds from its last listing, so typing in the palette never touches the disk,
and it caps its hits so a store of 10,000 runs stays instant. Pane switching, relaunch,
cancel and themes come from :meth:`NemorunApp.get_system_commands`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.markup import escape

from nemorun_tui.widgets.format import cell, state_label, when

MAX_HITS = 30


class RunsProvider(Provider):
    """``open <run>``: jump to an experiment in Runs and show its Detail."""

    def _summaries(self) -> list[Any]:
        app: Any = self.app
        return sorted(app.summaries.values(), key=lambda s: s.created_at, reverse=True)

    async def discover(self) -> Hits:
        """The ten most recent runs."""
        for summary in self._summaries()[:10]:
            yield DiscoveryHit(
                _text(f"Open run {summary.id}"),
                partial(self._open, summary.id),
                help=_text(
                    f"{state_label(summary.state)} · {summary.title} · {when(summary.created_at)}"
                ),
            )

    async def search(self, query: str) -> Hits:
        """Runs whose id or title matches what was typed (substring first, then fuzzy)."""
        matcher = self.matcher(query)
        hits = 0
        app: Any = self.app
        needle = query.lower().removeprefix("open").strip()
        summaries = list(app.summaries.values())
        exact = [s for s in summaries if needle and (needle in s.id or needle in s.title.lower())]
        candidates = exact if exact else summaries[:2000]
        for summary in candidates:
            text = f"open {summary.id} {summary.title}"
            score = 1.0 if summary in exact else matcher.match(text)
            if score <= 0:
                continue
            yield Hit(
                score,
                matcher.highlight(_text(f"Open run {summary.id}  ({summary.title})")),
                partial(self._open, summary.id),
                help=_text(f"{state_label(summary.state)} · {when(summary.created_at)}"),
            )
            hits += 1
            if hits >= MAX_HITS:
                return

    def _open(self, exp_id: str) -> None:
        app: Any = self.app
        app.open_run(exp_id)


def _text(value: str) -> str:
    """The palette reads prompts and help as markup: a title must stay text, controls shown.

    (A highlight can land a few cells off in a title holding ``[tag]``-like text; the
    palette gives no plain-text highlight.)
    """
    return escape(cell(value))
