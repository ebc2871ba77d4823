"""Kubernetes names and labels built from our ids.

Object names must be DNS-1123 labels (lowercase alphanumerics and ``-``, at most 63
characters, starting and ending alphanumeric); a Service name must also start with a letter.
Label values are at most 63 characters of ``[A-Za-z0-9._-]``. Our run tags and job names are
free text, so they are mapped, and a hash of the *original* keeps two different inputs that
map to the same text apart: the name of a submission depends only on its run tag, so a
retried submit finds the Job it already created instead of making a second one.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 63
#: Room left for ``-<index>`` pod-host suffixes of an Indexed Job (ranks up to 99999).
_JOB_NAME_MAX = MAX_NAME - 6

LABEL_PREFIX = "nemorun.dev"
MANAGED = f"{LABEL_PREFIX}/managed"
EXPERIMENT = f"{LABEL_PREFIX}/experiment-id"
JOB_NAME = f"{LABEL_PREFIX}/job-name"
RUN_TAG = f"{LABEL_PREFIX}/run-tag"
#: Annotations keep the unmangled values (labels may have lost characters).
ANN_EXPERIMENT = f"{LABEL_PREFIX}/experiment-id-full"
ANN_JOB_NAME = f"{LABEL_PREFIX}/job-name-full"
ANN_RUN_TAG = f"{LABEL_PREFIX}/run-tag-full"
ANN_DEPENDS = f"{LABEL_PREFIX}/depends-on"
ANN_HELD = f"{LABEL_PREFIX}/held"
ANN_CANCELLED = f"{LABEL_PREFIX}/cancelled"

_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9._-]+")


def _digest(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def dns_label(text: str, *, unique_from: str, max_len: int = MAX_NAME) -> str:
    """A valid DNS-1123 label: mapped ``text``, then ``-`` and 8 hex chars of ``unique_from``.

    Starts with a letter (valid for Services too); the hash suffix makes it unique per input.
    """
    suffix = _digest(unique_from)
    body = _NOT_DNS.sub("-", text.lower()).strip("-")
    body = re.sub(r"-{2,}", "-", body)
    if not body or not body[0].isalpha():
        body = f"j-{body}" if body else "job"
    body = body[: max_len - len(suffix) - 1].rstrip("-")
    return f"{body}-{suffix}"


def job_object_name(run_tag: str, job_name: str) -> str:
    """The Job's name: readable from the job name, unique (and stable) per run tag."""
    return dns_label(job_name, unique_from=run_tag, max_len=_JOB_NAME_MAX)


def label_value(text: str) -> str:
    """A valid label value; long or mapped values end with a hash of the original."""
    mapped = _NOT_LABEL.sub("_", text).strip("._-")
    if mapped == text and len(text) <= MAX_NAME:
        return text
    suffix = _digest(text)
    return f"{mapped[: MAX_NAME - 9].strip('._-')}-{suffix}".lstrip("-")


def selector(labels: dict[str, str]) -> str:
    """An equality label selector (``a=b,c=d``)."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
