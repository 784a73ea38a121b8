"""Kill an install with SIGKILL at every step, then check what a loader would see and that a re-run repairs it.

Run as ``python -m tests.hostile.killer BUNDLE TEMPLATE WORKDIR [--copy]`` (by ``test_faults.py``, in its own
process: this one forks, and a test process may have threads). Steps are counted in a child that installs with
hooks on every call that changes the filesystem (``open`` with ``O_CREAT``, ``write`` of our temp files,
``replace``, ``rename``, ``link``, ``symlink``, ``mkdir``, ``unlink``, ``rmdir``) and on the installer's
progress callback (after each streamed chunk: mid-blob). A first run counts the steps; then, for each step K, a
fresh child (forked, so each costs milliseconds) installs into a fresh copy of ``TEMPLATE`` (or an empty cache)
and kills itself with SIGKILL just before step K. The parent then checks the cache with a loader's eyes (no ref
to a missing snapshot, no visible snapshot lacking a file or holding a wrong one, no trees listing naming a
missing file), re-runs the install, and requires ``verify_cache`` to pass and every file to be right.

Prints one JSON document: the steps and, per kill point, what was found.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bundler.cache.leftovers import QUIET_SECONDS, abandoned_repos, remove_abandoned

HOOKED = ("open", "replace", "rename", "link", "symlink", "mkdir", "unlink", "rmdir")


class Steps:
    """Counts filesystem-changing calls and progress events; SIGKILLs the process at step ``kill_at``."""

    def __init__(self, kill_at: int | None) -> None:
        self.kill_at = kill_at
        self.count = 0
        self.labels: list[str] = []
        self.originals: dict[str, Callable[..., Any]] = {}

    def step(self, label: str) -> None:
        self.count += 1
        if self.kill_at is None:
            self.labels.append(label)
        elif self.count == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def install_hooks(self) -> None:
        for name in HOOKED:
            original = getattr(os, name)
            self.originals[name] = original
            setattr(os, name, self._wrap(name, original))
        import bundler.install.run

        barrier = bundler.install.run._sync_filesystem  # the durability barrier between blobs and snapshot entries

        def sync(folder: Path, written: Iterable[Path] = ()) -> None:
            self.step("sync")
            barrier(folder, written)

        bundler.install.run._sync_filesystem = sync

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def hooked(*args: Any, **kwargs: Any) -> Any:
            if name == "open":
                flags = args[1] if len(args) > 1 else kwargs.get("flags", 0)
                if not flags & os.O_CREAT:
                    return original(*args, **kwargs)
            target = args[-1] if name in ("replace", "rename", "link", "symlink") and args else args[0] if args else ""
            self.step(f"{name} {_short(target)}")
            return original(*args, **kwargs)

        return hooked

    def progress(self, p: Any) -> None:
        self.step(f"progress {p.phase} {p.done_bytes}/{p.total_bytes}")


def _short(target: Any) -> str:
    text = str(target)
    for marker in ("/cache/", "/cache"):
        if marker in text:
            return text.split(marker, 1)[1] or "."
    return os.path.basename(text) if "/" in text else text


def _child(bundle: Path, cache: Path, steps: Steps, copy: bool) -> None:
    """In a forked child: install with hooks, then report the steps on a pipe (only the counting run gets there)."""
    from bundler.bundle.reader import open_bundle
    from bundler.install import install

    data = bundle.read_bytes()
    with open_bundle(io.BytesIO(data), threads=1) as reader:
        steps.install_hooks()
        install(reader, cache, copy=copy or None, on_progress=steps.progress)
        for name, original in steps.originals.items():
            setattr(os, name, original)


def run_child(bundle: Path, cache: Path, kill_at: int | None, copy: bool) -> tuple[int, list[str], int]:
    """Fork a child that installs (killed at ``kill_at``); returns its wait status, for a counting run the labels
    of its steps, and the number of steps a child that was not killed took (-1 if it reported nothing)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 0
        try:
            steps = Steps(kill_at)
            _child(bundle, cache, steps, copy)
            os.write(write_fd, json.dumps({"labels": steps.labels, "count": steps.count}).encode())
        except BaseException as e:
            os.write(write_fd, json.dumps({"labels": [f"error: {e!r}"], "count": -1}).encode())
            code = 3
        finally:
            os.close(write_fd)
            os._exit(code)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 1 << 16):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    report: dict[str, Any] = json.loads(b"".join(chunks)) if chunks else {"labels": [], "count": -1}
    return status, list(report["labels"]), int(report["count"])


