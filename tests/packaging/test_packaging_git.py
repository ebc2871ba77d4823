"""GitArchivePackager on real repositories: policies, subpath, submodules, patterns, safety."""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path

import pytest

from core.packaging import (
    ARCHIVE_MTIME,
    GitArchivePackager,
    PackagingError,
    SubmoduleError,
    UncommittedChangesError,
    file_sha256,
)


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def read_member(archive: Path, name: str) -> str:
    with tarfile.open(archive, "r:gz") as tar:
        fh = tar.extractfile(name)
        assert fh is not None
        return fh.read().decode()


def files_of(archive: Path) -> set[str]:
    return {n for n, m in members(archive).items() if not m.isdir()}


# ------------------------------------------------------------------------------ clean tree


def test_clean_tree_packages_commit_with_modes_and_symlinks(repo: Path, tmp_path: Path, h) -> None:
    result = GitArchivePackager(basepath=str(repo)).package(tmp_path / "out")

    assert result.archive == tmp_path / "out" / f"{result.sha256}.tar.gz"
    assert result.sha256 == file_sha256(result.archive)
    assert result.size == result.archive.stat().st_size
    assert result.warnings == []
    got = members(result.archive)
    assert files_of(result.archive) == {
        ".gitignore",
        "README.md",
        "train.py",
        "pkg/__init__.py",
        "pkg/model.py",
        "scripts/run.sh",
        "model_link.py",
    }
    assert got["scripts/run.sh"].mode == 0o755
    assert got["train.py"].mode == 0o644
    assert got["model_link.py"].issym() and got["model_link.py"].linkname == "pkg/model.py"
    assert got["pkg"].isdir() and got["pkg"].mode == 0o755
    assert read_member(result.archive, "pkg/model.py") == "LAYERS = 2\n"

    prov = result.provenance
    assert prov.packager == "GitArchivePackager"
    assert prov.git_commit == h.git(repo, "rev-parse", "HEAD")
    assert prov.git_branch == "main"
    assert prov.source == "commit"
    assert not prov.dirty and prov.dirty_diff is None and prov.untracked_files == []
    assert prov.archive_sha256 == result.sha256
    assert prov.file_count == 7 and "train.py" in (prov.files or [])
    assert prov.settings["__type__"] == "GitArchivePackager"


def test_basepath_inside_repo_finds_root_and_cwd_default(
    repo: Path, tmp_path: Path, monkeypatch
) -> None:
    a = GitArchivePackager(basepath=str(repo / "pkg")).package(tmp_path / "a")
    monkeypatch.chdir(repo / "scripts")
    b = GitArchivePackager().package(tmp_path / "b")
    assert a.sha256 == b.sha256
    assert "train.py" in files_of(a.archive)


def test_not_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(PackagingError, match="not inside a git repository"):
        GitArchivePackager(basepath=str(tmp_path / "plain")).package(tmp_path / "out")


def test_unknown_ref_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match="does not name a commit"):
        GitArchivePackager(basepath=str(repo), ref="no-such-branch").package(tmp_path / "out")


# --------------------------------------------------------------------- uncommitted changes


def make_dirty(repo: Path, h) -> None:
    h.write(repo / "train.py", "print('edited')\n")  # modified, unstaged
    h.write(repo / "pkg/new.py", "NEW = 1\n")
    h.git(repo, "add", "pkg/new.py")  # staged new file
    (repo / "README.md").unlink()  # deleted


def test_dirty_warn_packages_commit_and_records_diff(repo: Path, tmp_path: Path, h) -> None:
    make_dirty(repo, h)
    result = GitArchivePackager(basepath=str(repo)).package(tmp_path / "out")

    assert read_member(result.archive, "train.py") == "print('train')\n"
    assert "README.md" in files_of(result.archive)
    assert "pkg/new.py" not in files_of(result.archive)
    prov = result.provenance
    assert prov.source == "commit"
    assert sorted(prov.dirty_files) == ["README.md", "pkg/new.py", "train.py"]
    assert "+print('edited')" in prov.dirty_diff
    assert "+NEW = 1" in prov.dirty_diff
    assert prov.dirty_diff_sha256 and not prov.dirty_diff_truncated
    assert len(result.warnings) == 1
    assert "3 uncommitted change(s) are NOT packaged" in result.warnings[0]
    assert "train.py" in result.warnings[0]


