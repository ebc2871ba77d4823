"""Pattern and hybrid layouts, the no-op packager, serialization and provenance."""

from __future__ import annotations

import itertools
import json
import tarfile
from pathlib import Path

import pytest

from core.engine.executors import LocalExecutor, profile_from_dict
from core.packaging import (
    GitArchivePackager,
    HybridPackager,
    Packager,
    PackagingError,
    PatternPackager,
    Provenance,
    as_packager,
    diff_provenance,
    packager_from_dict,
    strip_url_credentials,
)
from core.packaging.archive import ArchiveError, Entry, write_archive
from core.packaging.provenance import MAX_LISTED_FILES


def files_of(archive: Path) -> set[str]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name for m in tar.getmembers() if not m.isdir()}


@pytest.fixture
def configs(tmp_path: Path, h) -> Path:
    root = tmp_path / "work"
    h.write(root / "configs/a.yaml", "a: 1\n")
    h.write(root / "configs/nested/b.yaml", "b: 2\n")
    h.write(root / "configs/notes.txt", "not yaml\n")
    h.write(root / "data/.git/HEAD", "never packaged\n")
    h.write(root / "data/x.csv", "1,2\n")
    return root


# -------------------------------------------------------------------------------- patterns


def test_pattern_packager_layout_relative_to_relative_path(configs: Path, tmp_path: Path) -> None:
    packager = PatternPackager(
        include_pattern=["configs/**/*.yaml", "data"], relative_path=str(configs)
    )
    result = packager.package(tmp_path / "out")
    assert files_of(result.archive) == {"configs/a.yaml", "configs/nested/b.yaml", "data/x.csv"}
    assert result.provenance.packager == "PatternPackager"
    assert result.provenance.git_commit is None
    assert result.provenance.files == ["configs/a.yaml", "configs/nested/b.yaml", "data/x.csv"]


