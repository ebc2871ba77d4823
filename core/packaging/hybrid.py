"""``HybridPackager``: several packagers merged into one archive.

Typical use: the training repo by git plus a directory of configs by pattern. Each
sub-packager's files land under a folder named after it (``{"code": ..., "configs": ...}``
gives ``code/…`` and ``configs/…``) unless ``extract_at_root``, where they are overlaid at
the archive root; two sub-packagers providing the same file is then an error, because
silently picking one would make "what ran" ambiguous.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from core.packaging.archive import clean_arcname
from core.packaging.base import (
    Collected,
    Packager,
    PackagingError,
    as_packager,
)
from core.packaging.provenance import Provenance


@dataclass
class HybridPackager(Packager):
    """Merge ``sub_packagers`` (name → packager, or its stored dict) into one archive."""

    sub_packagers: dict[str, Any] = field(default_factory=dict)
    extract_at_root: bool = False

    def __post_init__(self) -> None:
        self.sub_packagers = {
            str(name): as_packager(p) for name, p in dict(self.sub_packagers).items()
        }
        if not self.extract_at_root:
            for name in self.sub_packagers:
                clean_arcname(name)  # a folder name: no "..", not empty

    def collect(self, stack: contextlib.ExitStack) -> Collected | None:
        entries = []
        owner: dict[str, str] = {}
        subs: dict[str, Provenance] = {}
        warnings: list[str] = []
        for name in sorted(self.sub_packagers):
            collected = self.sub_packagers[name].collect(stack)
            if collected is None:
                continue
            subs[name] = collected.provenance
            warnings += [f"[{name}] {w}" for w in collected.warnings]
            for entry in collected.entries:
                path = entry.path if self.extract_at_root else f"{name}/{entry.path}"
                if entry.kind == "dir":
                    continue  # parents are re-derived by the archive writer
                if path in owner:
                    raise PackagingError(
                        f"HybridPackager: {path!r} is provided by both {owner[path]!r} and "
                        f"{name!r}; use extract_at_root=False or narrow a pattern"
                    )
                owner[path] = name
                entries.append(entry if path == entry.path else entry.with_path(path))
        if not subs:
            return None
        prov = Provenance(self.type_name, self.to_dict(), sub=subs)
        return Collected(entries, prov, warnings)