def _scan_problems(cache: Path) -> list[str]:
    """What huggingface_hub's ``scan_cache_dir`` (``hf cache ls``) trips on: warnings, or a revision folder that
    is not a commit (a staging folder it would list as a revision)."""
    from huggingface_hub import scan_cache_dir

    if not cache.is_dir():
        return []
    info = scan_cache_dir(cache)
    # A repo folder a killed first install left holds blobs only, no snapshots/ (an empty snapshots/ would list a
    # phantom repo): scan_cache_dir warns and lists no repo. That is allowed here, if it is exactly such a leftover
    # (bundler.cache.leftovers): the real client's interrupted first download leaves worse
    # (tests/cache/test_leftovers.py), and the re-run or `doctor --fix` clears it (checked by main()).
    abandoned = {a.folder / "snapshots" for a in abandoned_repos(cache, now=time.time() + 2 * QUIET_SECONDS)}
    out = [
        f"scan_cache_dir: {w}"
        for w in info.warnings
        if not ("Snapshots dir doesn't exist" in str(w) and Path(str(w).split(": ", 1)[1]) in abandoned)
    ]
    for repo in info.repos:
        for rev in repo.revisions:
            if len(rev.commit_hash) != 40:
                out.append(f"scan_cache_dir lists a revision {rev.commit_hash!r}")
            out += [f"scan_cache_dir lists a ref {ref!r}" for ref in rev.refs if ref.endswith(".tmp")]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle", type=Path)
    parser.add_argument("template", type=Path, help="a cache to copy before each run ('-' for an empty cache)")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--copy", action="store_true", help="the copy layout")
    parser.add_argument("--every", type=int, default=1, help="kill at every Nth step only")
    parser.add_argument("--lanes", action="store_true", help="stream every blob on parallel lanes")
    args = parser.parse_args(argv)
    if args.lanes:  # set before forking: every child inherits it
        import bundler.install.run

        bundler.install.run.LANE_MIN_BYTES = 0
        bundler.install.run.MAX_LANES = 2
        os.cpu_count = lambda: 2  # two lanes even on a one-core machine (this process only)

    from bundler.bundle.reader import open_bundle
    from bundler.install import install
    from bundler.verify import verify_cache
    from tests.hostile.harness import loader_problems, scan_view

    with open_bundle(args.bundle) as reader:
        manifest = reader.manifest
    complete = {s.commit: [f.path for f in s.files] for r in manifest.repos for s in r.snapshots}
    template = None if str(args.template) == "-" else args.template

    def fresh(name: str) -> Path:
        folder: Path = args.workdir / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        cache = folder / "cache"
        if template is not None:
            shutil.copytree(template, cache, symlinks=True)
        return cache

    status, labels, _ = run_child(args.bundle, fresh("count"), None, args.copy)
    if status != 0 or any(label.startswith("error") for label in labels):
        print(json.dumps({"error": f"counting run failed: status {status}: {labels[:3]}"}))
        return 1
    results: list[dict[str, Any]] = []
    for k in range(1, len(labels) + 1, args.every):
        cache = fresh(f"kill-{k}")
        status, _, taken = run_child(args.bundle, cache, k, args.copy)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        problems = loader_problems(cache, complete) + _scan_problems(cache)
        if cache.exists() and abandoned_repos(cache, now=time.time() + 2 * QUIET_SECONDS):
            # Killed before a snapshot was placed: `doctor --fix` (instead of the re-run) brings the cache back to
            # what scan_cache_dir listed before. Killed later, a complete snapshot is visible: the re-run's to finish.
            fixed = fresh(f"fix-{k}")
            shutil.rmtree(fixed, ignore_errors=True)
            shutil.copytree(cache, fixed, symlinks=True)
            remove_abandoned(fixed, now=time.time() + 2 * QUIET_SECONDS)
            if scan_view(fixed) != scan_view(fresh(f"before-{k}")):
                problems.append(f"after doctor --fix, scan_cache_dir lists {scan_view(fixed)}")
        for name in (f"fix-{k}", f"before-{k}"):
            shutil.rmtree(args.workdir / name, ignore_errors=True)
        with open_bundle(args.bundle) as reader:
            install(reader, cache, copy=args.copy or None)
        report = verify_cache(cache)
        after = loader_problems(cache, complete) + _scan_problems(cache)
        wrong = []
        for repo in manifest.repos:
            from bundler.cache.layout import RepoLayout

            lay = RepoLayout(cache, repo.repo_type, repo.repo_id)
            for snap in repo.snapshots:
                for f in snap.files:
                    p = lay.snapshot_file(snap.commit, f.path)
                    if not p.is_file() or os.path.getsize(p) != f.size:
                        wrong.append(f.path)
                for ref, commit in repo.refs.items():
                    if lay.read_ref(ref) != commit:
                        wrong.append(f"refs/{ref}")
        results.append(
            {
                "step": k,
                "label": labels[k - 1],
                "killed": killed,
                "completed_in_steps": taken if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else None,
                "problems_after_kill": problems,
                "verify_ok_after_rerun": report.ok,
                "verify_issues": [f"{i.severity} {i.kind}: {i.message}" for i in report.issues],
                "problems_after_rerun": after,
                "wrong_after_rerun": wrong,
            }
        )
        shutil.rmtree(cache.parent, ignore_errors=True)
    print(json.dumps({"steps": labels, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