@pytest.mark.parametrize("kwargs", [{"uncommitted": "refuse"}, {"check_uncommitted_changes": True}])
def test_dirty_refuse_lists_files_and_writes_nothing(repo: Path, tmp_path: Path, h, kwargs) -> None:
    make_dirty(repo, h)
    out = tmp_path / "out"
    with pytest.raises(UncommittedChangesError) as err:
        GitArchivePackager(basepath=str(repo), **kwargs).package(out)
    assert sorted(err.value.uncommitted) == ["README.md", "pkg/new.py", "train.py"]
    assert err.value.untracked == []
    assert "train.py" in str(err.value)
    assert not out.exists() or list(out.iterdir()) == []


def test_dirty_include_packages_working_tree(repo: Path, tmp_path: Path, h) -> None:
    make_dirty(repo, h)
    (repo / "train.py").chmod(0o755)
    result = GitArchivePackager(basepath=str(repo), uncommitted="include").package(tmp_path / "o")

    got = members(result.archive)
    assert read_member(result.archive, "train.py") == "print('edited')\n"
    assert got["train.py"].mode == 0o755
    assert read_member(result.archive, "pkg/new.py") == "NEW = 1\n"
    assert "README.md" not in got
    assert got["model_link.py"].issym()
    prov = result.provenance
    assert prov.source == "worktree"
    assert prov.git_commit == h.git(repo, "rev-parse", "HEAD")
    assert "+print('edited')" in prov.dirty_diff
    assert any("included" in w for w in result.warnings)


def test_clean_tree_passes_refuse(repo: Path, tmp_path: Path) -> None:
    packager = GitArchivePackager(
        basepath=str(repo), check_uncommitted_changes=True, check_untracked_files=True
    )
    assert packager.package(tmp_path / "out").archive is not None


def test_policy_mapping_and_conflicts() -> None:
    p = GitArchivePackager(check_uncommitted_changes=True)
    assert (p.uncommitted, p.untracked) == ("refuse", "warn")
    p = GitArchivePackager(untracked="refuse")
    assert p.check_untracked_files is True and p.check_uncommitted_changes is False
    with pytest.raises(ValueError, match="conflicts"):
        GitArchivePackager(check_uncommitted_changes=True, uncommitted="include")
    with pytest.raises(ValueError, match="one of"):
        GitArchivePackager(uncommitted="ignore")


# ------------------------------------------------------------------------- untracked files


def test_untracked_warn_refuse_include(repo: Path, tmp_path: Path, h) -> None:
    h.write(repo / "notes.txt", "todo\n")
    h.write(repo / "pkg/extra.py", "X = 1\n")
    h.write(repo / "debug.log", "ignored by .gitignore\n")
    h.write(repo / "build/out.bin", "ignored dir\n")

    warn = GitArchivePackager(basepath=str(repo)).package(tmp_path / "w")
    assert "notes.txt" not in files_of(warn.archive)
    assert warn.provenance.untracked_files == ["notes.txt", "pkg/extra.py"]
    assert not warn.provenance.untracked_included
    assert any("2 untracked file(s) are NOT packaged" in w for w in warn.warnings)

    with pytest.raises(UncommittedChangesError) as err:
        GitArchivePackager(basepath=str(repo), check_untracked_files=True).package(tmp_path / "r")
    assert err.value.untracked == ["notes.txt", "pkg/extra.py"]
    assert err.value.uncommitted == []

    inc = GitArchivePackager(basepath=str(repo), untracked="include").package(tmp_path / "i")
    names = files_of(inc.archive)
    assert {"notes.txt", "pkg/extra.py"} <= names
    assert "debug.log" not in names and "build/out.bin" not in names
    assert inc.provenance.untracked_included
    assert inc.provenance.source == "commit"


def test_untracked_include_with_worktree_include(repo: Path, tmp_path: Path, h) -> None:
    h.write(repo / "train.py", "edited\n")
    h.write(repo / "notes.txt", "todo\n")
    both = GitArchivePackager(basepath=str(repo), uncommitted="include", untracked="include")
    result = both.package(tmp_path / "o")
    assert read_member(result.archive, "train.py") == "edited\n"
    assert read_member(result.archive, "notes.txt") == "todo\n"
    only_tracked = GitArchivePackager(basepath=str(repo), uncommitted="include")
    assert "notes.txt" not in files_of(only_tracked.package(tmp_path / "p").archive)


