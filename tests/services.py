"""Shared by tests that need a real service (Slurm, sshd): skip locally, fail under CI."""

from __future__ import annotations

import os

import pytest


def require_service(available: bool, reason: str) -> None:
    """Skip when the service is missing, except under ``CI=true`` where it must be running."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the service must be running)")
    pytest.skip(reason)
