"""Crafted archives against both extractors: nothing is ever written outside the destination.

Every attack runs three ways: the local extractor (:func:`extract_local`), the cluster path
(:func:`extract_archive` over a transport that runs the real GNU ``tar``), and the local
backend's submit. Each time the whole test directory is snapshotted before and after: the
attack must leave it byte-for-byte unchanged (no destination, no staging leftovers, nothing
outside), and the cluster's ``tar`` must never have been started.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from backends.local.backend import LocalBackend
from core.engine.executors import LocalExecutor
from core.engine.protocol import BackendError, JobSpec
from core.packaging import PackagingError, PatternPackager, extract_archive
from core.packaging.extract import (
    EXTRACTED_MARKER,
    MAX_LINK_HOPS,
    ArchiveHashError,
    UnsafeArchiveError,
    check_archive,
    extract_local,
    tar_extract_argv,
)

# ------------------------------------------------------------------------------- crafting

Build = Callable[[tarfile.TarFile, Path], None]


def _member(
    tar: tarfile.TarFile,
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    link: str = "",
    pax: dict[str, str] | None = None,
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.linkname = link
    if pax:
        info.pax_headers = dict(pax)
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def craft(cache: Path, build: Build, outside: Path, tail: bytes = b"") -> tuple[Path, str]:
    """A ``.tar.gz`` built by ``build``, stored as ``<cache>/<sha256>.tar.gz``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar, outside)
    raw = buf.getvalue()
    if tail:
        # Insert before the end-of-archive blocks: where GNU tar would keep reading.
        end = len(raw.rstrip(b"\0"))
        end += -end % 512
        raw = raw[:end] + tail + b"\0" * 10240
    data = gzip.compress(raw, mtime=0)
    sha = hashlib.sha256(data).hexdigest()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{sha}.tar.gz"
    path.write_bytes(data)
    return path, sha


def _long_chain(tar: tarfile.TarFile) -> tuple[str, str]:
    """16 directories of 247 characters, each with a one-letter symlink to it: returns the
    short chain (``a/b/…/p``) and the real path it resolves to (past PATH_MAX)."""
    comp = "d" * 247
    steps = "abcdefghijklmnop"
    path = ""
    for step in steps:
        _member(tar, os.path.join(path, comp), tarfile.DIRTYPE)
        _member(tar, os.path.join(path, step), tarfile.SYMTYPE, link=comp)
        path = os.path.join(path, comp)
    return "/".join(steps), path


def cve_2025_4517(tar: tarfile.TarFile, outside: Path) -> None:
    """The CVE-2025-4517 shape: 16 nested 247-character directories reached through
    one-letter symlinks, so ``a/b/…/p`` is short but resolves past PATH_MAX, where
    ``os.path.realpath`` stops resolving. A link there climbs back to the root, and a link
    through it escapes one more level; a file is then written through that."""
    chain, _ = _long_chain(tar)
    _member(tar, f"{chain}/l", tarfile.SYMTYPE, link="../" * len(chain.split("/")))
    _member(tar, "escape", tarfile.SYMTYPE, link=f"{chain}/l/../{outside.name}")
    _member(tar, "escape/pwned", data=b"escaped\n")


def cve_2025_4517_untraversed(tar: tarfile.TarFile, outside: Path) -> None:
    """The same chain, with every member at its real path (nothing is placed through a
    symlink): only resolving the link targets against the archive catches it."""
    chain, path = _long_chain(tar)
    _member(tar, f"{path}/l", tarfile.SYMTYPE, link="../" * len(chain.split("/")))
    _member(tar, "escape", tarfile.SYMTYPE, link=f"{chain}/l/../{outside.name}")


def _rel_to(outside: Path, tail: str) -> str:
    """A relative path from the destination (``<tmp>/job/code``) to ``<outside>/<tail>``."""
    return f"../../{outside.name}/{tail}"