def test_refuse_lists_both_kinds(repo: Path, tmp_path: Path, h) -> None:
    h.write(repo / "train.py", "edited\n")
    h.write(repo / "notes.txt", "todo\n")
    with pytest.raises(UncommittedChangesError) as err:
        GitArchivePackager(basepath=str(repo), uncommitted="refuse", untracked="refuse").package(
            tmp_path / "o"
        )
    assert err.value.uncommitted == ["train.py"] and err.value.untracked == ["notes.txt"]


# --------------------------------------------------------------------------------- subpath


def test_subpath_lands_at_archive_root_and_scopes_checks(repo: Path, tmp_path: Path, h) -> None:
    h.write(repo / "train.py", "dirty outside the subpath\n")
    h.write(repo / "notes.txt", "untracked outside the subpath\n")
    packager = GitArchivePackager(
        basepath=str(repo),
        subpath="pkg",
        check_uncommitted_changes=True,
        check_untracked_files=True,
    )
    result = packager.package(tmp_path / "out")
    assert files_of(result.archive) == {"__init__.py", "model.py"}
    assert result.provenance.subpath == "pkg"
    assert result.warnings == []

    h.write(repo / "pkg/model.py", "LAYERS = 3\n")
    with pytest.raises(UncommittedChangesError) as err:
        packager.package(tmp_path / "out2")
    assert err.value.uncommitted == ["pkg/model.py"]

    inc = GitArchivePackager(basepath=str(repo), subpath="pkg/", uncommitted="include")
    assert read_member(inc.package(tmp_path / "o3").archive, "model.py") == "LAYERS = 3\n"


def test_bad_subpath(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match="does not exist"):
        GitArchivePackager(basepath=str(repo), subpath="nope").package(tmp_path / "o")
    with pytest.raises(PackagingError, match="not a directory"):
        GitArchivePackager(basepath=str(repo), subpath="train.py").package(tmp_path / "o")
    with pytest.raises(PackagingError, match="inside the repository"):
        GitArchivePackager(basepath=str(repo), subpath="../x").package(tmp_path / "o")


# -------------------------------------------------------------------------------- other ref


def test_other_ref_ignores_working_tree(repo: Path, tmp_path: Path, h) -> None:
    h.git(repo, "tag", "v1")
    h.write(repo / "train.py", "print('v2')\n")
    h.git(repo, "commit", "-q", "-am", "v2")
    h.write(repo / "train.py", "dirty\n")
    result = GitArchivePackager(basepath=str(repo), ref="v1", check_uncommitted_changes=True)
    out = result.package(tmp_path / "o")
    assert read_member(out.archive, "train.py") == "print('train')\n"
    assert out.provenance.git_commit == h.git(repo, "rev-parse", "v1^{commit}")
    assert out.provenance.dirty_diff is None
    with pytest.raises(PackagingError, match="ref='HEAD'"):
        GitArchivePackager(basepath=str(repo), ref="v1", uncommitted="include").package(
            tmp_path / "p"
        )


# ------------------------------------------------------------------------------- submodules


def make_superproject(tmp_path: Path, h) -> tuple[Path, Path, str, str]:
    """Superproject recording lib@c1 while the checkout of lib sits at c2."""
    lib = h.init_repo(tmp_path / "lib-origin", {"lib.py": "VERSION = 1\n"})
    c1 = h.git(lib, "rev-parse", "HEAD")
    h.write(lib / "lib.py", "VERSION = 2\n")
    h.git(lib, "commit", "-q", "-am", "v2")
    c2 = h.git(lib, "rev-parse", "HEAD")
    sup = h.init_repo(tmp_path / "super", {"main.py": "import lib\n"})
    h.git(sup, "submodule", "add", "-q", str(lib), "third_party/lib")
    h.git(sup / "third_party/lib", "checkout", "-q", c1)
    h.git(sup, "add", "third_party/lib")
    h.git(sup, "commit", "-q", "-m", "add lib at c1")
    h.git(sup / "third_party/lib", "checkout", "-q", c2)  # checked-out HEAD != recorded
    return sup, lib, c1, c2


