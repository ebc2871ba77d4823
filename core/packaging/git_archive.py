"""``GitArchivePackager``: package a git commit (or the working tree) reproducibly.

Two promises NeMo Run's git packager does not keep:

* **Nothing is written into the user's repository.** Only read-only git commands run
  (``ls-tree``, ``ls-files``, ``diff``, ``cat-file``, ``rev-parse``), all with
  ``GIT_OPTIONAL_LOCKS=0`` so not even the index's stat cache is refreshed. No temp files,
  no stash, no index changes. "include" mode reads files from disk instead of staging them.
* **Uncommitted work is never dropped silently.** A policy decides, per profile:
  ``refuse`` (raise :class:`UncommittedChangesError` listing the files), ``warn`` (default:
  package the commit, record ``git diff HEAD`` in the provenance and return a warning the app
  shows before launch) or ``include`` (package the working tree as it is on disk).

Submodules are packaged at the commit the superproject *records* in the packaged tree (its
gitlink entry), not whatever happens to be checked out, read from the submodule's own
object store; a missing commit is an error that says how to fetch it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from core.packaging.archive import CHUNK, Entry, Opener, clean_arcname, disk_entry
from core.packaging.base import (
    Collected,
    Packager,
    PackagingError,
    SubmoduleError,
    UncommittedChangesError,
    _preview,
)
from core.packaging.pattern import as_pattern_list, pattern_entries
from core.packaging.provenance import MAX_LISTED_FILES, Provenance, strip_url_credentials

if TYPE_CHECKING:  # GitPython is imported lazily: ``import core`` must stay fast.
    import git

POLICIES = ("warn", "refuse", "include")

#: Environment for every git command we run. ``GIT_OPTIONAL_LOCKS=0`` stops commands from
#: opportunistically rewriting the index; the rest makes output parseable and prompts
#: impossible.
_GIT_ENV = {
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_LITERAL_PATHSPECS": "1",
    "LC_ALL": "C",
}
#: Inherited variables that would point git at another repository (e.g. inside a hook).
_GIT_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
    env.update(_GIT_ENV)
    return env


def run_git(
    cwd: Path, *args: str, check: bool = True, index: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a read-only git command in ``cwd``; raw bytes out (paths may not be UTF-8).

    ``index`` points git at a private copy of the index (see :func:`_private_index`).
    """
    env = _env()
    if index is not None:
        env["GIT_INDEX_FILE"] = str(index)
    proc = subprocess.run(
        ["git", "-c", "core.quotepath=off", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        check=False,
    )
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise PackagingError(f"git {' '.join(args[:3])} failed in {cwd}: {err}")
    return proc


def _private_index(root: Path, stack: contextlib.ExitStack) -> Path | None:
    """A throw-away copy of the repository's index, for commands that might write it.

    ``git diff`` refreshes stale stat data and *writes the index back* when it can take the
    lock (builtin/diff.c ``refresh_index_quietly``), whatever ``GIT_OPTIONAL_LOCKS`` says.
    Pointing ``GIT_INDEX_FILE`` at a copy in a temp dir keeps the user's index untouched.
    """
    # Relative to ``root`` unless absolute (``--path-format`` needs git 2.31; avoid it).
    index = (
        root
        / run_git(root, "rev-parse", "--git-path", "index")
        .stdout.decode("utf-8", "surrogateescape")
        .strip()
    )
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nemorun-pack-")))
    copy = tmp / "index"
    try:
        shutil.copyfile(index, copy)
    except FileNotFoundError:
        return None  # no index yet: nothing to protect, git reads it as empty
    return copy


def _disk_entry_inside(root: Path, rel: str, arcname: str) -> Entry | None:
    """:func:`disk_entry` for ``root/rel``, or None when a parent directory on disk is now a
    symlink (a tracked ``d/f`` whose ``d`` was replaced by a link would be read through it)."""
    parts = rel.split("/")
    for i in range(1, len(parts)):
        if os.path.islink(root.joinpath(*parts[:i])):
            return None
    return disk_entry(root / rel, arcname)


def _split_z(out: bytes) -> list[str]:
    return [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]


@dataclass(frozen=True)
class _TreeItem:
    mode: str
    type: str
    sha: str
    size: int
    path: str


def _object_git(repo: git.Repo) -> tuple[Path, str]:
    """cwd and ``--git-dir`` for object reads: immune to where (or whether) it is checked out.

    A de-initialised submodule's recorded work tree is an empty directory; plain ``git`` run
    there would find the *superproject* instead.
    """
    git_dir = Path(repo.git_dir)
    return git_dir, f"--git-dir={git_dir}"


def _ls_tree(repo: git.Repo, treeish: str) -> list[_TreeItem]:
    cwd, git_dir = _object_git(repo)
    out = run_git(cwd, git_dir, "ls-tree", "-r", "-z", "-l", "--full-name", treeish).stdout
    items = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, typ, sha, size = meta.split()
        items.append(
            _TreeItem(
                mode.decode(),
                typ.decode(),
                sha.decode(),
                int(size) if size != b"-" else 0,
                path.decode("utf-8", "surrogateescape"),
            )
        )
    return items


def _open_repo(path: Path) -> git.Repo:
    import git

    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise PackagingError(f"{path} is not inside a git repository") from None
    if repo.bare or repo.working_tree_dir is None:
        repo.close()
        raise PackagingError(f"{path} is a bare repository; GitArchivePackager needs a checkout")
    repo.git.update_environment(**_GIT_ENV)
    return repo


def _blob_opener(repo: git.Repo, sha: str) -> Opener:
    @contextlib.contextmanager
    def opener() -> Iterator[tuple[BinaryIO, int]]:
        # One persistent `git cat-file --batch` per repository streams every blob.
        _hexsha, _typ, size, stream = repo.git.stream_object_data(sha)
        try:
            yield cast(BinaryIO, stream), size  # it has the read() the archive uses
        finally:
            while stream.read(CHUNK):  # keep the batch process in sync if we stopped early
                pass

    return opener


def _resolve_policy(name: str, policy: str | None, check: bool) -> str:
    if policy is None:
        return "refuse" if check else "warn"
    if policy not in POLICIES:
        raise ValueError(f"{name} policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    if check and policy != "refuse":
        raise ValueError(
            f"check_{'uncommitted_changes' if name == 'uncommitted' else 'untracked_files'}"
            f"=True means {name}='refuse'; it conflicts with {name}={policy!r}"
        )
    return policy


def _clean_subpath(subpath: str) -> str:
    if not subpath or subpath.strip("/") in ("", "."):
        return ""
    try:
        return clean_arcname(subpath)
    except Exception:
        raise PackagingError(f"subpath {subpath!r} must be a path inside the repository") from None


@dataclass
class _Walk:
    """Shared state while walking a repository and its submodules."""

    stack: contextlib.ExitStack
    include_submodules: bool
    include_untracked: bool
    submodules: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class GitArchivePackager(Packager):
    """Package ``ref`` of the git repository containing ``basepath``.

    * ``basepath``: any directory inside the repository (default: the current directory at
      packaging time); only used to find the repository root.
    * ``subpath``: package only this directory (relative to the repository root); its
      contents land at the archive root.
    * ``ref``: commit-ish to package (``HEAD`` by default).
    * ``include_submodules``: package submodules at their recorded commits.
    * ``include_pattern``: extra files (globs relative to the repository root, e.g. build
      outputs that are git-ignored), taken from disk. They land at their repository path,
      or relative to ``subpath`` when below it. A path already packaged from git is kept
      from git (a pattern never smuggles in an uncommitted edit).
    * ``uncommitted`` / ``untracked``: ``"warn"`` (default), ``"refuse"`` or ``"include"``.
      NeMo Run's ``check_uncommitted_changes=True`` / ``check_untracked_files=True`` map to
      ``"refuse"`` (after construction the ``check_*`` fields mirror the policies, so the
      stored form is unambiguous); combining a True check with another policy is an error.

    The working tree is only inspected when ``ref`` is the commit checked out (``HEAD``):
    packaging another ref cannot pick up local edits, so it is not "dirty".
    ``uncommitted="include"`` therefore requires ``ref`` to be ``HEAD``'s commit.
    """

    basepath: str | None = None
    subpath: str = ""
    ref: str = "HEAD"
    include_submodules: bool = True
    include_pattern: str | list[str] | None = None
    check_uncommitted_changes: bool = False
    check_untracked_files: bool = False
    uncommitted: str | None = None
    untracked: str | None = None

    def __post_init__(self) -> None:
        if self.basepath is not None:
            self.basepath = str(self.basepath)
        if isinstance(self.include_pattern, tuple):
            self.include_pattern = list(self.include_pattern)
        self.subpath = str(self.subpath or "")
        self.uncommitted = _resolve_policy(
            "uncommitted", self.uncommitted, self.check_uncommitted_changes
        )
        self.untracked = _resolve_policy("untracked", self.untracked, self.check_untracked_files)
        self.check_uncommitted_changes = self.uncommitted == "refuse"
        self.check_untracked_files = self.untracked == "refuse"

    # ----------------------------------------------------------------------------------
    def collect(self, stack: contextlib.ExitStack) -> Collected | None:
        import git

        repo = _open_repo(Path(self.basepath or os.getcwd()).expanduser())
        stack.callback(repo.close)
        root = Path(str(repo.working_tree_dir))
        subpath = _clean_subpath(self.subpath)
        try:
            head = repo.head.commit.hexsha
        except ValueError:
            head = None
        if head is None and self.ref == "HEAD":
            raise PackagingError(f"{root} has no commits yet; commit the code to package it")
        try:
            commit = repo.commit(self.ref).hexsha
        except (git.BadName, ValueError):
            raise PackagingError(f"ref {self.ref!r} does not name a commit in {root}") from None
        at_head = commit == head
        if self.uncommitted == "include" and not at_head:
            raise PackagingError(
                f"uncommitted='include' packages the working tree, which is checked out at "
                f"HEAD, but ref {self.ref!r} is {commit[:12]}; use ref='HEAD' or another policy"
            )
        pathspec = subpath or "."
        if subpath:
            self._check_subpath(root, commit, subpath, worktree=self.uncommitted == "include")

        dirty: list[str] = []
        untracked: list[str] = []
        diff_text: str | None = None
        if at_head:
            index = _private_index(root, stack)
            ignore = [] if self.include_submodules else ["--ignore-submodules=all"]
            dirty = _split_z(
                run_git(
                    root,
                    "diff",
                    "HEAD",
                    "--name-only",
                    "-z",
                    "--no-renames",
                    *ignore,
                    "--",
                    pathspec,
                    index=index,
                ).stdout
            )
            untracked = _split_z(
                run_git(
                    root,
                    "ls-files",
                    "--others",
                    "--exclude-standard",
                    "-z",
                    "--",
                    pathspec,
                    index=index,
                ).stdout
            )
            refused_dirty = dirty if self.uncommitted == "refuse" else []
            refused_untracked = untracked if self.untracked == "refuse" else []
            if refused_dirty or refused_untracked:
                raise UncommittedChangesError(str(root), refused_dirty, refused_untracked)
            if dirty:
                diff_text = _dirty_diff(root, pathspec, dirty, index, stack, ignore)

        walk = _Walk(stack, self.include_submodules, self.untracked == "include")
        strip = f"{subpath}/" if subpath else ""

        def arcname(rel: str) -> str:
            return rel[len(strip) :] if strip and rel.startswith(strip) else rel

        if self.uncommitted == "include":
            source = "worktree"
            entries = _worktree_entries(walk, repo, root, pathspec, strip, "", "")
        else:
            source = "commit"
            treeish = f"{commit}:{subpath}" if subpath else commit
            entries = _commit_entries(walk, repo, root / subpath, treeish, "", strip)
            if walk.include_untracked and untracked:
                for rel in untracked:
                    entry = _disk_entry_inside(root, rel, arcname(rel))
                    if entry is not None:
                        entries.append(entry)

        patterns = as_pattern_list(self.include_pattern)
        if patterns:
            extra, pattern_warnings = pattern_entries(root, patterns, arcname)
            walk.warnings += pattern_warnings
            have = {e.path for e in entries}
            entries += [e for e in extra if e.path not in have]

        prov = Provenance(
            self.type_name,
            self.to_dict(),
            git_repo=str(root),
            git_ref=self.ref,
            git_commit=commit,
            git_branch=_branch(repo),
            git_remote_url=_remote_url(repo),
            subpath=subpath,
            source=source,
            dirty_files=sorted(dirty)[:MAX_LISTED_FILES],
            submodules=dict(sorted(walk.submodules.items())),
        )
        prov.set_dirty_diff(diff_text)
        prov.set_untracked(untracked, included=self.untracked == "include")
        warnings = self._policy_warnings(commit, dirty, untracked) + walk.warnings
        return Collected(entries, prov, warnings)

    # ----------------------------------------------------------------------------------
    def _check_subpath(self, root: Path, commit: str, subpath: str, *, worktree: bool) -> None:
        if worktree:
            if not (root / subpath).is_dir():
                raise PackagingError(f"subpath {subpath!r} is not a directory in {root}")
            return
        proc = run_git(root, "cat-file", "-t", f"{commit}:{subpath}", check=False)
        if proc.returncode != 0:
            raise PackagingError(f"subpath {subpath!r} does not exist at {commit[:12]} in {root}")
        if proc.stdout.strip() != b"tree":
            raise PackagingError(f"subpath {subpath!r} is not a directory at {commit[:12]}")

    def _policy_warnings(self, commit: str, dirty: list[str], untracked: list[str]) -> list[str]:
        warnings = []
        if dirty and self.uncommitted == "warn":
            warnings.append(
                f"{len(dirty)} uncommitted change(s) are NOT packaged; launching commit "
                f"{commit[:12]} (the diff is recorded): {_preview(sorted(dirty))}"
            )
        elif dirty and self.uncommitted == "include":
            warnings.append(
                f"packaging the working tree: {len(dirty)} uncommitted change(s) beyond "
                f"{commit[:12]} are included (the diff is recorded): {_preview(sorted(dirty))}"
            )
        if untracked and self.untracked == "warn":
            warnings.append(
                f"{len(untracked)} untracked file(s) are NOT packaged: "
                f"{_preview(sorted(untracked))}"
            )
        elif untracked and self.untracked == "include":
            warnings.append(
                f"{len(untracked)} untracked file(s) are included: {_preview(sorted(untracked))}"
            )
        return warnings


def _dirty_diff(
    root: Path,
    pathspec: str,
    dirty: list[str],
    index: Path | None,
    stack: contextlib.ExitStack,
    ignore: list[str],
) -> str:
    """``git diff HEAD`` text, plus the edits inside each dirty, checked-out submodule.

    Submodule edits are diffed by us (each with a private index copy) rather than with
    ``--submodule=diff``: that makes git run ``git diff`` inside the submodule, and that
    child may write the submodule's index.
    """
    fixed = ["--no-color", "--no-ext-diff", "--src-prefix=a/", "--dst-prefix=b/"]
    text = run_git(
        root, "diff", "HEAD", *fixed, "--submodule=short", *ignore, "--", pathspec, index=index
    ).stdout.decode("utf-8", "replace")
    if ignore:
        return text
    for rel in sorted(dirty):
        checkout = root / rel
        if not (checkout / ".git").exists():
            continue
        sub_index = _private_index(checkout, stack)
        inner = run_git(
            checkout,
            "diff",
            "HEAD",
            "--no-color",
            "--no-ext-diff",
            f"--src-prefix=a/{rel}/",
            f"--dst-prefix=b/{rel}/",
            "--submodule=short",
            index=sub_index,
            check=False,
        ).stdout.decode("utf-8", "replace")
        if inner:
            text += f"# uncommitted changes inside submodule {rel}:\n{inner}"
    return text


# ------------------------------------------------------------------------------------------
# Walking a commit (git objects) and a working tree (disk)


def _commit_entries(
    walk: _Walk, repo: git.Repo, tree_dir: Path, treeish: str, arc_prefix: str, record_prefix: str
) -> list[Entry]:
    """Entries of ``treeish`` (a commit, or ``commit:subdir``) from the object store.

    ``tree_dir`` is where that tree is checked out (to find submodule clones);
    ``record_prefix`` turns tree paths back into paths from the top repository root, for
    the provenance and messages.
    """
    entries: list[Entry] = []
    for item in _ls_tree(repo, treeish):
        arc = arc_prefix + item.path
        if item.type == "blob":
            if item.mode == "120000":
                target = repo.git.get_object_data(item.sha)[3]
                entries.append(
                    Entry(arc, "symlink", link_target=target.decode("utf-8", "surrogateescape"))
                )
            else:
                entries.append(
                    Entry(
                        arc,
                        "file",
                        executable=item.mode == "100755",
                        size=item.size,
                        opener=_blob_opener(repo, item.sha),
                        content_id=f"git:{item.sha}",
                    )
                )
        elif item.type == "commit" and walk.include_submodules:
            recorded_path = record_prefix + item.path
            walk.submodules[recorded_path] = item.sha
            sub_repo = _open_submodule(walk, repo, tree_dir, item.path, item.sha, recorded_path)
            entries += _commit_entries(
                walk,
                sub_repo,
                tree_dir / item.path,
                item.sha,
                arc + "/",
                recorded_path + "/",
            )
    return entries


def _open_submodule(
    walk: _Walk, repo: git.Repo, tree_dir: Path, path: str, sha: str, recorded_path: str
) -> git.Repo:
    """The submodule's own repository, checked to contain the recorded commit ``sha``."""
    import git

    sub_repo: git.Repo | None = None
    checkout = tree_dir / path
    if (checkout / ".git").exists():
        try:
            sub_repo = git.Repo(checkout)
        except git.InvalidGitRepositoryError:
            sub_repo = None
    if sub_repo is None:
        # Not checked out (or deinit-ed): the clone may still live in .git/modules/<name>.
        candidates = [Path(repo.git_dir) / "modules" / path]
        candidates += [Path(repo.git_dir) / "modules" / n for n in _submodule_names(repo, path)]
        for gitdir in candidates:
            if (gitdir / "HEAD").exists():
                with contextlib.suppress(git.InvalidGitRepositoryError, git.NoSuchPathError):
                    sub_repo = git.Repo(gitdir)
                    # GitPython would run git in the (empty) recorded work tree.
                    sub_repo.git.update_environment(GIT_DIR=str(gitdir))
                    break
    if sub_repo is None:
        raise SubmoduleError(
            f"submodule {recorded_path!r} (recorded commit {sha[:12]}) is not initialised; "
            f"run `git submodule update --init --recursive` or set include_submodules=False"
        )
    walk.stack.callback(sub_repo.close)
    sub_repo.git.update_environment(**_GIT_ENV)
    sub_cwd, sub_git_dir = _object_git(sub_repo)
    probe = run_git(sub_cwd, sub_git_dir, "cat-file", "-e", f"{sha}^{{commit}}", check=False)
    if probe.returncode != 0:
        raise SubmoduleError(
            f"submodule {recorded_path!r}: the superproject records commit {sha}, which is not "
            f"in the submodule's local clone; fetch it (`git -C {recorded_path} fetch`) or run "
            f"`git submodule update --init {recorded_path}`"
        )
    with contextlib.suppress(ValueError, TypeError):
        checked_out = sub_repo.head.commit.hexsha
        if checked_out != sha and sub_repo.working_tree_dir is not None:
            walk.warnings.append(
                f"submodule {recorded_path}: checked out at {checked_out[:12]} but the "
                f"superproject records {sha[:12]}; packaging the recorded commit"
            )
    return sub_repo


def _submodule_names(repo: git.Repo, path: str) -> list[str]:
    """Submodule names whose configured path is ``path`` (from .gitmodules, best effort)."""
    cwd = Path(str(repo.working_tree_dir or repo.git_dir))
    proc = run_git(
        cwd,
        "config",
        "-z",
        "--file",
        ".gitmodules",
        "--get-regexp",
        r"^submodule\..*\.path$",
        check=False,
    )
    names = []
    for record in _split_z(proc.stdout):
        key, _, value = record.partition("\n")
        if value == path:
            names.append(key[len("submodule.") : -len(".path")])
    return names


def _worktree_entries(
    walk: _Walk,
    repo: git.Repo,
    root: Path,
    pathspec: str,
    strip: str,
    arc_prefix: str,
    record_prefix: str,
) -> list[Entry]:
    """Tracked files as they are on disk (deleted ones are gone), plus untracked if asked.

    Submodules that are checked out are walked the same way (their working trees); one that
    is not checked out falls back to the commit recorded in the index.
    """
    out = run_git(root, "ls-files", "-z", "-s", "--", pathspec).stdout
    entries: list[Entry] = []
    seen: set[str] = set()

    def arc(rel: str) -> str:
        return arc_prefix + (rel[len(strip) :] if strip and rel.startswith(strip) else rel)

    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, sha, _stage = meta.decode().split()
        rel = raw_path.decode("utf-8", "surrogateescape")
        if rel in seen:  # merge conflicts list one path per stage
            continue
        seen.add(rel)
        if mode == "160000":
            if not walk.include_submodules:
                continue
            recorded = record_prefix + rel
            checkout = root / rel
            if (checkout / ".git").exists():
                sub_repo = _open_submodule_checkout(walk, checkout)
                try:
                    walk.submodules[recorded] = sub_repo.head.commit.hexsha
                except ValueError:
                    walk.submodules[recorded] = sha
                entries += _worktree_entries(
                    walk, sub_repo, checkout, ".", "", arc(rel) + "/", recorded + "/"
                )
            else:
                walk.submodules[recorded] = sha
                sub_repo = _open_submodule(walk, repo, root, rel, sha, recorded)
                entries += _commit_entries(
                    walk, sub_repo, checkout, sha, arc(rel) + "/", recorded + "/"
                )
            continue
        entry = _disk_entry_inside(root, rel, arc(rel))
        if entry is not None:
            entries.append(entry)
        elif (root / rel).is_dir():
            walk.warnings.append(f"{record_prefix + rel} is tracked as a file but is a directory")
    if walk.include_untracked:
        others = run_git(
            root, "ls-files", "--others", "--exclude-standard", "-z", "--", pathspec
        ).stdout
        for rel in _split_z(others):
            entry = _disk_entry_inside(root, rel, arc(rel))
            if entry is not None:
                entries.append(entry)
    return entries


def _open_submodule_checkout(walk: _Walk, checkout: Path) -> git.Repo:
    import git

    try:
        sub_repo = git.Repo(checkout)
    except git.InvalidGitRepositoryError:
        raise SubmoduleError(f"{checkout} looks like a submodule but is not a repository") from None
    walk.stack.callback(sub_repo.close)
    sub_repo.git.update_environment(**_GIT_ENV)
    return sub_repo


# ------------------------------------------------------------------------------------------
# Metadata


def _branch(repo: git.Repo) -> str | None:
    try:
        return None if repo.head.is_detached else repo.active_branch.name
    except (TypeError, ValueError):
        return None


def _remote_url(repo: git.Repo) -> str | None:
    """URL of the branch's upstream remote, else ``origin``, else the first; credentials removed."""
    names = sorted(r.name for r in repo.remotes)
    if not names:
        return None
    name = None
    with contextlib.suppress(TypeError, ValueError):
        tracking = repo.active_branch.tracking_branch()
        if tracking is not None:
            name = tracking.remote_name
    if name not in names:
        name = "origin" if "origin" in names else names[0]
    try:
        url = repo.remote(name).url
    except Exception:  # a remote without a url
        return None
    return strip_url_credentials(url)
