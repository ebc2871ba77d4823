"""How the engine reaches a machine: this one (``local``) or another over SSH (``ssh``).

Both run commands and read files at offsets; :mod:`core.transport.follow` is the one
resumable follow loop their tails share. Only :mod:`core.transport.base` is imported here:
asyncssh loads when an SSH transport is first used.
"""

from core.transport.base import CommandResult, Transport, TransportError

__all__ = ["CommandResult", "Transport", "TransportError"]