def test_pattern_packager_defaults_to_cwd_and_warns_on_no_match(
    configs: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(configs / "configs")
    result = PatternPackager(include_pattern=["*.yaml", "*.md"]).package(tmp_path / "o")
    assert files_of(result.archive) == {"a.yaml"}
    where = configs / "configs"
    assert result.warnings == [f"include pattern '*.md' matched no files under {where}"]


def test_pattern_packager_refuses_paths_outside(configs: Path, tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match="outside"):
        PatternPackager(include_pattern="../*", relative_path=str(configs / "configs")).package(
            tmp_path / "o"
        )
    with pytest.raises(PackagingError, match="needs include_pattern"):
        PatternPackager(relative_path=str(configs)).package(tmp_path / "o")


# ---------------------------------------------------------------------------------- hybrid


def test_hybrid_places_each_under_its_name(repo: Path, configs: Path, tmp_path: Path) -> None:
    hybrid = HybridPackager(
        sub_packagers={
            "code": GitArchivePackager(basepath=str(repo), subpath="pkg"),
            "cfg": PatternPackager(include_pattern="configs/*.yaml", relative_path=str(configs)),
        }
    )
    result = hybrid.package(tmp_path / "out")
    assert files_of(result.archive) == {"code/__init__.py", "code/model.py", "cfg/configs/a.yaml"}
    prov = result.provenance
    assert set(prov.sub) == {"code", "cfg"}
    assert prov.sub["code"].git_commit is not None
    assert prov.sub["code"].files == ["__init__.py", "model.py"]
    assert prov.files == ["cfg/configs/a.yaml", "code/__init__.py", "code/model.py"]


def test_hybrid_extract_at_root_overlays_and_rejects_conflicts(
    repo: Path, configs: Path, tmp_path: Path
) -> None:
    root = HybridPackager(
        sub_packagers={
            "code": GitArchivePackager(basepath=str(repo), subpath="pkg"),
            "cfg": PatternPackager(include_pattern="configs/*.yaml", relative_path=str(configs)),
        },
        extract_at_root=True,
    )
    assert files_of(root.package(tmp_path / "a").archive) == {
        "__init__.py",
        "model.py",
        "configs/a.yaml",
    }
    clash = HybridPackager(
        sub_packagers={
            "one": PatternPackager(include_pattern="configs/a.yaml", relative_path=str(configs)),
            "two": PatternPackager(include_pattern="configs/*.yaml", relative_path=str(configs)),
        },
        extract_at_root=True,
    )
    with pytest.raises(PackagingError, match="provided by both 'one' and 'two'"):
        clash.package(tmp_path / "b")


def test_base_packager_packages_nothing(tmp_path: Path) -> None:
    result = Packager().package(tmp_path / "out")
    assert (result.archive, result.sha256, result.size) == (None, None, 0)
    assert result.provenance.packager == "Packager"
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ archives


def test_archive_rejects_unsafe_and_duplicate_paths(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="unsafe"):
        write_archive([Entry("../escape", "symlink", link_target="x")], tmp_path)
    with pytest.raises(ArchiveError, match="two archive entries"):
        write_archive(
            [Entry("a", "symlink", link_target="x"), Entry("a", "symlink", link_target="y")],
            tmp_path,
        )
    assert list(tmp_path.iterdir()) == []


def test_progress_reports_bytes(tmp_path: Path, h) -> None:
    root = tmp_path / "src"
    h.write(root / "big.bin", b"x" * (3 << 20))
    h.write(root / "small.txt", "s")
    calls: list[tuple[int, int]] = []
    PatternPackager(include_pattern="*", relative_path=str(root)).package(
        tmp_path / "o", progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == ((3 << 20) + 1, (3 << 20) + 1)
    assert len(calls) >= 3 and all(a[0] <= b[0] for a, b in itertools.pairwise(calls))


# ------------------------------------------------------------------------- serialization


def test_packagers_round_trip_through_json() -> None:
    packagers = [
        Packager(),
        GitArchivePackager(
            basepath="/src/proj",
            subpath="py",
            ref="v1",
            include_submodules=False,
            include_pattern=["build/*.so"],
            check_uncommitted_changes=True,
            untracked="include",
        ),
        PatternPackager(include_pattern=["*.py"], relative_path="/src"),
        HybridPackager(
            sub_packagers={
                "code": GitArchivePackager(subpath="py"),
                "cfg": PatternPackager(include_pattern="*.yaml"),
            },
            extract_at_root=True,
        ),
    ]
    for packager in packagers:
        stored = json.loads(json.dumps(packager.to_dict()))
        assert stored["__type__"] == type(packager).__name__
        assert packager_from_dict(stored) == packager
    git = packagers[1].to_dict()
    assert (git["uncommitted"], git["untracked"], git["check_uncommitted_changes"]) == (
        "refuse",
        "include",
        True,
    )


def test_packager_from_dict_errors_and_defaults() -> None:
    assert packager_from_dict(None) == Packager()
    assert packager_from_dict({"type": "PatternPackager", "include_pattern": "*.py"}) == (
        PatternPackager(include_pattern="*.py")
    )
    with pytest.raises(ValueError, match="unknown packager type"):
        packager_from_dict({"__type__": "ZipPackager"})
    with pytest.raises(ValueError, match="no setting"):
        packager_from_dict({"__type__": "GitArchivePackager", "sub_path": "x"})
    with pytest.raises(TypeError):
        as_packager("git")  # type: ignore[arg-type]


def test_executor_profile_stores_and_rebuilds_its_packager() -> None:
    packager = GitArchivePackager(subpath="src", uncommitted="include")
    profile = LocalExecutor(packager=packager)
    stored = json.loads(json.dumps(profile.to_dict()))
    rebuilt = profile_from_dict(stored)
    assert as_packager(rebuilt.packager) == packager


# ---------------------------------------------------------------------------- provenance


def test_provenance_round_trip_and_long_file_lists() -> None:
    prov = Provenance(
        "GitArchivePackager",
        {"__type__": "GitArchivePackager"},
        git_commit="a" * 40,
        git_remote_url="https://tok@host/x.git",
        submodules={"lib": "b" * 40},
    )
    prov.set_files([f"f{i:05d}.py" for i in range(MAX_LISTED_FILES + 1)])
    prov.set_dirty_diff("x" * (2 << 20))
    prov.sub["cfg"] = Provenance("PatternPackager")
    data = json.loads(json.dumps(prov.to_dict()))
    assert data["files"] is None and data["file_count"] == MAX_LISTED_FILES + 1
    assert len(data["files_sha256"]) == 64
    assert data["dirty_diff_truncated"] is True and len(data["dirty_diff"]) < (2 << 20)
    assert data["git_remote_url"] == "https://host/x.git"
    back = Provenance.from_dict({**data, "from_the_future": 1})
    assert back == prov


@pytest.mark.parametrize(
    ("url", "clean"),
    [
        ("https://user:pass@github.com/o/r.git", "https://github.com/o/r.git"),
        ("https://ghp_token@github.com/o/r.git", "https://github.com/o/r.git"),
        (
            "https://oauth2:glpat-x@gitlab.com:8443/o/r.git?private_token=y",
            "https://gitlab.com:8443/o/r.git",
        ),
        ("ssh://git:secret@host:2222/o/r.git", "ssh://git@host:2222/o/r.git"),
        ("ssh://git@host/o/r.git", "ssh://git@host/o/r.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("/srv/git/r.git", "/srv/git/r.git"),
        ("https://github.com/o/r.git", "https://github.com/o/r.git"),
    ],
)
def test_strip_url_credentials(url: str, clean: str) -> None:
    assert strip_url_credentials(url) == clean


def test_diff_provenance_describes_code_changes() -> None:
    a = Provenance(
        "GitArchivePackager",
        {"ref": "HEAD"},
        archive_sha256="1" * 64,
        git_commit="a" * 40,
        git_branch="main",
        files=["x.py"],
        files_sha256="f1",
    )
    assert diff_provenance(a, Provenance.from_dict(a.to_dict())) == []

    b = Provenance.from_dict(a.to_dict())
    b.git_commit = "b" * 40
    b.archive_sha256 = "2" * 64
    b.set_dirty_diff("+new line\n")
    b.set_files(["x.py", "y.py"])
    lines = diff_provenance(a, b)
    assert f"commit: {'a' * 12}..{'b' * 12} (git log {'a' * 40}..{'b' * 40})" in lines
    assert "dirty diff: none → 1 line(s)" in lines
    assert "files added: y.py" in lines
    assert f"archive: sha256 {'1' * 12} → {'2' * 12}" in lines

    c = Provenance.from_dict(b.to_dict())
    c.set_dirty_diff("+other\n")
    assert any(line.startswith("dirty diff changed") for line in diff_provenance(b, c))

    hybrid_a = Provenance("HybridPackager", sub={"code": a})
    hybrid_b = Provenance("HybridPackager", sub={"code": b})
    assert any(line.startswith("[code] commit:") for line in diff_provenance(hybrid_a, hybrid_b))
    assert diff_provenance(None, None) == []
    assert diff_provenance(None, a)[0].startswith("code: no provenance →")


def test_long_and_non_ascii_names_round_trip(tmp_path: Path, h) -> None:
    root = tmp_path / "src"
    long_name = "/".join(["d" * 60] * 3) + "/file.txt"
    h.write(root / long_name, "long\n")
    h.write(root / "données/résumé.txt", "é\n")
    packager = PatternPackager(include_pattern="**/*.txt", relative_path=str(root))
    a = packager.package(tmp_path / "a")
    b = packager.package(tmp_path / "b")
    assert a.sha256 == b.sha256
    assert files_of(a.archive) == {long_name, "données/résumé.txt"}