def test_submodule_packaged_at_recorded_commit(tmp_path: Path, h) -> None:
    sup, _lib, c1, c2 = make_superproject(tmp_path, h)
    result = GitArchivePackager(basepath=str(sup)).package(tmp_path / "out")

    assert read_member(result.archive, "third_party/lib/lib.py") == "VERSION = 1\n"
    assert "third_party/lib/.git" not in files_of(result.archive)
    assert ".gitmodules" in files_of(result.archive)
    prov = result.provenance
    assert prov.submodules == {"third_party/lib": c1}
    assert prov.dirty_files == ["third_party/lib"]  # the gitlink differs from the checkout
    assert f"+Subproject commit {c2}" in prov.dirty_diff
    assert any("submodule third_party/lib" in w and c1[:12] in w for w in result.warnings)


def test_submodule_excluded(tmp_path: Path, h) -> None:
    sup, *_ = make_superproject(tmp_path, h)
    result = GitArchivePackager(basepath=str(sup), include_submodules=False).package(tmp_path / "o")
    assert not any(n.startswith("third_party/lib/") for n in files_of(result.archive))
    assert result.provenance.submodules == {}
    assert result.provenance.dirty_files == []  # submodule state is then irrelevant


def test_submodule_worktree_include_uses_checkout(tmp_path: Path, h) -> None:
    sup, _lib, _c1, c2 = make_superproject(tmp_path, h)
    h.write(sup / "third_party/lib/lib.py", "VERSION = 'local edit'\n")
    result = GitArchivePackager(basepath=str(sup), uncommitted="include").package(tmp_path / "o")
    assert read_member(result.archive, "third_party/lib/lib.py") == "VERSION = 'local edit'\n"
    assert result.provenance.submodules == {"third_party/lib": c2}
    assert "+VERSION = 'local edit'" in result.provenance.dirty_diff


def test_submodule_missing_recorded_commit_is_clear(tmp_path: Path, h) -> None:
    sup, lib, _c1, _c2 = make_superproject(tmp_path, h)
    h.write(lib / "lib.py", "VERSION = 3\n")
    h.git(lib, "commit", "-q", "-am", "v3 (never fetched into the superproject's clone)")
    c3 = h.git(lib, "rev-parse", "HEAD")
    h.git(sup, "update-index", "--cacheinfo", f"160000,{c3},third_party/lib")
    h.git(sup, "commit", "-q", "-m", "record c3")
    with pytest.raises(SubmoduleError, match="not in the submodule's local clone") as err:
        GitArchivePackager(basepath=str(sup)).package(tmp_path / "o")
    assert c3 in str(err.value) and "fetch" in str(err.value)


def test_submodule_not_checked_out_uses_modules_dir(tmp_path: Path, h) -> None:
    sup, _lib, c1, _c2 = make_superproject(tmp_path, h)
    h.git(sup, "submodule", "deinit", "-q", "-f", "third_party/lib")
    result = GitArchivePackager(basepath=str(sup)).package(tmp_path / "o")
    assert read_member(result.archive, "third_party/lib/lib.py") == "VERSION = 1\n"
    assert result.provenance.submodules == {"third_party/lib": c1}


def test_submodule_never_initialised_is_clear(tmp_path: Path, h) -> None:
    sup, *_ = make_superproject(tmp_path, h)
    clone = tmp_path / "clone"
    h.git(tmp_path, "clone", "-q", str(sup), str(clone))  # submodules not initialised
    with pytest.raises(SubmoduleError, match="git submodule update --init"):
        GitArchivePackager(basepath=str(clone)).package(tmp_path / "o")


# --------------------------------------------------------------------------- include_pattern


def test_include_pattern_adds_ignored_files_but_never_overrides_git(
    repo: Path, tmp_path: Path, h
) -> None:
    h.write(repo / "build/gen/table.bin", b"\x00\x01")
    h.write(repo / "build/gen/sub/more.txt", "more\n")
    h.write(repo / "train.py", "uncommitted edit\n")
    packager = GitArchivePackager(
        basepath=str(repo), include_pattern=["build/gen", "*.py", "nothing/*.x"]
    )
    result = packager.package(tmp_path / "o")
    names = files_of(result.archive)
    assert {"build/gen/table.bin", "build/gen/sub/more.txt"} <= names
    assert read_member(result.archive, "train.py") == "print('train')\n"
    assert any("'nothing/*.x' matched no files" in w for w in result.warnings)


