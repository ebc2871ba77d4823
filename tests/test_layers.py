"""The three layers stay apart, and the CLI path stays light (non-negotiable 4)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["textual", "fiddle", "libcst", "asyncssh", "docker", "kubernetes", "git", "ray"]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_core_pulls_in_no_heavy_library() -> None:
    loaded = _modules_after(
        "import core, core.store, core.engine, core.monitor, core.registry, core.settings"
    )
    assert [m for m in HEAVY if m in loaded] == []


def test_import_nemorun_tui_and_cli_do_not_import_textual() -> None:
    loaded = _modules_after("import nemorun_tui, nemorun_tui.cli")
    assert "textual" not in loaded
    assert "fiddle" not in loaded


def test_import_linter_contracts_hold() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run([exe], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower() or "0 broken" in result.stdout.lower()