ATTACKS: dict[str, Build] = {
    "dotdot file": lambda t, o: _member(t, _rel_to(o, "pwned"), data=b"x"),
    "dotdot inside a path": lambda t, o: _member(t, f"a/../../../{o.name}/pwned", data=b"x"),
    "absolute file path": lambda t, o: _member(t, str(o / "pwned"), data=b"x"),
    "symlink absolute, then a file through it": lambda t, o: (
        _member(t, "s", tarfile.SYMTYPE, link=str(o)),
        _member(t, "s/pwned", data=b"x"),
    ),
    "symlink relative out, then a file through it": lambda t, o: (
        _member(t, "s", tarfile.SYMTYPE, link=_rel_to(o, "")),
        _member(t, "s/pwned", data=b"x"),
    ),
    "harmless symlink, then a file through it": lambda t, o: (
        _member(t, "s", tarfile.SYMTYPE, link="."),
        _member(t, "s/pwned", data=b"x"),
    ),
    "directory replaced by a symlink, then a file": lambda t, o: (
        _member(t, "d", tarfile.DIRTYPE),
        _member(t, "d", tarfile.SYMTYPE, link=str(o)),
        _member(t, "d/pwned", data=b"x"),
    ),
    "file then a symlink of the same name": lambda t, o: (
        _member(t, "f", data=b"x"),
        _member(t, "f", tarfile.SYMTYPE, link=str(o / "secret")),
    ),
    "hard link to a file outside": lambda t, o: (
        _member(t, "h", tarfile.LNKTYPE, link=str(o / "secret")),
        _member(t, "h", data=b"overwritten\n"),
    ),
    "hard link via ..": lambda t, o: _member(t, "h", tarfile.LNKTYPE, link=_rel_to(o, "secret")),
    "symlink to an absolute path": lambda t, o: _member(
        t, "passwd", tarfile.SYMTYPE, link="/etc/passwd"
    ),
    "symlink chain escaping": lambda t, o: (
        _member(t, "a", tarfile.SYMTYPE, link="b/x"),
        _member(t, "b", tarfile.SYMTYPE, link="c/../.."),
        _member(t, "c", tarfile.DIRTYPE),
    ),
    "symlink through a symlinked dir and ..": lambda t, o: (
        _member(t, "deep/er", tarfile.DIRTYPE),
        _member(t, "x", tarfile.SYMTYPE, link="deep/er"),
        _member(t, "y", tarfile.SYMTYPE, link="x/../../.."),
    ),
    "lexically inside, really outside": lambda t, o: (
        _member(t, "x", tarfile.SYMTYPE, link="."),
        _member(t, "y", tarfile.SYMTYPE, link="x/.."),  # normpath says ".", the kernel ".."
    ),
    "symlink loop": lambda t, o: (
        _member(t, "a", tarfile.SYMTYPE, link="b"),
        _member(t, "b", tarfile.SYMTYPE, link="a"),
    ),
    "CVE-2025-4517 long symlink chain": cve_2025_4517,
    "CVE-2025-4517 chain, members at real paths": cve_2025_4517_untraversed,
    "character device": lambda t, o: _member(t, "null", tarfile.CHRTYPE),
    "block device": lambda t, o: _member(t, "sda", tarfile.BLKTYPE),
    "FIFO": lambda t, o: _member(t, "fifo", tarfile.FIFOTYPE),
    "sparse pax keys": lambda t, o: _member(
        t, "f", data=b"x", pax={"GNU.sparse.name": _rel_to(o, "pwned")}
    ),
    "NUL in a name": lambda t, o: _member(t, "a", data=b"x", pax={"path": "ok\0../../x"}),
}


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every path under ``root`` (no link followed) → (content or link target, mode)."""
    out: dict[str, tuple[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if os.path.islink(full):
                what = "->" + os.readlink(full)
            elif os.path.isfile(full):
                what = hashlib.sha256(Path(full).read_bytes()).hexdigest()
            else:
                what = "dir"
            out[os.path.relpath(full, root)] = (what, st.st_mode)
    return out


@pytest.fixture
def area(tmp_path: Path) -> dict[str, Path]:
    """``outside`` (a victim dir with a secret), ``cache`` (the package cache) and ``job``."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret\n")
    job = tmp_path / "job"
    job.mkdir(mode=0o700)
    return {"root": tmp_path, "outside": outside, "cache": tmp_path / "packages", "job": job}


