"""The local backend: jobs run detached on this machine, their state kept in files.

See :mod:`backends.local.backend` for the engine-facing class and
:mod:`backends.local.supervisor` for the per-job supervisor process and the file protocol.
"""

from backends.local.backend import LocalBackend

__all__ = ["LocalBackend"]
