"""``nemorun-tui recipes [RECIPE]``: what a workspace offers, and what one recipe takes.

The listing names the recipes and the ``@factory`` sub-configs (a factory is a value:
``trainer=small_trainer``); one recipe shows every field with its type and the value the
recipe gives it, so ``KEY=VALUE`` can be written without reading the workspace's code.
Runs in the CLI's process, which imports the workspace anyway to launch it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

EXIT_OK = 0


def list_recipes(ws: Any, *, as_json: bool) -> int:
    recipes = sorted(ws.recipes.values(), key=lambda r: r.name)
    factories = sorted(ws.factory_recipes.values(), key=lambda r: r.name)
    if as_json:
        rows = [
            {"name": r.name, "help": r.help or "", "module": r.module, "kind": r.kind}
            for r in (*recipes, *factories)
        ]
        sys.stdout.write(json.dumps(rows, indent=2, sort_keys=True) + "\n")
        return EXIT_OK
    from core.textsafe import escape_cell as cell

    lines = [f"{cell(r.name):<20} {cell(r.help or '')}".rstrip() for r in recipes]
    if factories:
        lines += ["", "factories (a field's value, e.g. trainer=NAME):"]
        lines += [f"  {cell(r.name):<18} {cell(r.help or '')}".rstrip() for r in factories]
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def show_recipe(ws: Any, name: str, *, as_json: bool) -> int:
    """One recipe (or factory): its fields, types and values; see :mod:`core.fields`."""
    from core.fields import describe_fields

    found = ws.factory_recipes.get(name) or _recipe(ws, name)
    task = found.make()
    fields = describe_fields(task) if _is_task(task) else []
    if as_json:
        data = {
            "name": found.name,
            "kind": found.kind,
            "help": found.help or "",
            "fields": [f.to_dict() for f in fields],
        }
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return EXIT_OK
    from core.textsafe import escape_cell as cell

    lines = [cell(found.describe().splitlines()[0]), *found.describe().splitlines()[1:]]
    if not fields:
        lines.append("  (no fields)")
    else:
        width = min(36, max(len(f.path) for f in fields))
        type_width = min(28, max(len(f.type) for f in fields) or 4)
        lines.append(f"  {'FIELD':<{width}}  {'TYPE':<{type_width}}  VALUE")
        for f in fields:
            mark = "" if f.explicit else "  (default)"
            lines.append(
                f"  {cell(f.path):<{width}}  {cell(f.type) or '-':<{type_width}}  "
                f"{cell(f.value)}{mark}"
            )
    lines.append(f"  set with: nemorun-tui run {found.name} FIELD=VALUE ...")
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _recipe(ws: Any, name: str) -> Any:
    """The recipe; unknown, one line naming close recipes and every factory too."""
    import difflib

    from core.recipes import UnknownRecipeError

    try:
        return ws.get(name)
    except UnknownRecipeError as exc:
        factories = sorted(ws.factory_recipes)
        if not factories:
            raise
        close = difflib.get_close_matches(name, factories, n=1, cutoff=0.6)
        hint = f"; the factory `{close[0]}`?" if close else ""
        shown = ", ".join(factories[:12]) + (", ..." if len(factories) > 12 else "")
        raise UnknownRecipeError(f"{exc}{hint} (factories: {shown})") from None


def _is_task(value: Any) -> bool:
    from core.config import task_kind

    try:
        task_kind(value)
    except TypeError:
        return False
    return True