# ------------------------------------------------------------------------------- attacks


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_attack_is_refused_by_both_extractors_and_writes_nothing(
    attack: str, area: dict[str, Path], h
) -> None:
    archive, sha = craft(area["cache"], ATTACKS[attack], area["outside"])
    before = snapshot(area["root"])
    dest = area["job"] / "code"

    with pytest.raises((UnsafeArchiveError, ArchiveHashError)):
        extract_local(archive, dest, sha)
    assert snapshot(area["root"]) == before

    transport = h.DirTransport()  # runs the real GNU tar, as on a cluster
    with pytest.raises(PackagingError, match="refusing to extract|not a readable"):
        await extract_archive(transport, str(archive), str(dest), sha, local_archive=archive)
    assert not any(c[0] == "tar" for c in transport.commands), "tar ran on a refused archive"
    assert snapshot(area["root"]) == before

    spec = JobSpec(
        experiment_id="e",
        job_name="j",
        run_tag="nrt-e-j",
        argv=["true"],
        executor=LocalExecutor(),
        job_dir=str(area["job"]),
        workdir=str(area["job"]),
        archive=str(archive),
        archive_sha256=sha,
    )
    with pytest.raises(BackendError, match="extract"):
        await LocalBackend().submit(spec)
    assert snapshot(area["root"]) == before


@pytest.mark.skipif(sys.version_info >= (3, 11, 13), reason="this Python has the CVE-2025-4517 fix")
def test_cve_shape_really_escapes_tarfile_data_filter_here(
    area: dict[str, Path], monkeypatch
) -> None:
    """Proof that the crafted shape above is a real attack on this interpreter's tarfile."""
    archive, _ = craft(area["cache"], cve_2025_4517, area["outside"])
    # Relative destination, long absolute cwd: creation stays under PATH_MAX, realpath not.
    work = area["root"] / ("w" * 200)
    (work / "dest").mkdir(parents=True)
    (work / area["outside"].name).mkdir()
    monkeypatch.chdir(work)
    with tarfile.open(archive) as tar:
        tar.extractall("dest", filter="data")
    assert (work / area["outside"].name / "pwned").read_text() == "escaped\n"


def test_cve_shape_is_refused_with_the_same_long_cwd(area: dict[str, Path], monkeypatch) -> None:
    archive, sha = craft(area["cache"], cve_2025_4517, area["outside"])
    work = area["root"] / ("w" * 200)
    (work / area["outside"].name).mkdir(parents=True)
    monkeypatch.chdir(work)
    with pytest.raises(UnsafeArchiveError):
        extract_local(archive, Path("dest"), sha)
    assert sorted(os.listdir(work)) == [area["outside"].name]
    assert os.listdir(work / area["outside"].name) == []
    archive, sha = craft(area["cache"], cve_2025_4517_untraversed, area["outside"])
    with pytest.raises(UnsafeArchiveError, match="'escape': symlink to .* points outside"):
        extract_local(archive, Path("dest"), sha)
    assert sorted(os.listdir(work)) == [area["outside"].name]


def test_member_hidden_behind_a_damaged_header_is_refused(area: dict[str, Path]) -> None:
    """tarfile stops quietly at a bad header; GNU tar skips it and reads on. Data after the
    point where tarfile stopped is refused, so both tools always see the same members."""
    hidden = io.BytesIO()
    with tarfile.open(fileobj=hidden, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _member(tar, "sneaky", tarfile.SYMTYPE, link=str(area["outside"]))
    junk = b"\x01" * 512  # a header with a wrong checksum
    archive, sha = craft(
        area["cache"],
        lambda t, o: _member(t, "ok.txt", data=b"fine\n"),
        area["outside"],
        tail=junk + hidden.getvalue().rstrip(b"\0").ljust(1024, b"\0"),
    )
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["ok.txt"]  # what tarfile alone would have believed
    with pytest.raises(UnsafeArchiveError, match="after the end"):
        check_archive(archive, sha)


def test_bytes_not_matching_the_recorded_sha_are_never_parsed(area: dict[str, Path]) -> None:
    archive, sha = craft(
        area["cache"], lambda t, o: _member(t, "a.txt", data=b"a"), area["outside"]
    )
    data = bytearray(archive.read_bytes())
    data[-12] ^= 0xFF  # inside the gzip trailer: still the same name, other bytes
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveHashError, match="hashes to"):
        extract_local(archive, area["job"] / "code", sha)
    renamed = archive.with_name("0" * 64 + ".tar.gz")
    archive.rename(renamed)
    with pytest.raises(UnsafeArchiveError, match="must be named"):
        extract_local(renamed, area["job"] / "code", sha)
    assert not (area["job"] / "code").exists()


