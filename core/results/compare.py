"""Compare two or more runs: only what differs, side by side.

Config differences come from each job's stored view (flattened, dotted paths; the same
:func:`core.serialize.flatten_document` form Detail's parent diff uses); a path whose value is
the same in every run is hidden. Jobs are paired by name, or, when each run has exactly one
job, with each other (two recipes' runs are still comparable). Nothing here imports user code
or reaches a cluster; final metrics are added by the caller, who has read them.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.engine import Engine

UNSET = None


@dataclass
class Row:
    """One differing path and each run's value (None: the run does not have it)."""

    path: str
    values: list[str | None]


@dataclass
class Comparison:
    runs: list[str]
    titles: list[str]
    jobs: list[list[str]]  # the paired job names, per pair, one per run
    config: list[Row] = field(default_factory=list)
    overrides: list[list[str]] = field(default_factory=list)
    provenance: list[Row] = field(default_factory=list)
    executors: list[Row] = field(default_factory=list)
    metrics: list[Row] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def rows(items: list[Row]) -> list[dict[str, Any]]:
            return [{"path": r.path, "values": r.values} for r in items]

        return {
            "runs": self.runs,
            "titles": self.titles,
            "states": self.states,
            "jobs": self.jobs,
            "config": rows(self.config),
            "overrides": self.overrides,
            "provenance": rows(self.provenance),
            "executors": rows(self.executors),
            "metrics": rows(self.metrics),
            "problems": self.problems,
        }


def differing(flats: list[dict[str, str]], prefix: str = "") -> list[Row]:
    """Rows for the paths whose value is not the same in every flat mapping."""
    paths: list[str] = []
    seen: set[str] = set()
    for flat in flats:
        for path in flat:
            if path not in seen:
                seen.add(path)
                paths.append(path)
    out = []
    for path in paths:
        values = [flat.get(path) for flat in flats]
        if len(set(values)) > 1:
            out.append(Row(prefix + path, values))
    return out


def pair_jobs(job_lists: list[list[str]]) -> list[list[str]]:
    common = [name for name in job_lists[0] if all(name in jobs for jobs in job_lists[1:])]
    if common:
        return [[name] * len(job_lists) for name in common]
    if all(len(jobs) == 1 for jobs in job_lists):
        return [[jobs[0] for jobs in job_lists]]
    return []


def _flat_executor(engine: Engine, exp_id: str, job: str) -> dict[str, str]:
    profile = engine.executor_of(exp_id, job)
    data = profile.to_dict()
    data["env_vars"] = profile.redacted_env()
    data.pop("secret_env", None)
    out = {}
    for key, value in data.items():
        if value in (None, [], {}, ""):
            continue
        out[key] = (
            json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)
        )
    return out


def _flat_provenance(engine: Engine, exp_id: str, job: str) -> dict[str, str]:
    prov = engine.provenance_of(exp_id, job) or {}
    out = {}
    for key in ("packager", "git_commit", "git_branch", "archive_sha256", "dirty_diff_sha256"):
        if prov.get(key):
            out[key] = str(prov[key])
    dirty = prov.get("dirty_files") or []
    if dirty:
        out["dirty_files"] = ", ".join(str(d) for d in dirty[:20])
    return out or {"packager": "(none recorded)"}


def compare(engine: Engine, exp_ids: list[str]) -> Comparison:
    """Differences of the runs' configs, overrides, code and executors (no metrics yet)."""
    if len(exp_ids) < 2:
        raise ValueError("compare needs at least two runs")
    records = [engine.store.load(exp_id) for exp_id in exp_ids]
    pairs = pair_jobs([[j.name for j in r.jobs] for r in records])
    out = Comparison(
        runs=[r.id for r in records],
        titles=[r.title for r in records],
        jobs=pairs,
        overrides=[list(r.overrides) for r in records],
        states=[r.state.value for r in records],
    )
    if not pairs:
        out.problems.append("the runs have no job in common to compare")
    for names in pairs:
        prefix = "" if len(pairs) == 1 else f"{names[0]}: "
        flats, execs, provs = [], [], []
        for record, name in zip(records, names, strict=True):
            flat: dict[str, str] = {}
            try:
                view = engine.task_view(record.id, name)
                flat = dict(view.flat)
            except Exception as exc:
                out.problems.append(f"{record.id}/{name}: config unavailable ({exc})")
            flats.append(flat)
            try:
                execs.append(_flat_executor(engine, record.id, name))
            except Exception as exc:
                out.problems.append(f"{record.id}/{name}: executor unavailable ({exc})")
                execs.append({})
            prov: dict[str, str] = {}
            with contextlib.suppress(OSError, ValueError):
                prov = _flat_provenance(engine, record.id, name)
            provs.append(prov)
        out.config += differing(flats, prefix)
        out.executors += differing(execs, prefix)
        out.provenance += differing(provs, prefix)
    return out


def add_final_metrics(out: Comparison, finals: list[dict[str, float]]) -> None:
    """Rows of each run's last metric values (every metric, even equal ones: numbers that
    agree are worth seeing next to each other)."""
    names: list[str] = []
    for final in finals:
        for name in final:
            if name not in names:
                names.append(name)
    out.metrics = [
        Row(name, [None if name not in f else f"{f[name]:.6g}" for f in finals])
        for name in sorted(names)
    ]
