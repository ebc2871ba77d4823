"""Importing NeMo Run stores (issue 16): seconds to import 200 experiments, and to list them.

The 200 experiments are copies of the ones NeMo Run 0.11.1 wrote in
tests/fixtures/nemorun_stores (LocalExecutor scripts and Partials, Slurm over LocalTunnel:
the SSH and Docker ones are left out, so the figure is disk and decoding, not the network),
each under a fresh ``<title>_<time_ns>`` id with its ``.local_jobs.json`` entries. 20 are
imported in the same run as the reference: 200 should take about 10x as long (linear), not
more. Then ``nemorun-tui ls`` over the imported store, as a user would list them.
NeMo Run's own figure for comparison (NEMO_RUN_NOTES.md): load + status of 200 stored
experiments ≈ 1.3 s, with NeMo Run installed.

Run: ``python bench/bench_import.py``
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import BIN, ROOT, figure, time_command

FIXTURE = ROOT / "tests" / "fixtures" / "nemorun_stores" / "home"
TITLES = ("local-scripts", "local-partial", "slurm-local")


def make_source(dest: Path, n: int) -> Path:
    """A NeMo Run home of ``n`` experiments copied from the fixtures under new ids."""
    registry = json.loads((FIXTURE / ".local_jobs.json").read_text())
    new_registry: dict[str, object] = {}
    originals = [
        path for title in TITLES for path in sorted((FIXTURE / "experiments" / title).iterdir())
    ]
    base = time.time_ns()
    for i in range(n):
        original = originals[i % len(originals)]
        title = original.parent.name
        new_id = f"{title}_{base + i}"
        target = dest / "experiments" / title / new_id
        shutil.copytree(original, target, symlinks=True)
        for app_id, entry in registry.items():
            if original.name in str(entry[2]):
                new_app = f"{app_id}-{i}"
                new_registry[new_app] = entry
                # the app id is the last part of the job's handle: rename its folder to match
                for folder in target.glob(f"*/nemo_run/{app_id}"):
                    folder.rename(folder.with_name(new_app))
                tasks = target / "_TASKS"
                tasks.write_text(_rehandle(tasks.read_text(), app_id, new_app))
    (dest / ".local_jobs.json").write_text(json.dumps(new_registry))
    return dest


def _rehandle(tasks_text: str, old: str, new: str) -> str:
    """Rewrite a job's handle inside _TASKS (fiddle JSON, zlib, base64) to its new app id."""
    import base64
    import zlib

    out = []
    for job, task in json.loads(tasks_text):
        data = zlib.decompress(base64.urlsafe_b64decode(job)).decode()
        if old in data:
            data = data.replace(old, new)
            job = base64.urlsafe_b64encode(zlib.compress(data.encode())).decode()
        out.append([job, task])
    return json.dumps(out)


def import_seconds(n: int, work: Path) -> tuple[float, Path]:
    from core.importers.nemo_run import import_store
    from core.store import Store

    source = make_source(work / f"nemo-{n}", n)
    home = work / f"home-{n}"
    start = time.perf_counter()
    result = asyncio.run(import_store(Store(home), source))
    took = time.perf_counter() - start
    if len(result.imported) != n or result.damaged:
        raise SystemExit(f"import of {n}: {len(result.imported)} imported, {result.damaged[:3]}")
    return took, home


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="nrt-bench-import-"))
    try:
        small, _ = import_seconds(20, work)
        large, home = import_seconds(200, work)
        figure("import 20 NeMo Run experiments (reference)", small)
        figure("import 200 NeMo Run experiments", large, budget=max(15 * small, 2.0))
        figure("  per experiment (200)", large / 200 * 1000, unit="ms")
        env = {**os.environ, "NEMORUN_TUI_HOME": str(home)}
        figure(
            "nemorun-tui ls after importing 200",
            time_command([str(BIN / "nemorun-tui"), "ls"], env=env),
        )
        figure(
            "nemorun-tui ls --json after importing 200",
            time_command([str(BIN / "nemorun-tui"), "ls", "--json"], env=env),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