def test_hop_limit_matches_the_kernel(area: dict[str, Path]) -> None:
    def chain(n: int) -> Build:
        def build(t: tarfile.TarFile, o: Path) -> None:
            _member(t, "target.txt", data=b"end\n")
            _member(t, "l0", tarfile.SYMTYPE, link="target.txt")
            for i in range(1, n):
                _member(t, f"l{i}", tarfile.SYMTYPE, link=f"l{i - 1}")

        return build

    ok, ok_sha = craft(area["cache"], chain(MAX_LINK_HOPS), area["outside"])
    dest = extract_local(ok, area["job"] / "code", ok_sha)
    # The kernel follows the same chain: the limits agree.
    assert (dest / f"l{MAX_LINK_HOPS - 1}").read_text() == "end\n"
    deep, deep_sha = craft(area["cache"], chain(MAX_LINK_HOPS + 1), area["outside"])
    with pytest.raises(UnsafeArchiveError, match="hops"):
        check_archive(deep, deep_sha)


# ------------------------------------------------------------------- one extraction policy


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """Path → (contents or link target, permission bits) for comparing two extractions."""
    out = {}
    for rel, (what, mode) in snapshot(root).items():
        if rel != EXTRACTED_MARKER:
            out[rel] = (what, mode & 0o7777)
    return out


@pytest.mark.parametrize("umask", [0o022, 0o077])
async def test_local_and_cluster_extraction_give_the_same_tree(
    tmp_path: Path, h, umask: int
) -> None:
    src = tmp_path / "src"
    h.write(src / "train.py", "print('hi')\n")
    h.write(src / "bin/run.sh", "#!/bin/sh\n", executable=True)
    h.write(src / "pkg/deep/mod.py", "X = 1\n")
    os.symlink("pkg/deep/mod.py", src / "mod_link.py")
    os.symlink("../train.py", src / "bin/train_link.py")
    packed = PatternPackager(include_pattern="**", relative_path=str(src)).package(
        tmp_path / "packages"
    )
    old = os.umask(umask)
    try:
        started = time.time()
        local = extract_local(packed.archive, tmp_path / "local" / "code", packed.sha256)
        remote = tmp_path / "remote" / "code"
        await extract_archive(
            h.DirTransport(),
            str(packed.archive),
            str(remote),
            packed.sha256,
            local_archive=packed.archive,
        )
    finally:
        os.umask(old)
    assert tree(local) == tree(remote)
    assert (local / "mod_link.py").read_text() == "X = 1\n"
    assert tree(local)["bin/run.sh"][1] == 0o755 & ~umask
    assert tree(local)["train.py"][1] == 0o644 & ~umask
    for root in (local, remote):  # extraction time, not the archive's 1980 (like tar -m)
        for rel in ("train.py", "pkg/deep/mod.py", "bin/run.sh"):
            assert (root / rel).stat().st_mtime >= started - 2
    assert os.stat(local).st_mode & 0o777 == 0o700
    assert tar_extract_argv("a", "d")[:4] == ["tar", "-x", "-z", "-m"]


