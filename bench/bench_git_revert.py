"""Git revert cost against history size: a 10-commit repository vs a 100,000-commit one.

Both repositories have the same tree (``--files`` manifests under ``deploy/``); only the depth of
history differs. Both are built with ``git fast-import`` into bare repositories served over file://.
Each timed run first adds a fresh "bad" commit on top of the branch (untimed, via fast-import), then
times ``RepoCache.revert`` of it: fetch, "already reverted?" check, ancestry check, revert, commit,
push. The cached clone is warmed by one untimed revert first (that is the one-time clone cost, also
printed). Runs of the two repositories alternate so machine noise hits both alike.

    .venv/bin/python bench/bench_git_revert.py [--commits 100000] [--runs 9] [--files 50]

Target (DESIGN.md §6): revert cost flat in history size, big ≤ 2× small.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from controller.gitops.repo import RepoCache

EPOCH = 1_700_000_000
TARGET_RATIO = 2.0


def _data(text: str) -> bytes:
    raw = text.encode()
    return b"data %d\n%s\n" % (len(raw), raw)


def _history(commits: int, files: int) -> Iterator[bytes]:
    """fast-import stream: the first commit creates every file, each later one edits one of them."""
    for n in range(commits):
        yield b"commit refs/heads/main\n"
        yield b"committer Dev <dev@example.test> %d +0000\n" % (EPOCH + n)
        yield _data(f"change {n}")
        indices = range(files) if n == 0 else [n % files]
        for i in indices:
            yield f"M 100644 inline deploy/app-{i:03d}.yaml\n".encode()
            yield _data(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app-{i}}}\ndata: {{rev: '{n}'}}\n")


def _fast_import(bare: Path, stream: Iterator[bytes]) -> None:
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done"],
        cwd=bare,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    for chunk in stream:
        proc.stdin.write(chunk)
    proc.stdin.write(b"done\n")
    proc.stdin.close()
    stderr = proc.stderr.read() if proc.stderr else b""
    if proc.wait() != 0:
        raise SystemExit(f"git fast-import failed: {stderr.decode(errors='replace')}")
    if proc.stderr:
        proc.stderr.close()


def build(base: Path, name: str, commits: int, files: int) -> tuple[Path, float]:
    bare = base / f"{name}.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(bare)], check=True)
    subprocess.run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], cwd=bare, check=True)
    started = time.perf_counter()
    _fast_import(bare, _history(commits, files))
    return bare, time.perf_counter() - started


def add_bad_commit(bare: Path, run: int, files: int) -> str:
    """A fresh tip commit that breaks one manifest; returns its SHA."""

    def stream() -> Iterator[bytes]:
        yield b"commit refs/heads/main\n"
        yield b"committer Dev <dev@example.test> %d +0000\n" % (int(time.time()))
        yield _data(f"bad change {run}")
        yield b"from refs/heads/main^0\n"
        yield f"M 100644 inline deploy/app-{run % files:03d}.yaml\n".encode()
        yield _data(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: broken-{run}}}\n")

    _fast_import(bare, stream())
    return subprocess.run(
        ["git", "rev-parse", "refs/heads/main"], cwd=bare, check=True, capture_output=True, text=True
    ).stdout.strip()


def timed_revert(cache: RepoCache, bare: Path, run: int, files: int) -> float:
    bad = add_bad_commit(bare, run, files)
    started = time.perf_counter()
    outcome = cache.revert(
        bare.as_uri(),
        "main",
        bad,
        message=f"stopline: revert bad change {run}",
        trailers={"Stopline-Release": f"bench/run-{run}"},
    )
    elapsed = time.perf_counter() - started
    if outcome.status != "pushed":
        raise SystemExit(f"revert of {bad} in {bare.name}: {outcome}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=100_000, help="history depth of the big repository")
    parser.add_argument("--small", type=int, default=10, help="history depth of the small repository")
    parser.add_argument("--runs", type=int, default=9, help="timed reverts per repository")
    parser.add_argument("--files", type=int, default=50, help="manifests in the tree (same for both)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="stopline-bench-git-") as tmp:
        base = Path(tmp)
        small, small_build = build(base, "small", args.small, args.files)
        big, big_build = build(base, "big", args.commits, args.files)
        print(f"built: {args.small} commits in {small_build:.2f}s, {args.commits} commits in {big_build:.2f}s")

        with RepoCache(base / "cache") as cache:
            warm = {}
            for bare in (small, big):
                started = time.perf_counter()
                timed_revert(cache, bare, -1, args.files)
                warm[bare.name] = time.perf_counter() - started
            times: dict[str, list[float]] = {small.name: [], big.name: []}
            for run in range(args.runs):
                for bare in (small, big):
                    times[bare.name].append(timed_revert(cache, bare, run, args.files))

    small_ms = statistics.median(times[small.name]) * 1000
    big_ms = statistics.median(times[big.name]) * 1000
    ratio = big_ms / small_ms
    print(f"first revert incl. clone: small {warm[small.name] * 1000:.0f} ms, big {warm[big.name] * 1000:.0f} ms")
    for label, name, commits in (("small", small.name, args.small), ("big", big.name, args.commits)):
        samples = times[name]
        print(
            f"revert, {commits:>7} commits: median {statistics.median(samples) * 1000:6.1f} ms "
            f"(min {min(samples) * 1000:.1f}, max {max(samples) * 1000:.1f}, n={len(samples)}) [{label}]"
        )
    verdict = "OK" if ratio <= TARGET_RATIO else "OVER TARGET"
    print(f"ratio big/small: {ratio:.2f}x (target <= {TARGET_RATIO:.0f}x) {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
