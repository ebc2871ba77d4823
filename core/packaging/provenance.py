"""Code provenance: what exactly was packaged, in a form the store keeps forever.

A :class:`Provenance` is plain data (``to_dict``/``from_dict`` give JSON-safe dicts) so a job
launched months ago can still say which commit, which uncommitted diff and which files it
ran with, without the repository being around. :func:`diff_provenance` turns two of them
into the human lines the app shows in "diff vs parent".
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

#: Above this many files only the count and a digest of the sorted list are stored.
MAX_LISTED_FILES = 1000
#: Dirty diffs larger than this are stored truncated (their full sha256 is still stored).
MAX_DIFF_CHARS = 1 << 20

SCHEMA_VERSION = 1

#: scp-like ``[user[:password]@]host:path`` (git's rule: a colon before any slash, no "://").
_SCP_LIKE = re.compile(r"^(?:(?P<userinfo>[^/]*)@)?(?P<host>\[[^\]/]*\]|[^@/:\[\]]+):(?P<path>.*)$")
#: Schemes whose user name is commonly a token (``https://<token>@host``); all userinfo goes.
_WEB_SCHEMES = ("http", "https", "ftp", "ftps")


def _drop_query(text: str) -> str:
    """Everything from the first ``?`` or ``#``: query tokens and fragments never matter to
    git, and ``?token=``/``?access_token=``/``?private_token=`` are common."""
    return re.split(r"[?#]", text, maxsplit=1)[0]


def strip_url_credentials(url: str | None) -> str | None:
    """Remove secrets from a git remote URL before it is stored or shown.

    * web URLs (http(s), ftp(s), and ``git+https`` style): the whole user-info part goes,
      because tokens are commonly passed as the *user* (``https://<token>@github.com/...``,
      ``https://oauth2:<token>@...``);
    * other URLs (``ssh://``, ``git://``, ``file://``) and scp-like ``user@host:path``: the
      user name is an account, not a secret, so it stays; a password never does;
    * every form: the query string and the fragment go entirely.

    Never raises: text that does not parse as a URL has anything between ``//`` and the
    last ``@`` of its authority removed, and its query and fragment dropped.
    """
    if not url:
        return url
    if "://" not in url:
        scp = _SCP_LIKE.match(url)
        if scp is None or "/" in url.split(":", 1)[0]:
            return _drop_query(url)  # a local path (a colon after a slash is a path)
        userinfo = scp.group("userinfo")
        user = (userinfo or "").split(":", 1)[0]
        prefix = f"{user}@" if user else ""
        return f"{prefix}{scp.group('host')}:{_drop_query(scp.group('path'))}"
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    authority = _drop_query(authority)
    if slash:
        path = _drop_query(path)
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        return f"{scheme}://{hostport}{slash}{path}"
    lowered = scheme.lower()
    if any(lowered == s or lowered.endswith(f"+{s}") for s in _WEB_SCHEMES):
        return f"{scheme}://{hostport}{slash}{path}"
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user + '@' if user else ''}{hostport}{slash}{path}"


def list_digest(items: list[str]) -> str:
    """sha256 of a sorted list of paths (newline-joined), used when the list is too long."""
    digest = hashlib.sha256()
    for item in sorted(items):
        digest.update(item.encode("utf-8", "surrogateescape"))
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass
class Provenance:
    """Everything needed to know (and re-create) the code of a job.

    ``source`` says where file contents came from: ``"commit"`` (the git objects of
    ``git_commit``; uncommitted edits are *not* in the archive, only in ``dirty_diff``) or
    ``"worktree"`` (files as they were on disk; ``dirty_diff`` tells what differs from
    ``git_commit``). ``files`` is None when more than :data:`MAX_LISTED_FILES` were packed;
    ``file_count``/``files_sha256`` always identify the list.
    """

    packager: str
    settings: dict[str, Any] = field(default_factory=dict)
    archive_sha256: str | None = None
    content_sha256: str | None = None
    archive_size: int = 0
    git_repo: str | None = None
    git_ref: str | None = None
    git_commit: str | None = None
    git_branch: str | None = None
    git_remote_url: str | None = None
    subpath: str = ""
    source: str | None = None
    dirty_files: list[str] = field(default_factory=list)
    dirty_diff: str | None = None
    dirty_diff_sha256: str | None = None
    dirty_diff_truncated: bool = False
    untracked_files: list[str] = field(default_factory=list)
    untracked_count: int = 0
    untracked_included: bool = False
    files: list[str] | None = None
    file_count: int = 0
    files_sha256: str | None = None
    submodules: dict[str, str] = field(default_factory=dict)
    sub: dict[str, Provenance] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        self.git_remote_url = strip_url_credentials(self.git_remote_url)

    # -- filling in -------------------------------------------------------------------------
    def set_dirty_diff(self, diff: str | None) -> None:
        """Store a diff, truncated when huge; its full digest is kept either way."""
        if not diff:
            self.dirty_diff = None
            self.dirty_diff_sha256 = None
            self.dirty_diff_truncated = False
            return
        self.dirty_diff_sha256 = hashlib.sha256(diff.encode("utf-8", "surrogateescape")).hexdigest()
        if len(diff) > MAX_DIFF_CHARS:
            self.dirty_diff = diff[:MAX_DIFF_CHARS] + "\n[... diff truncated ...]\n"
            self.dirty_diff_truncated = True
        else:
            self.dirty_diff = diff
            self.dirty_diff_truncated = False

    def set_untracked(self, paths: list[str], included: bool) -> None:
        ordered = sorted(paths)
        self.untracked_count = len(ordered)
        self.untracked_files = ordered[:MAX_LISTED_FILES]
        self.untracked_included = included

    def set_files(self, paths: list[str]) -> None:
        ordered = sorted(paths)
        self.file_count = len(ordered)
        self.files_sha256 = list_digest(ordered)
        self.files = ordered if len(ordered) <= MAX_LISTED_FILES else None

    @property
    def dirty(self) -> bool:
        return bool(self.dirty_files) or self.dirty_diff_sha256 is not None

    # -- storage ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "sub":
                value = {name: prov.to_dict() for name, prov in sorted(value.items())}
            elif isinstance(value, (list, dict)):
                value = value.copy()
            data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        """Rebuild from the store; unknown keys (a newer schema) are ignored, not fatal."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["sub"] = {
            name: cls.from_dict(value) for name, value in (data.get("sub") or {}).items()
        }
        if "packager" not in kwargs:
            kwargs["packager"] = "unknown"
        return cls(**kwargs)

    def summary(self) -> str:
        """One line for lists: ``GitArchivePackager abc1234 (+dirty) sha256:0123abcd``."""
        bits = [self.packager]
        if self.git_commit:
            bits.append(self.git_commit[:12])
        if self.dirty:
            bits.append("(+uncommitted, included)" if self.source == "worktree" else "(+dirty)")
        if self.archive_sha256:
            bits.append(f"sha256:{self.archive_sha256[:12]}")
        return " ".join(bits)


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "none"


def _diff_lists(label: str, old: list[str], new: list[str], limit: int = 10) -> list[str]:
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    lines = []
    if added:
        more = f" (+{len(added) - limit} more)" if len(added) > limit else ""
        lines.append(f"{label} added: {', '.join(added[:limit])}{more}")
    if removed:
        more = f" (+{len(removed) - limit} more)" if len(removed) > limit else ""
        lines.append(f"{label} removed: {', '.join(removed[:limit])}{more}")
    return lines


def diff_provenance(a: Provenance | None, b: Provenance | None, prefix: str = "") -> list[str]:
    """Lines describing how the code of ``b`` (child) differs from ``a`` (parent).

    Empty when nothing recorded differs. The same archive can still come with other lines
    (e.g. two commits with an identical tree: the commit range is shown, the archive line
    is not).
    """
    if a is None and b is None:
        return []
    if a is None or b is None:
        return [
            f"{prefix}code: {'no provenance' if a is None else a.summary()} → "
            f"{'no provenance' if b is None else b.summary()}"
        ]
    lines: list[str] = []
    if a.packager != b.packager:
        lines.append(f"{prefix}packager: {a.packager} → {b.packager}")
    elif a.settings != b.settings:
        for key in sorted(set(a.settings) | set(b.settings)):
            if a.settings.get(key) != b.settings.get(key):
                lines.append(
                    f"{prefix}packager {key}: {a.settings.get(key)!r} → {b.settings.get(key)!r}"
                )
    if a.git_commit != b.git_commit:
        if a.git_commit and b.git_commit:
            lines.append(
                f"{prefix}commit: {_short(a.git_commit)}..{_short(b.git_commit)}"
                f" (git log {a.git_commit}..{b.git_commit})"
            )
        else:
            lines.append(f"{prefix}commit: {_short(a.git_commit)} → {_short(b.git_commit)}")
    if a.git_branch != b.git_branch:
        lines.append(f"{prefix}branch: {a.git_branch} → {b.git_branch}")
    if a.git_remote_url != b.git_remote_url:
        lines.append(f"{prefix}remote: {a.git_remote_url} → {b.git_remote_url}")
    if a.subpath != b.subpath:
        lines.append(f"{prefix}subpath: {a.subpath!r} → {b.subpath!r}")
    if a.source != b.source:
        lines.append(f"{prefix}packaged from: {a.source} → {b.source}")
    if a.dirty_diff_sha256 != b.dirty_diff_sha256:
        if a.dirty_diff_sha256 is None:
            lines.append(f"{prefix}dirty diff: none → {_diff_size(b)}")
        elif b.dirty_diff_sha256 is None:
            lines.append(f"{prefix}dirty diff: {_diff_size(a)} → none")
        else:
            lines.append(f"{prefix}dirty diff changed: {_diff_size(a)} → {_diff_size(b)}")
    lines += _diff_lists(f"{prefix}untracked", a.untracked_files, b.untracked_files)
    for path in sorted(set(a.submodules) | set(b.submodules)):
        old, new = a.submodules.get(path), b.submodules.get(path)
        if old != new:
            lines.append(f"{prefix}submodule {path}: {_short(old)} → {_short(new)}")
    if a.files_sha256 != b.files_sha256:
        if a.files is not None and b.files is not None:
            lines += _diff_lists(f"{prefix}files", a.files, b.files)
        else:
            lines.append(f"{prefix}file list changed: {a.file_count} → {b.file_count} files")
    for name in sorted(set(a.sub) | set(b.sub)):
        lines += diff_provenance(a.sub.get(name), b.sub.get(name), prefix=f"{prefix}[{name}] ")
    if a.archive_sha256 != b.archive_sha256:
        lines.append(
            f"{prefix}archive: sha256 {_short(a.archive_sha256)} → {_short(b.archive_sha256)}"
        )
    return lines


def _diff_size(p: Provenance) -> str:
    text = p.dirty_diff or ""
    n = text.count("\n")
    return f"{n} line(s){' (truncated)' if p.dirty_diff_truncated else ''}"
