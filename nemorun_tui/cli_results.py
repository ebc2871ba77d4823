"""``metrics``, ``artifacts``, ``fetch`` and ``diff``: what runs produced, from the shell.

Kept out of :mod:`nemorun_tui.cli` so that module stays a router; like it, this imports
nothing heavy at import time (the readers load when a command runs). Output follows the
CLI's rules: data and ``--json`` on stdout, progress on stderr, every stored or remote
string printed as text (controls escaped), exit 1 when what was asked for is not there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.engine import Engine
    from core.store import ExperimentRecord

EXIT_OK, EXIT_FAILED = 0, 1


# -- arguments ------------------------------------------------------------------------------
def metrics_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("exp", metavar="EXP")
    p.add_argument("job", nargs="?", metavar="JOB", help="default: every job")
    p.add_argument("--name", help="print this metric's whole series instead of last values")
    p.add_argument("--json", action="store_true")


def artifacts_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("exp", metavar="EXP")
    p.add_argument("job", nargs="?", metavar="JOB", help="default: every job")
    p.add_argument("--json", action="store_true")


def fetch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("exp", metavar="EXP")
    p.add_argument("path", metavar="PATH", help="the artifact's path, as `artifacts` lists it")
    p.add_argument("dest", nargs="?", metavar="DEST", help="file or folder (default: here)")
    p.add_argument("--job", help="the job (default: the only job, or the one holding PATH)")


def diff_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("exps", nargs="+", metavar="EXP", help="two or more experiments")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-metrics", action="store_true", help="do not read final metrics")


# -- helpers --------------------------------------------------------------------------------
def _cell(text: object) -> str:
    from core.textsafe import escape_cell

    return escape_cell(str(text))


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _jobs(record: ExperimentRecord, job: str | None) -> list[str]:
    if job:
        return [record.job(job).name]
    return [j.name for j in record.jobs if j.handle is not None] or [j.name for j in record.jobs]


async def _closing(coro: Any) -> Any:
    from core.engine import registry

    try:
        return await coro
    finally:
        await registry.close_all()


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


# -- metrics --------------------------------------------------------------------------------
def cmd_metrics(args: argparse.Namespace, engine: Engine) -> int:
    from core.results.jobs import read_metrics

    exp_id = engine.store.resolve(args.exp)
    record = engine.store.load(exp_id)
    names = _jobs(record, args.job)

    async def read_all() -> list[Any]:
        out: list[Any] = []
        for name in names:
            try:
                out.append((name, await read_metrics(engine, exp_id, name), None))
            except Exception as exc:  # one job's unreachable files do not hide the others
                out.append((name, None, exc))
        return out

    results = asyncio.run(_closing(read_all()))
    found_any = False
    data: dict[str, Any] = {}
    for name, snap, exc in results:
        if snap is None:
            print(f"nemorun-tui: {_cell(name)}: {_cell(exc)}", file=sys.stderr)
            data[name] = {"error": str(exc)}
            continue
        for problem in snap.problems:
            print(f"nemorun-tui: {_cell(name)}: {_cell(problem)}", file=sys.stderr)
        if args.name:
            series = snap.series.get(args.name)
            if series is None:
                known = ", ".join(sorted(snap.series)) or "none"
                print(
                    f"nemorun-tui: {_cell(name)}: no metric {_cell(args.name)} (known: "
                    f"{_cell(known)})",
                    file=sys.stderr,
                )
                continue
            found_any = True
            data[name] = series.to_dict()
            if not args.json:
                print(f"# {_cell(name)} {_cell(args.name)} ({_cell(series.source)})")
                for point in series.to_dict()["points"]:
                    when = "" if point["time"] is None else f"  {point['time']:.3f}"
                    print(f"{point['step']}\t{point['value']}{when}")
            continue
        metrics = {}
        for metric, series in snap.series.items():
            last = series.last()
            if last is None:
                continue
            found_any = True
            metrics[metric] = {
                "last": last[1],
                "step": last[0],
                "time": last[2],
                "points": len(series),
                "source": series.source,
            }
        data[name] = {"metrics": metrics, "files": snap.files, "problems": snap.problems}
        if not args.json:
            if not metrics:
                print(f"{_cell(name)}: no metrics found", file=sys.stderr)
                continue
            print(f"{'JOB':<14} {'METRIC':<28} {'LAST':>12} {'STEP':>8} {'POINTS':>7}  SOURCE")
            for metric, m in sorted(metrics.items()):
                print(
                    f"{_cell(name):<14} {_cell(metric):<28} {m['last']:>12.6g} "
                    f"{m['step']:>8g} {m['points']:>7}  {_cell(m['source'])}"
                )
    if args.json:
        _print_json({"experiment": exp_id, "jobs": data})
    return EXIT_OK if found_any else EXIT_FAILED


# -- artifacts / fetch ----------------------------------------------------------------------
def cmd_artifacts(args: argparse.Namespace, engine: Engine) -> int:
    from core.results.jobs import artifacts

    exp_id = engine.store.resolve(args.exp)
    record = engine.store.load(exp_id)
    names = _jobs(record, args.job)

    async def list_all() -> list[Any]:
        out: list[Any] = []
        for name in names:
            try:
                out.append((name, await artifacts(engine, exp_id, name), None))
            except Exception as exc:
                out.append((name, None, exc))
        return out

    results = asyncio.run(_closing(list_all()))
    data = {}
    any_found = False
    for name, listing, exc in results:
        if listing is None:
            print(f"nemorun-tui: {_cell(name)}: {_cell(exc)}", file=sys.stderr)
            data[name] = {"error": str(exc)}
            continue
        if listing.problem:
            print(f"nemorun-tui: {_cell(name)}: {_cell(listing.problem)}", file=sys.stderr)
        data[name] = listing.to_dict()
        any_found = any_found or bool(listing.artifacts)
        if args.json:
            continue
        print(f"# {_cell(name)}: {_cell(listing.job_dir)} ({_cell(listing.target)})")
        for a in listing.artifacts:
            mark = "ckpt" if a.checkpoint else ("dir" if a.kind == "d" else "")
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a.mtime))
            digest = a.sha256[:12] if a.sha256 else "-"
            size = "-" if a.kind == "d" else _size(a.size)
            print(f"{_cell(a.path):<48} {size:>10} {when}  {mark:<4} {digest}")
    if args.json:
        _print_json({"experiment": exp_id, "jobs": data})
    return EXIT_OK if any_found else EXIT_FAILED


def cmd_fetch(args: argparse.Namespace, engine: Engine) -> int:
    from core.progress import RateMeter, describe_transfer
    from core.results.fetch import FetchError, fetch, source_path
    from core.results.jobs import artifacts
    from core.results.locate import locate

    exp_id = engine.store.resolve(args.exp)
    record = engine.store.load(exp_id)
    names = _jobs(record, args.job)
    meter = RateMeter(
        lambda done, total, rate: print(
            f"\rfetch {describe_transfer(done, total, rate)}", end="", file=sys.stderr, flush=True
        ),
        min_interval=0.5,
    )

    async def go() -> Any:
        holder: Any = None
        for name in names:
            listing = await artifacts(engine, exp_id, name)
            item = listing.find(args.path)
            if item is not None:
                holder = (name, listing, item)
                break
        if holder is None:
            if len(names) != 1:
                raise FetchError(f"no job of {exp_id} lists {args.path} (see `artifacts`)")
            holder = (names[0], None, None)
        name, listing, item = holder
        if item is not None and item.kind == "d":
            raise FetchError(f"{args.path} is a folder; fetch its files one by one")
        outputs = await locate(engine, exp_id, name)
        source = source_path(outputs, args.path, allow_outside=item is not None)
        dest = Path(args.dest) if args.dest else Path.cwd()
        if dest.is_dir() or (args.dest or "").endswith("/"):
            dest = dest / Path(args.path).name
        return await fetch(outputs, source, dest, progress=meter)

    try:
        result = asyncio.run(_closing(go()))
    except (FetchError, FileNotFoundError) as exc:
        print(file=sys.stderr)
        print(f"nemorun-tui: error: {_cell(exc)}", file=sys.stderr)
        return EXIT_FAILED
    print(file=sys.stderr)
    resumed = f", resumed from {result.resumed_from} bytes" if result.resumed_from else ""
    print(
        f"fetched {_cell(result.source)} ({result.size} bytes, sha256 {result.sha256[:12]} "
        f"verified{resumed})",
        file=sys.stderr,
    )
    print(result.dest)
    return EXIT_OK


# -- diff -----------------------------------------------------------------------------------
def cmd_diff(args: argparse.Namespace, engine: Engine) -> int:
    from core.results.compare import add_final_metrics, compare

    if len(args.exps) < 2:
        print("nemorun-tui: error: diff needs two or more experiments", file=sys.stderr)
        return 2
    ids = [engine.store.resolve(ref) for ref in args.exps]
    out = compare(engine, ids)
    if not args.no_metrics and out.jobs:
        finals = asyncio.run(_closing(final_metrics(engine, ids, out.jobs[0])))
        add_final_metrics(out, finals)
    if args.json:
        _print_json(out.to_dict())
        return EXIT_OK
    for i, (run, title) in enumerate(zip(out.runs, out.titles, strict=True)):
        print(f"[{i + 1}] {_cell(run)}  {_cell(title)}  {out.states[i]}")
    sections = (
        ("config", out.config),
        ("code", out.provenance),
        ("executor", out.executors),
        ("final metrics", out.metrics),
    )
    print("\noverrides")
    for i, overrides in enumerate(out.overrides):
        print(f"  [{i + 1}] {_cell(' '.join(overrides)) or '(none)'}")
    for heading, rows in sections:
        print(f"\n{heading}" + ("" if rows else ": no differences"))
        for row in rows:
            print(f"  {_cell(row.path)}")
            for i, value in enumerate(row.values):
                print(f"    [{i + 1}] {'(unset)' if value is None else _cell(value)}")
    for problem in out.problems:
        print(f"nemorun-tui: {_cell(problem)}", file=sys.stderr)
    return EXIT_OK


async def final_metrics(engine: Engine, ids: list[str], jobs: list[str]) -> list[dict[str, float]]:
    """The last value of every metric of each run's paired job ({} when unreadable)."""
    from core.results.jobs import read_metrics

    finals = []
    for exp_id, job in zip(ids, jobs, strict=True):
        try:
            finals.append((await read_metrics(engine, exp_id, job)).last_values())
        except Exception:
            finals.append({})
    return finals