def test_include_pattern_with_subpath_lands_next_to_code(repo: Path, tmp_path: Path, h) -> None:
    h.write(repo / "pkg/generated.py", "G = 1\n")
    h.git(repo, "rm", "-q", "--cached", "--ignore-unmatch", "pkg/generated.py")
    h.write(repo / "build/data.txt", "d\n")
    result = GitArchivePackager(
        basepath=str(repo), subpath="pkg", include_pattern=["pkg/generated.py", "build/*"]
    ).package(tmp_path / "o")
    names = files_of(result.archive)
    assert "generated.py" in names  # under the subpath: relative to it
    assert "build/data.txt" in names  # outside: its repository path


# ---------------------------------------------------------------------------- determinism


def test_same_tree_same_bytes_across_touch_clone_and_commits(repo: Path, tmp_path: Path, h) -> None:
    first = GitArchivePackager(basepath=str(repo)).package(tmp_path / "a")
    second = GitArchivePackager(basepath=str(repo)).package(tmp_path / "b")
    assert first.sha256 == second.sha256
    assert first.archive.read_bytes() == second.archive.read_bytes()

    for path in repo.rglob("*"):
        if ".git" not in path.parts and not path.is_symlink():
            os.utime(path, (1_000_000_000, 1_000_000_000))
    assert GitArchivePackager(basepath=str(repo)).package(tmp_path / "c").sha256 == first.sha256

    clone = tmp_path / "elsewhere" / "clone"
    h.git(tmp_path, "clone", "-q", str(repo), str(clone))
    assert GitArchivePackager(basepath=str(clone)).package(tmp_path / "d").sha256 == first.sha256

    h.git(repo, "commit", "-q", "--allow-empty", "-m", "same tree, new commit")
    again = GitArchivePackager(basepath=str(repo)).package(tmp_path / "e")
    assert again.sha256 == first.sha256
    assert again.provenance.git_commit != first.provenance.git_commit


def test_worktree_mode_is_deterministic_and_matches_commit_mode(repo: Path, tmp_path: Path) -> None:
    commit = GitArchivePackager(basepath=str(repo)).package(tmp_path / "a")
    work = GitArchivePackager(basepath=str(repo), uncommitted="include")
    w1 = work.package(tmp_path / "b")
    for path in repo.rglob("*"):
        if ".git" not in path.parts and not path.is_symlink():
            os.utime(path)
    w2 = work.package(tmp_path / "c")
    assert w1.sha256 == w2.sha256 == commit.sha256  # clean tree: same bytes either way


def test_archive_headers_are_normalised(repo: Path, tmp_path: Path) -> None:
    result = GitArchivePackager(basepath=str(repo)).package(tmp_path / "o")
    raw = result.archive.read_bytes()
    assert raw[:3] == b"\x1f\x8b\x08"
    assert raw[3] & 0x08 == 0, "no file name in the gzip header"
    assert raw[4:8] == b"\0\0\0\0", "gzip mtime is 0"
    with tarfile.open(result.archive, "r:gz") as tar:
        infos = tar.getmembers()
    names = [m.name for m in infos]
    assert names == sorted(names)
    for m in infos:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (ARCHIVE_MTIME, 0, 0, "", "")
        assert m.mode in (0o644, 0o755, 0o777)
    assert gzip.decompress(raw)  # a valid stream


# ------------------------------------------------------------------ the user's repo is safe


def test_repository_is_byte_identical_after_every_mode(tmp_path: Path, h) -> None:
    sup, *_ = make_superproject(tmp_path, h)
    h.write(sup / "main.py", "edited\n")
    h.write(sup / "notes.txt", "untracked\n")
    h.write(sup / "third_party/lib/lib.py", "edit inside the submodule\n")
    # Make index entries stat-dirty but content-clean: `git diff` would normally refresh and
    # rewrite the index for these.
    os.utime(sup / ".gitmodules", (1_500_000_000, 1_500_000_000))
    before = h.snapshot(sup)
    out = tmp_path / "out"
    for kwargs in (
        {},
        {"uncommitted": "include"},
        {"uncommitted": "include", "untracked": "include"},
        {"untracked": "include", "include_pattern": "*.txt"},
        {"subpath": "third_party"},
        {"include_submodules": False},
    ):
        GitArchivePackager(basepath=str(sup), **kwargs).package(out)
    with pytest.raises(UncommittedChangesError):
        GitArchivePackager(basepath=str(sup), check_uncommitted_changes=True).package(out)
    after = h.snapshot(sup)
    assert after == before
    # Nothing but finished archives (and the reuse index) in the destination: no temp files.
    for p in out.iterdir():
        if p.name == ".index":
            assert all(q.suffix == ".json" and not q.name.startswith(".") for q in p.iterdir())
        else:
            assert p.name.endswith(".tar.gz") and not p.name.startswith(".")


