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
        "import core, core.store, core.engine, core.engine.monitor, core.engine.registry,"
        " core.settings"
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


def _module_level_imports(path: Path) -> list[str]:
    """Modules imported when ``path`` is imported: top-level statements (through if/try
    blocks), not function bodies, and not ``if TYPE_CHECKING:`` blocks."""
    import ast

    found: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.append(node.module)
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(ast.parse(path.read_text()).body)
    return found


def test_the_cli_imports_the_app_only_lazily() -> None:
    """The CLI opens the app, but imports it (and textual) only inside functions."""
    cli = ROOT / "nemorun_tui" / "cli.py"
    assert "from nemorun_tui.app import" in cli.read_text()  # it does open the app
    eager = [m for m in _module_level_imports(cli) if m.startswith(("nemorun_tui.app", "textual"))]
    assert eager == [], f"imported at module level: {eager}"
