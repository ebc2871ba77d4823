"""What a plan will run, as data: the call with its arguments, packaging, env, where.

A backend's dry run (:meth:`core.engine.Engine.dryrun`) shows what it would *submit*: for a
Partial that is ``python -m core.runner <task.json>``, which says nothing about what runs. A
preview says it: the function and the config tree it is called with (every field, the
recipe's values and the signature's defaults apart), how the code gets there (the packager
and its settings, or the parent's archive reused), the environment with secret values
redacted, the working directory and the dependencies.

It is cheap and has no side effects (no store write, no scheduler, no git unless asked), and
never imports user code: a live task is read in place, a stored one (the app's plans hold
stored documents built by its workspace helper) through its view. So a front end can call
:func:`preview_plan` again every time a field changes.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.engine.engine import Plan, PlannedJob

#: What replaces a secret's value wherever a preview shows it.
REDACTED = "***"


@dataclass(frozen=True)
class JobPreview:
    """One job of a plan as it will run (see the module docstring)."""

    job: str
    #: ``backend/profile`` as listings show it (``local``, ``slurm/ci``).
    executor: str
    #: ``config``, ``partial`` or ``script``.
    kind: str
    #: The callable, as ``module.qualname`` (a script: ``Script``).
    function: str
    #: Dotted field -> display value, signature defaults included where known.
    fields: dict[str, str]
    #: The fields the recipe or an override set (the rest are defaults).
    explicit: frozenset[str]
    #: How the code reaches the job, in one line.
    packaging: str
    #: Environment the job gets from its profile; secret values are :data:`REDACTED`.
    env: dict[str, str]
    workdir: str
    dependencies: tuple[str, ...] = ()
    #: The command for a script (its argv, quoted as a shell would need it); "" otherwise.
    command: str = ""
    #: Packaging warnings found by a preflight (a dirty tree…), when one was asked for.
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def text(self) -> str:
        """The preview as readable lines (what ``run --dryrun`` prints first)."""
        lines = [f"# job {self.job} on {self.executor}"]
        if self.kind == "script":
            lines.append(f"runs: {self.command}")
        else:
            how = "calls" if self.kind == "partial" else "builds"
            lines.append(f"{how}: {self.function}(...)")
        shown = {k: v for k, v in self.fields.items() if k != "__fn__"}
        if shown and self.kind != "script":
            width = min(40, max(len(k) for k in shown))
            for path, value in shown.items():
                if path.endswith("__fn__"):
                    path = path[: -len(".__fn__")]
                    value = f"{value}(...)"
                mark = "" if path in self.explicit or value.endswith("(...)") else "  (default)"
                lines.append(f"  {path:<{width}} = {value}{mark}")
        lines.append(f"packaging: {self.packaging}")
        for warning in self.warnings:
            lines.append(f"  warning: {warning}")
        lines.append(f"workdir: {self.workdir}")
        if self.env:
            lines.append("env:")
            lines += [f"  {k}={v}" for k, v in sorted(self.env.items())]
        else:
            lines.append("env: (none set by the profile)")
        if self.dependencies:
            lines.append(f"after: {', '.join(self.dependencies)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "executor": self.executor,
            "kind": self.kind,
            "function": self.function,
            "fields": dict(self.fields),
            "explicit": sorted(self.explicit),
            "packaging": self.packaging,
            "env": dict(self.env),
            "workdir": self.workdir,
            "dependencies": list(self.dependencies),
            "command": self.command,
            "warnings": list(self.warnings),
        }


def preview_plan(plan: Plan, *, preflight: bool = False) -> list[JobPreview]:
    """Every job of ``plan`` as it will run; ``preflight`` also asks each packager what it
    would warn about (runs ``git`` listings: leave it off on every keystroke)."""
    deps = plan.effective_dependencies()
    workdir = plan.workdir or os.getcwd()
    return [_job_preview(job, deps[job.name], workdir, preflight) for job in plan.jobs]


def _job_preview(job: PlannedJob, deps: list[str], workdir: str, preflight: bool) -> JobPreview:
    from core.serialize import StoredTask
    from core.store.records import executor_label

    stored = job.task if isinstance(job.task, StoredTask) else StoredTask.of(job.task)
    view = stored.view_or_document()
    command = ""
    env = redacted_env(job.executor)
    if stored.kind == "script":
        import sys

        script = stored.script()
        command = shlex.join(script.argv(sys.executable))
        env.update({k: REDACTED if _looks_secret(k) else str(v) for k, v in script.env.items()})
    packaging, warnings = _packaging(job, preflight)
    return JobPreview(
        job=job.name,
        executor=executor_label(job.executor.backend, job.executor.profile_name),
        kind=stored.kind,
        function=_function_of(stored.document),
        fields=_redacted_fields(view.flat, set(job.executor.secret_env)),
        explicit=frozenset(view.explicit),
        packaging=packaging,
        env=env,
        workdir=workdir,
        dependencies=tuple(deps),
        command=command,
        warnings=tuple(warnings),
    )


def redacted_env(profile: Any) -> dict[str, str]:
    """The profile's env; every secret (and every variable named like one) as ``***``."""
    shown: dict[str, str] = {}
    for name, value in dict(profile.env_vars).items():
        shown[name] = REDACTED if _looks_secret(name) else str(value)
    for name in profile.secret_env:
        shown[name] = REDACTED
    return shown


_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "APIKEY", "CREDENTIAL")


def _looks_secret(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in _SECRET_WORDS)


def _redacted_fields(flat: dict[str, str], secret_names: set[str]) -> dict[str, str]:
    """Field values, with any field named like a secret (``env.HF_TOKEN``,
    ``api_key``) shown as ``***``: a preview is shown and pasted around."""
    out = {}
    for path, value in flat.items():
        name = path.rsplit(".", 1)[-1]
        out[path] = REDACTED if name in secret_names or _looks_secret(name) else value
    return out


def _function_of(document: str) -> str:
    try:
        node = json.loads(document).get("task") or {}
    except (ValueError, AttributeError):
        return "?"
    if node.get("type") == "script":
        return "Script"
    ref = node.get("fn") if isinstance(node, dict) else None
    if not isinstance(ref, dict):
        return "?"
    module, qualname = str(ref.get("module", "")), str(ref.get("qualname", "?"))
    return f"{module}.{qualname}" if module else qualname


def _packaging(job: PlannedJob, preflight: bool) -> tuple[str, list[str]]:
    """One line on how the code gets to the job, and a preflight's warnings."""
    if job.package is not None:
        sha = getattr(job.package, "sha256", None) or ""
        if sha:
            size = getattr(job.package, "size", 0) / 1e6
            return f"reuses the parent's archive (sha256 {sha[:12]}, {size:.1f} MB)", []
    if job.executor.packager is None:
        return "none: the job runs the code in its working directory", []
    from core.packaging import Packager, as_packager

    packager = as_packager(job.executor.packager)
    if type(packager) is Packager:
        return "none: the job runs the code in its working directory", []
    settings = ", ".join(f"{k}={v!r}" for k, v in packager.settings().items())
    line = f"{packager.type_name}({settings}) is archived at launch and unpacked for the job"
    warnings: list[str] = []
    if preflight:
        try:
            warnings = packager.preflight()
        except Exception as exc:  # what the launch would refuse with, said now
            warnings = [f"{type(exc).__name__}: {exc}"]
    return line, warnings