def test_repo_untouched_by_git_status_comparison(repo: Path, h) -> None:
    """Sanity check of the snapshot itself: plain `git diff` *does* rewrite the index."""
    os.utime(repo / "train.py", (1_500_000_000, 1_500_000_000))
    before = h.snapshot(repo)
    h.git(repo, "diff", "HEAD", "--quiet")
    assert h.snapshot(repo) != before


# ----------------------------------------------------------------------- remote credentials


def test_remote_url_credentials_are_stripped(repo: Path, tmp_path: Path, h) -> None:
    h.git(repo, "remote", "add", "origin", "https://alice:ghp_SECRET@github.com/org/proj.git")
    prov = GitArchivePackager(basepath=str(repo)).package(tmp_path / "o").provenance
    assert prov.git_remote_url == "https://github.com/org/proj.git"
    assert "SECRET" not in str(prov.to_dict())


# ------------------------------------------------------------------------- archive reuse


def test_unchanged_commit_reuses_verified_archive(repo: Path, tmp_path: Path, h) -> None:
    out = tmp_path / "cache"
    first = GitArchivePackager(basepath=str(repo)).package(out)
    again = GitArchivePackager(basepath=str(repo)).package(out)
    assert (first.reused, again.reused) == (False, True)
    assert again.sha256 == first.sha256 and again.provenance.content_sha256

    # A damaged cached archive is noticed (re-hashed) and rebuilt, not trusted.
    data = bytearray(first.archive.read_bytes())
    data[-20] ^= 0xFF
    first.archive.write_bytes(bytes(data))
    rebuilt = GitArchivePackager(basepath=str(repo)).package(out)
    assert rebuilt.reused is False
    assert file_sha256(rebuilt.archive) == first.sha256

    # A new commit with a different tree is a different archive.
    h.write(repo / "train.py", "print('v2')\n")
    h.git(repo, "commit", "-q", "-am", "v2")
    changed = GitArchivePackager(basepath=str(repo)).package(out)
    assert changed.reused is False and changed.sha256 != first.sha256


def test_disk_sources_are_never_reused(repo: Path, tmp_path: Path, h) -> None:
    out = tmp_path / "cache"
    work = GitArchivePackager(basepath=str(repo), uncommitted="include")
    assert work.package(out).reused is False
    assert work.package(out).reused is False
    h.write(repo / "build/x.txt", "x\n")
    pattern = GitArchivePackager(basepath=str(repo), include_pattern="build/*")
    assert pattern.package(out).reused is False
    assert pattern.package(out).reused is False


def test_repository_without_commits(tmp_path: Path, h) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    h.git(empty, "init", "-q")
    with pytest.raises(PackagingError, match="no commits yet"):
        GitArchivePackager(basepath=str(empty)).package(tmp_path / "o")


def test_linked_worktree(repo: Path, tmp_path: Path, h) -> None:
    """`git worktree` checkouts keep their index under .git/worktrees/<name>/."""
    wt = tmp_path / "wt"
    h.git(repo, "worktree", "add", "-q", str(wt))
    h.write(wt / "train.py", "edited in the worktree\n")
    before = h.snapshot(repo)
    result = GitArchivePackager(basepath=str(wt)).package(tmp_path / "o")
    assert result.provenance.dirty_files == ["train.py"]
    assert read_member(result.archive, "train.py") == "print('train')\n"
    assert h.snapshot(repo) == before


def test_preflight_reports_without_building(repo: Path, tmp_path: Path, h) -> None:
    assert GitArchivePackager(basepath=str(repo)).preflight() == []
    h.write(repo / "train.py", "edited\n")
    warnings = GitArchivePackager(basepath=str(repo)).preflight()
    assert len(warnings) == 1 and "train.py" in warnings[0]
    with pytest.raises(UncommittedChangesError):
        GitArchivePackager(basepath=str(repo), uncommitted="refuse").preflight()


def test_importing_packaging_does_not_import_gitpython() -> None:
    import subprocess
    import sys

    code = "import core.packaging, sys; assert 'git' not in sys.modules, 'git imported eagerly'"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr
