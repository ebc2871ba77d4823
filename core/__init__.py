"""nemorun-tui's engine: configs, recipes, store, protocol, monitor. No UI, no backend code.

Importing ``core`` is cheap on purpose (fiddle and every client library load on first use).
"""

__all__: list[str] = []