# -- status --json ----------------------------------------------------------------------------
def causes(engine: Engine, record: ExperimentRecord) -> dict[str, dict[str, Any] | None]:
    """The failure cause of each job that has one (``status --json``)."""
    from core.results.triage import triage

    async def all_causes() -> dict[str, dict[str, Any] | None]:
        out: dict[str, dict[str, Any] | None] = {}
        for job in record.jobs:
            try:
                cause = await triage(engine, record.id, job.name)
            except Exception as exc:
                out[job.name] = {"kind": "unavailable", "summary": str(exc), "lines": []}
                continue
            out[job.name] = cause.to_dict() if cause else None
        return out

    result: dict[str, dict[str, Any] | None] = asyncio.run(_closing(all_causes()))
    return result


async def record_results(engine: Engine, record: ExperimentRecord, *, quiet: bool) -> None:
    """After ``run``/``relaunch`` waited: record each job's artifacts and say why a failed job
    failed (one stderr line each), within a bound so a slow cluster cannot hold the exit."""
    from core.results.jobs import record_end

    async def each() -> None:
        for job in record.jobs:
            if job.handle is None:
                continue
            cause = await record_end(engine, record.id, job.name)
            if cause is not None and not quiet and cause.kind != "cancelled":
                where = " (see logs --stderr)" if cause.stream == "stderr" else ""
                print(
                    f"[{time.strftime('%H:%M:%S')}] {_cell(job.name)}: {_cell(cause.summary)}"
                    f"{where}",
                    file=sys.stderr,
                    flush=True,
                )

    try:
        await asyncio.wait_for(each(), timeout=30)
    except TimeoutError:
        print("nemorun-tui: recording artifacts took too long; skipped", file=sys.stderr)
