"""Packaging benchmark: a 5,000-file / 200 MB repository, packed, uploaded, relaunched.

Run alone: ``python bench/bench_packaging.py`` (``--files``/``--mb`` to change the size,
``--json`` for machine-readable output). Prints:

* seconds to package the commit (GitArchivePackager, cold and warm) and the working tree
  (``uncommitted="include"``, files read from disk), with the archive size;
* peak memory of the packaging process (``ru_maxrss`` of a fresh child interpreter, before
  and after packaging, plus its git subprocesses): archives are streamed, so the peak must
  stay far below the 200 MB being packed;
* "relaunch with unchanged code": upload through the local transport twice; the second
  must send 0 bytes (content-addressed remote cache); repackaging into the same local cache
  reuses the archive (re-hashed, not re-compressed).

The generated repository is cached in the temp dir (keyed by its shape), so only the first
run pays for generating and committing it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)


def generate_repo(n_files: int, total_mb: int) -> Path:
    """A committed repo shaped like ML code plus a few checkpoints; cached between runs.

    ~98% of the files are source-like text (compressible); the rest are random binary
    blobs holding about half the bytes (incompressible, like weights or data shards).
    """
    base = (
        Path(tempfile.gettempdir()) / "nemorun-bench-packaging" / f"repo-v2-{n_files}-{total_mb}mb"
    )
    if (base / ".bench-complete").exists():
        return base / "repo"
    shutil.rmtree(base, ignore_errors=True)
    repo = base / "repo"
    repo.mkdir(parents=True)
    rng = random.Random(42)
    total = total_mb * 1_000_000
    n_binary = max(1, n_files // 50)
    n_text = n_files - n_binary - 1  # + scripts/train.sh
    binary_each = (total // 2) // n_binary
    text_each = (total - binary_each * n_binary) // n_text
    vocab = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 12)))
        for _ in range(4000)
    ] + ["def", "return", "self", "import", "(", ")", ":", "=", "\n", "    ", "torch", "."]
    pool = " ".join(rng.choice(vocab) for _ in range(1_200_000)).encode()
    for i in range(n_text):
        path = repo / f"src/pkg{i % 50:02d}/mod_{i:05d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        start = rng.randrange(0, len(pool) - text_each)
        path.write_bytes(f"# module {i}\n".encode() + pool[start : start + text_each])
    for i in range(n_binary):
        path = repo / f"assets/shard_{i:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(binary_each))
    (repo / "scripts").mkdir()
    (repo / "scripts/train.sh").write_text("#!/bin/sh\npython -m src.pkg00.mod_00000\n")
    (repo / "scripts/train.sh").chmod(0o755)
    _git(repo, "init", "-q", "-b", "main")
    # Uncompressed loose objects: generating the fixture fast matters more than its size.
    _git(repo, "-c", "core.looseCompression=0", "add", "-A")
    _git(repo, "-c", "core.looseCompression=0", "commit", "-q", "-m", "bench fixture")
    (base / ".bench-complete").write_text("ok\n")
    return repo


def _status_mb(field: str) -> float | None:
    """``VmHWM``/``VmRSS`` of this process in MB (Linux). Unlike ``ru_maxrss`` the high-water
    mark is per address space, so it does not inherit the parent's peak across fork+exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _child_pack(repo: str, out: str, mode: str) -> None:
    """Runs in a fresh interpreter so the peak RSS is the packaging's own."""
    from core.packaging import GitArchivePackager

    rss_before = _status_mb("VmRSS")
    packager = GitArchivePackager(basepath=repo, uncommitted=mode)
    start = time.perf_counter()
    result = packager.package(Path(out))
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "sha256": result.sha256,
                "reused": result.reused,
                "archive_bytes": result.size,
                "files": result.provenance.file_count,
                "rss_before_mb": rss_before,
                "rss_peak_mb": peak,
                "git_children_peak_mb": children,
            }
        )
    )


def pack_in_child(repo: Path, out: Path, mode: str = "warn") -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child-pack", str(repo), str(out), mode],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"packaging child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


async def _uploads(archive: Path, sha256: str, remote: Path) -> dict:
    from core.packaging import upload_archive
    from core.transport.local import LocalTransport

    transport = LocalTransport()
    sent: list[int] = []
    real_put = transport.put

    async def counting_put(local: Path, remote_path: str) -> None:  # what really crossed
        sent.append(Path(local).stat().st_size)
        await real_put(local, remote_path)

    transport.put = counting_put  # type: ignore[method-assign]
    t0 = time.perf_counter()
    first = await upload_archive(transport, archive, sha256, str(remote))
    t1 = time.perf_counter()
    second = await upload_archive(transport, archive, sha256, str(remote))
    t2 = time.perf_counter()
    return {
        "first_bytes": first.bytes_sent,
        "first_seconds": t1 - t0,
        "relaunch_bytes": second.bytes_sent,
        "relaunch_skipped": second.skipped,
        "relaunch_check_seconds": t2 - t1,
        "bytes_through_put": sum(sent),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    t = time.perf_counter()
    repo = generate_repo(args.files, args.mb)
    gen_seconds = time.perf_counter() - t
    repo_bytes = sum(
        p.stat().st_size for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts
    )

    with tempfile.TemporaryDirectory(prefix="nemorun-bench-pack-") as tmp:
        work = Path(tmp)
        cold = pack_in_child(repo, work / "a")
        warm = pack_in_child(repo, work / "b")
        tree = pack_in_child(repo, work / "c", mode="include")
        archive = work / "a" / f"{cold['sha256']}.tar.gz"
        uploads = asyncio.run(_uploads(archive, cold["sha256"], work / "remote-cache"))
        # Relaunch with unchanged code: packaging again into the same local cache finds the
        # archive built from the same git objects (re-hashed, not re-compressed).
        relaunch = pack_in_child(repo, work / "a")

    figures = {
        "repo_files": cold["files"],
        "repo_mb": repo_bytes / 1e6,
        "generate_seconds": gen_seconds,
        "pack_cold_seconds": cold["seconds"],
        "pack_warm_seconds": warm["seconds"],
        "pack_worktree_seconds": tree["seconds"],
        "archive_mb": cold["archive_bytes"] / 1e6,
        "pack_mb_per_s": repo_bytes / 1e6 / warm["seconds"],
        "deterministic": cold["sha256"] == warm["sha256"] == tree["sha256"] == relaunch["sha256"],
        "relaunch_pack_seconds": relaunch["seconds"],
        "relaunch_pack_reused": relaunch["reused"],
        "rss_before_mb": cold["rss_before_mb"],
        "rss_peak_mb": max(r["rss_peak_mb"] for r in (cold, warm, tree, relaunch)),
        "git_children_peak_mb": max(cold["git_children_peak_mb"], warm["git_children_peak_mb"]),
        **{f"upload_{k}": v for k, v in uploads.items()},
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"repository            {figures['repo_files']} files, {figures['repo_mb']:.0f} MB"
            f"  (fixture ready in {gen_seconds:.1f} s; cached in the temp dir)"
        )
        print(
            f"package commit        {cold['seconds']:.1f} s cold, {warm['seconds']:.1f} s warm"
            f"  ({figures['pack_mb_per_s']:.0f} MB/s) → {figures['archive_mb']:.0f} MB .tar.gz"
        )
        print(f"package working tree  {tree['seconds']:.1f} s")
        print(f"same sha256 each time {figures['deterministic']}")
        print(
            f"peak RSS (packager)   {figures['rss_peak_mb']:.0f} MB"
            f"  (before packaging: {figures['rss_before_mb']:.0f} MB;"
            f" git subprocesses peak {figures['git_children_peak_mb']:.0f} MB)"
        )
        print(
            f"first upload          {uploads['first_bytes'] / 1e6:.0f} MB in"
            f" {uploads['first_seconds']:.1f} s (local transport)"
        )
        print(
            f"relaunch, same code   {uploads['relaunch_bytes']} bytes uploaded"
            f" (remote hash check {uploads['relaunch_check_seconds']:.2f} s); repackaging"
            f" {relaunch['seconds']:.2f} s (archive reused: {relaunch['reused']})"
        )
    return figures


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child-pack":
        _child_pack(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