def test_a_complete_extraction_is_reused_and_a_partial_one_replaced(tmp_path: Path, h) -> None:
    src = tmp_path / "src"
    h.write(src / "a.txt", "a\n")
    packed = PatternPackager(include_pattern="*", relative_path=str(src)).package(tmp_path / "p")
    dest = tmp_path / "job" / "code"
    dest.mkdir(parents=True)
    (dest / "leftover").write_text("from a crashed older extraction\n")
    extract_local(packed.archive, dest, packed.sha256)
    assert sorted(os.listdir(dest)) == [EXTRACTED_MARKER, "a.txt"]
    (dest / "a.txt").write_text("edited by the job\n")
    extract_local(packed.archive, dest, packed.sha256)  # a retried submit: kept as is
    assert (dest / "a.txt").read_text() == "edited by the job\n"
    assert [p for p in os.listdir(dest.parent) if p != "code"] == []  # no staging left


def test_many_files_of_awkward_sizes_extract_exactly(tmp_path: Path, h) -> None:
    """Sizes straddling tar blocks and read buffers: the one-pass reader never rewinds."""
    import random

    rng = random.Random(4517)
    src = tmp_path / "src"
    sizes = [0, 1, 511, 512, 513, 65535, 65536, 65537, (1 << 20) + 7, 3 << 20]
    sizes += [rng.randrange(0, 200_000) for _ in range(150)]
    for i, size in enumerate(sizes):
        h.write(src / f"d{i % 7}" / f"f{i}.bin", rng.randbytes(size))
    packed = PatternPackager(include_pattern="**", relative_path=str(src)).package(tmp_path / "p")
    dest = extract_local(packed.archive, tmp_path / "job" / "code", packed.sha256)
    for i in range(len(sizes)):
        rel = Path(f"d{i % 7}") / f"f{i}.bin"
        assert (dest / rel).read_bytes() == (src / rel).read_bytes(), rel


async def test_relaunch_of_a_tampered_cache_entry_fails_the_job_and_writes_nothing(
    area: dict[str, Path], h
) -> None:
    """The reported path: a crafted archive in ``<home>/packages``, its sha256 put in the
    parent's provenance, reused by ``relaunch``. The job fails with the refusal as reason."""
    import json

    from core.config import Script
    from core.engine import Engine, Plan
    from core.engine.states import JobState
    from core.store import Store

    src = area["root"] / "src"
    h.write(src / "hello.txt", "hi\n")
    engine = Engine(Store(area["root"] / "home"))
    plan = Plan(title="parent")
    plan.add(
        Script(inline="cat hello.txt"),
        LocalExecutor(packager=PatternPackager(include_pattern="*", relative_path=str(src))),
        name="cat",
    )
    parent = await engine.wait((await engine.launch(plan)).id)
    assert parent.state is JobState.SUCCEEDED
    archive, sha = craft(engine.package_cache, cve_2025_4517_untraversed, area["outside"])
    prov_file = engine.store.job_dir(parent.id, "cat") / "provenance.json"
    prov = json.loads(prov_file.read_text())
    prov["archive_sha256"] = sha
    prov_file.write_text(json.dumps(prov))

    relaunch = engine.relaunch_plan(parent.id)
    assert relaunch.jobs[0].package is not None and relaunch.jobs[0].package.archive == archive
    child = await engine.wait((await engine.launch(relaunch)).id)
    assert child.state is JobState.FAILED
    assert "refusing to extract" in (child.jobs[0].reason or "")
    assert "points outside the tree" in (child.jobs[0].reason or "")
    assert os.listdir(area["outside"]) == ["secret"]
    assert not (engine.store.job_dir(child.id, "cat") / "code").exists()


def test_a_destination_replaced_by_a_symlink_is_refused(tmp_path: Path, h) -> None:
    src = tmp_path / "src"
    h.write(src / "a.txt", "a\n")
    packed = PatternPackager(include_pattern="*", relative_path=str(src)).package(tmp_path / "p")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / EXTRACTED_MARKER).touch()  # would pass for "already extracted"
    (tmp_path / "job").mkdir()
    os.symlink(elsewhere, tmp_path / "job" / "code")
    with pytest.raises(UnsafeArchiveError, match="destination is a symlink"):
        extract_local(packed.archive, tmp_path / "job" / "code", packed.sha256)
    assert sorted(os.listdir(elsewhere)) == [EXTRACTED_MARKER]
    assert os.listdir(tmp_path / "job") == ["code"]
