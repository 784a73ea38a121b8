"""Benchmarks of hfbundle against doing the same thing by hand, on this machine.

    scripts/bench runner                      # hfbundle run vs a bare diffusers script, tiny demo + heavier
    scripts/bench runner --steps 8 --size 256 --reps 7
    scripts/bench runner --cache-dir ~/.cache/huggingface/hub --recipe lcm-dreamshaper-v7-taesd

Each subcommand times whole processes (what a user waits for), repeats them interleaved, and prints medians
with the ratio to the baseline through one shared printer (``--json`` for machines). Subcommands register in
``main``.

    scripts/bench pack --size-mb 2000         # hfbundle build/install vs tar|zstd (+ sha256sum) by hand
    scripts/bench oci --size-mb 1000          # push / pull --install via a loopback registry vs skopeo copy
    scripts/bench kit --reps 2                # hfbundle kit + install.py vs pip/venv by hand, no network
    scripts/bench pack --size-mb 1000 --only verify  # hf cache verify vs hfbundle verify (loopback Hub)
    scripts/bench scale --files 5000,20000,100000   # many small files: backup/restore/verify vs tar, sha256sum
    scripts/bench scale --files 20000 --repos 200   # … spread over many repos
                                                    # (scale also times doctor and a warm build: --no-model)
    scripts/bench scale --files 5000 --kb 16-64 --no-model   # … files of 16-64 KB (default 1-4)
    scripts/bench scale --files 20000 --size-floor  # … and the smallest bundle any frame layout could make
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

CLOSED_ENDPOINT = "http://127.0.0.1:9"  # discard port: any request fails at once
DEMO_REPOS = ("hfbundle-test/tiny-sd", "hfbundle-test/tiny-taesd", "hfbundle-test/tiny-lcm-lora")


# -- shared: samples, the printer ------------------------------------------------------------------------------


@dataclass
class Series:
    """Timings of one contender in one scenario (seconds), plus any breakdown it reported."""

    name: str
    wall: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)

    def add(self, wall: float, parts: Mapping[str, float] | None = None) -> None:
        self.wall.append(wall)
        for key, value in (parts or {}).items():
            self.parts.setdefault(key, []).append(value)

    def median(self) -> float:
        return statistics.median(self.wall)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n": len(self.wall),
            "median": self.median(),
            "min": min(self.wall),
            "max": max(self.wall),
            "wall": self.wall,
            "parts": {k: statistics.median(v) for k, v in self.parts.items()},
        }


@dataclass
class Scenario:
    title: str
    baseline: Series
    contenders: list[Series]
    target: float | None = None  # the overhead (fraction) the contenders should stay under

    def to_json(self) -> dict[str, Any]:
        base = self.baseline.median()
        return {
            "title": self.title,
            "baseline": self.baseline.to_json(),
            "contenders": [
                {
                    **c.to_json(),
                    "ratio": c.median() / base,
                    "min_ratio": min(c.wall) / min(self.baseline.wall),
                    "paired_overhead": paired_overhead(self.baseline, c),
                }
                for c in self.contenders
            ],
            "target_overhead": self.target,
        }


def paired_overhead(base: Series, other: Series) -> float:
    """Median of the per-round differences (the runs alternate, so slow drift of a shared machine cancels),
    as a fraction of the baseline's median."""
    diffs = [o - b for b, o in zip(base.wall, other.wall, strict=False)]
    return statistics.median(diffs) / base.median()


def print_results(scenarios: Sequence[Scenario], *, as_json: bool = False) -> None:
    """Medians (and spread) per contender, the breakdown each reported, the ratio of medians and of minimums to
    the baseline, and the paired overhead (the verdict: the least sensitive to a busy machine)."""
    if as_json:
        print(json.dumps([s.to_json() for s in scenarios], indent=2))
        return
    for s in scenarios:
        base = s.baseline
        print(f"\n{s.title}")
        print(f"  {'':28} {'median':>8} {'min':>8} {'max':>8}  {'n':>2}  median ratio   min ratio   paired")
        for series in (base, *s.contenders):
            med = series.median()
            if series is base:
                ratios = "baseline"
            else:
                ratios = (
                    f"{med / base.median():.3f}{'':8}{min(series.wall) / min(base.wall):.3f}{'':6}"
                    f"{paired_overhead(base, series) * 100:+.1f}%"
                )
            print(
                f"  {series.name:28} {med:8.3f} {min(series.wall):8.3f} {max(series.wall):8.3f}  "
                f"{len(series.wall):>2}  {ratios}"
            )
            for key, values in sorted(series.parts.items()):
                print(f"      {key:24} {statistics.median(values):8.3f}")
        if s.target is not None:
            worst = max(paired_overhead(base, c) for c in s.contenders)
            verdict = "within" if worst <= s.target else "OVER"
            print(f"  paired overhead {worst * 100:+.1f}%: {verdict} the {s.target * 100:.0f}% target")


def timed(cmd: Sequence[str], env: Mapping[str, str]) -> tuple[float, str]:
    """Wall-clock seconds of one process, and its stdout; a failure stops the benchmark with its stderr."""
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), env=dict(env), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"bench: `{' '.join(cmd[:4])} …` failed (exit {proc.returncode})")
    return wall, proc.stdout


def interleaved(reps: int, contenders: Sequence[Callable[[], None]]) -> None:
    """Run each contender ``reps`` times, alternating the order each round so drift hits all alike."""
    for i in range(reps):
        order = list(contenders) if i % 2 == 0 else list(reversed(contenders))
        for run in order:
            run()


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


# -- runner: hfbundle run vs a bare diffusers script -------------------------------------------------------------

BARE_SCRIPT = textwrap.dedent(
    '''
    """What an app does by hand: the same loads and generation as hfbundle run, without hfbundle."""
    import json, os, sys, time
    t0 = time.perf_counter()
    args = json.loads(sys.argv[1])
    import torch
    import diffusers
    import transformers
    for lib in (diffusers, transformers):  # as hfbundle run does: no loading bars, no advisory warnings
        lib.utils.logging.set_verbosity_error()
        lib.utils.logging.disable_progress_bar()
    torch.set_num_threads(args["threads"])
    t1 = time.perf_counter()
    common = {"cache_dir": args["cache_dir"], "local_files_only": True}
    pipe = diffusers.DiffusionPipeline.from_pretrained(args["pipeline"], torch_dtype=torch.float32, **common)
    if args.get("vae"):
        pipe.vae = diffusers.AutoencoderTiny.from_pretrained(args["vae"], torch_dtype=torch.float32, **common)
    if args.get("lora"):
        pipe.load_lora_weights(args["lora"], weight_name=args["weight_name"], adapter_name="lora", **common)
        if args.get("fuse"):
            pipe.fuse_lora(lora_scale=args.get("scale", 1.0))
    if args.get("scheduler") and type(pipe.scheduler).__name__ != args["scheduler"]:
        pipe.scheduler = getattr(diffusers, args["scheduler"]).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    t2 = time.perf_counter()
    with torch.inference_mode():
        image = pipe(
            args["prompt"],
            num_inference_steps=args["steps"],
            guidance_scale=args["guidance"],
            width=args["width"],
            height=args["height"],
            generator=torch.Generator("cpu").manual_seed(args["seed"]),
        ).images[0]
    t3 = time.perf_counter()
    image.save(args["output"])
    print(json.dumps({"import": t1 - t0, "load": t2 - t1, "generate": t3 - t2}))
    '''
)


@contextmanager
def demo_cache(work: Path) -> Iterator[Path]:
    """The tiny demo repos on a loopback Hub, built into a bundle with hfbundle and installed in a fresh cache."""
    from tests.testing.factory import standard_repos
    from tests.testing.hub import HubServer, publish

    repos = standard_repos()
    for repo_id in DEMO_REPOS:
        publish(work / "hub", repo_id, repos[repo_id].build(work / "repos" / repos[repo_id].name))
    bundle = work / "tiny-demo.tar.zst"
    with HubServer(work / "hub") as hub:
        env = {**base_env(), "HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(work / "online")}
        timed([sys.executable, "-m", "bundler", "build", "tiny-demo", "-o", str(bundle)], env)
    cache = work / "cache"
    env = {**base_env(), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": CLOSED_ENDPOINT, "HF_HUB_CACHE": str(cache)}
    timed([sys.executable, "-m", "bundler", "install", str(bundle)], env)
    yield cache


def bare_args(recipe_spec: str, cache: Path, *, steps: int, size: int | None, threads: int) -> dict[str, Any]:
    """The bare script's arguments from the recipe, the way its author would hard-code them."""
    from bundler.recipe import load_spec

    recipe = load_spec(recipe_spec)
    r = recipe.runner
    by_name = {x.name: x for x in recipe.repos}
    lora = by_name.get(r.lora) if r.lora else None
    return {
        "pipeline": by_name[r.pipeline].repo if r.pipeline else recipe.repos[0].repo,
        "vae": by_name[r.vae].repo if r.vae else None,
        "lora": lora.repo if lora else None,
        "weight_name": lora.weight_name if lora else None,
        "fuse": r.lora_fuse,
        "scale": r.lora_scale,
        "scheduler": r.scheduler,
        "steps": steps,
        "guidance": r.guidance,
        "width": size or r.width,
        "height": size or r.height,
        "seed": 0,
        "threads": threads,
        "cache_dir": str(cache),
        "prompt": "a tiny red cube on a table",
    }


def bench_runner(args: argparse.Namespace) -> list[Scenario]:
    from bundler.recipe import load_spec
    from bundler.runner import physical_cores

    threads = args.threads or physical_cores()
    with tempfile.TemporaryDirectory(prefix="hfbundle-bench-") as tmp:
        work = Path(tmp)
        if args.cache_dir is not None:
            cache_cm: Any = _given(Path(args.cache_dir).expanduser())
        else:
            print("setting up: tiny demo repos → loopback Hub → hfbundle build → hfbundle install", file=sys.stderr)
            cache_cm = demo_cache(work)
        with cache_cm as cache:
            from bundler.runner import OFFLINE_ENV

            # Both get the environment hfbundle run sets for itself, so only what hfbundle adds is measured.
            env = {
                **base_env(),
                **OFFLINE_ENV,
                "HF_ENDPOINT": CLOSED_ENDPOINT,
                "HF_HUB_CACHE": str(cache),
                "OMP_NUM_THREADS": str(threads),
            }
            script = work / "bare.py"
            script.write_text(BARE_SCRIPT)
            runner = load_spec(args.recipe).runner
            configs = [("recipe defaults", runner.steps, None)]
            if args.steps or args.size:
                configs.append(("heavier", args.steps or runner.steps, args.size))
            scenarios = []
            for label, steps, size in configs:
                bare = bare_args(args.recipe, cache, steps=steps, size=size, threads=threads)
                scenarios.append(
                    _runner_scenario(args, env, script, bare, work, threads, f"{label}: {args.recipe}", steps, size)
                )
    return scenarios


@contextmanager
def _given(cache: Path) -> Iterator[Path]:
    yield cache


def _runner_scenario(
    args: argparse.Namespace,
    env: Mapping[str, str],
    script: Path,
    bare: dict[str, Any],
    work: Path,
    threads: int,
    title: str,
    steps: int,
    size: int | None,
) -> Scenario:
    w, h = bare["width"], bare["height"]
    title = f"{title}, {w}x{h}, {steps} steps, {threads} thread(s), {args.reps} reps (seconds, whole process)"
    base = Series("bare diffusers script")
    ours = Series("hfbundle run")

    def run_bare() -> None:
        wall, out = timed([sys.executable, str(script), json.dumps({**bare, "output": str(work / "bare.png")})], env)
        parts = json.loads(out.strip().splitlines()[-1])
        base.add(wall, {k: parts[k] for k in ("import", "load", "generate")})

    def run_ours() -> None:
        cmd = [sys.executable, "-m", "bundler", "run", args.recipe, "--prompt", bare["prompt"]]
        cmd += ["-o", str(work / "ours.png"), "--steps", str(steps), "--threads", str(threads), "--json"]
        cmd += ["--width", str(w), "--height", str(h)]
        wall, out = timed(cmd, env)
        rep = json.loads(out)
        ours.add(
            wall,
            {
                "preflight (doctor)": rep["preflight_seconds"],
                "import": rep["import_seconds"],
                "load": rep["load_seconds"],
                "generate": rep["generate_seconds"],
            },
        )

    for _ in range(args.warmup):  # page cache, .pyc files: run, then forget
        run_bare()
        run_ours()
    for series in (base, ours):
        series.wall.clear()
        series.parts.clear()
    interleaved(args.reps, [run_bare, run_ours])
    return Scenario(title, base, [ours], target=0.05)


# -- backup: hfbundle backup/restore vs tar --zstd of the same cache folder ---------------------------------------

BACKUP_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from bundler.backup import backup, plan_backup
    from bundler.restore import restore
    args = json.loads(sys.argv[1])
    t0 = time.perf_counter()
    if args["mode"] == "backup":
        report = backup(
            plan_backup(Path(args["cache"])), Path(args["output"]), threads=args["threads"], level=args["level"]
        )
        print(json.dumps({"seconds": time.perf_counter() - t0, "bytes_in": report.bytes_packed,
                          "bytes_out": report.bytes_out, "bytes_hashed": report.bytes_hashed}))
    else:
        restore([Path(args["output"])], Path(args["target"]))
        print(json.dumps({"seconds": time.perf_counter() - t0}))
    """
)


def synthetic_cache(cache: Path, size_mb: int) -> int:
    """A symlink-layout cache of ``size_mb`` MB of weights: half fp16-like (normal values as float16), half
    incompressible (random bytes, like quantized or already-compressed data), plus text files, two repos and a
    second revision sharing the big blobs. Returns the bytes of unique content."""
    import hashlib

    import numpy as np

    from bundler.cache.layout import RepoLayout, ensure_cachedir_tag
    from bundler.hashing import git_blob_sha1

    rng = np.random.default_rng(0)
    chunk = 32 << 20

    def fp16(n: int) -> Iterator[bytes]:
        for start in range(0, n, chunk):
            k = min(chunk, n - start) // 2
            yield rng.standard_normal(k, dtype=np.float32).astype(np.float16).tobytes()

    def noise(n: int) -> Iterator[bytes]:
        for start in range(0, n, chunk):
            yield rng.bytes(min(chunk, n - start))

    half = size_mb * 1_000_000 // 2
    vocab = json.dumps({f"tok{i}": i for i in range(40_000)}).encode()
    repos: dict[str, dict[str, Any]] = {
        "bench/sd-like": {
            "unet/diffusion_pytorch_model.fp16.safetensors": (fp16, half * 2 // 3),
            "text_encoder/model.safetensors": (noise, half // 2),
            "tokenizer/vocab.json": vocab,
            "model_index.json": b'{"_class_name": "StableDiffusionPipeline"}\n',
        },
        "bench/vae-like": {
            "diffusion_pytorch_model.fp16.safetensors": (fp16, half // 3),
            "diffusion_pytorch_model.int8.safetensors": (noise, half // 2),
            "config.json": b'{"latent_channels": 4}\n',
        },
    }
    ensure_cachedir_tag(cache)
    total = 0
    for i, (repo_id, files) in enumerate(repos.items()):
        lay = RepoLayout(cache, "model", repo_id)
        lay.blobs.mkdir(parents=True)
        commits = [hashlib.sha1(f"{repo_id}{n}".encode()).hexdigest() for n in (1, 2)]
        for path, spec in files.items():
            versions: list[bytes | None] = [None]  # None: generated, shared by both revisions
            if isinstance(spec, bytes):
                versions = [spec, spec + b"\n"] if path.endswith("config.json") or i == 0 else [spec]
            for n, data in enumerate(versions):
                if data is None:
                    make, size = spec
                    tmp = lay.blobs / "tmp"
                    h = hashlib.sha256()
                    with open(tmp, "wb") as f:
                        for block in make(size):
                            h.update(block)
                            f.write(block)
                    etag, size = h.hexdigest(), tmp.stat().st_size
                    tmp.rename(lay.blob(etag))
                else:
                    etag, size = git_blob_sha1(data), len(data)
                    lay.blob(etag).write_bytes(data)
                total += size
                for commit in commits if len(versions) == 1 else commits[n : n + 1]:
                    link = lay.snapshot_file(commit, path)
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(os.path.relpath(lay.blob(etag), link.parent))
        for ref, commit in (("main", commits[0]), ("refs/pr/1", commits[1])):
            lay.ref(ref).parent.mkdir(parents=True, exist_ok=True)
            lay.ref(ref).write_text(commit)
    return total


def bench_backup(args: argparse.Namespace) -> list[Scenario]:
    """hfbundle backup and restore against ``tar --zstd`` (GNU tar + the zstd CLI, level 3) of the same folder,
    single-threaded zstd and ``zstd -T0``; whole processes, interleaved. Sizes and MB/s go in the breakdown."""
    threads = args.threads
    with tempfile.TemporaryDirectory(prefix="hfbundle-bench-") as tmp:
        work = Path(tmp)
        if args.cache_dir is not None:
            cache = Path(args.cache_dir).expanduser()
            size_in = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file() and not p.is_symlink())
        else:
            cache = work / "hub"
            print(f"setting up: a synthetic {args.size_mb} MB cache", file=sys.stderr)
            size_in = synthetic_cache(cache, args.size_mb)
        script = work / "backup.py"
        script.write_text(BACKUP_SCRIPT)
        env = {**base_env(), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": CLOSED_ENDPOINT}
        mb = size_in / 1e6

        def size_parts(wall: float, out: Path) -> dict[str, float]:
            size = out.stat().st_size
            return {"MB/s": mb / wall, "output MB": size / 1e6, "output/input": size / size_in}

        def tar_pack(series: Series, zstd: str, out: Path) -> Callable[[], None]:
            def run() -> None:
                out.unlink(missing_ok=True)
                wall, _ = timed(["tar", "-I", zstd, "-cf", str(out), "-C", str(cache), "."], env)
                series.add(wall, size_parts(wall, out))

            return run

        def ours_pack(series: Series, out: Path, level: int | None) -> Callable[[], None]:
            def run() -> None:
                out.unlink(missing_ok=True)
                spec = {"mode": "backup", "cache": str(cache), "output": str(out), "threads": threads, "level": level}
                wall, stdout = timed([sys.executable, str(script), json.dumps(spec)], env)
                rep = json.loads(stdout.strip().splitlines()[-1])
                series.add(wall, {**size_parts(wall, out), "in-process s": rep["seconds"]})

            return run

        tar1, tar_t = Series("tar --zstd (zstd -3)"), Series("tar -I 'zstd -3 -T0'")
        ours, ours3 = Series("hfbundle backup (auto level)"), Series("hfbundle backup (level 3)")
        runs = [
            tar_pack(tar1, "zstd -3", work / "a.tar.zst"),
            tar_pack(tar_t, "zstd -3 -T0", work / "b.tar.zst"),
            ours_pack(ours, work / "c.hfb", None),
            ours_pack(ours3, work / "d.hfb", 3),
        ]
        for _ in range(args.warmup):  # page cache, .pyc files: run, then forget
            for run in runs:
                run()
        for s in (tar1, tar_t, ours, ours3):
            s.wall.clear()
            s.parts.clear()
        interleaved(args.reps, runs)

        untar, ours_restore = Series("tar --zstd -xf"), Series("hfbundle restore")

        def run_untar() -> None:
            target = work / "untar"
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            wall, _ = timed(["tar", "-I", "zstd -d", "-xf", str(work / "a.tar.zst"), "-C", str(target)], env)
            untar.add(wall, {"MB/s": mb / wall})

        def run_restore() -> None:
            target = work / "restored"
            shutil.rmtree(target, ignore_errors=True)
            spec = {"mode": "restore", "output": str(work / "c.hfb"), "target": str(target)}
            wall, _ = timed([sys.executable, str(script), json.dumps(spec)], env)
            ours_restore.add(wall, {"MB/s": mb / wall})

        interleaved(args.reps, [run_untar, run_restore])
        where = f"{mb:.0f} MB of unique content, {args.reps} reps, zstd threads: {threads or 'auto'} (seconds)"
        return [
            Scenario(f"backup: pack a cache, {where}", tar1, [tar_t, ours, ours3]),
            Scenario(f"restore: unpack into an empty folder, {where}", untar, [ours_restore]),
        ]


# -- build and install: hfbundle vs tar/zstd/sha256sum by hand ---------------------------------------------------


# A small launcher forks the measured command: a child forked from this (numpy-sized) process would report
# *our* RSS as its peak (Linux carries the parent's high-water mark across fork), the launcher's is ~10 MB.
_LAUNCHER = """
import json, os, sys
spec = json.loads(sys.argv[1])
argv = ["/bin/sh", "-c", spec["cmd"]] if spec["shell"] else spec["cmd"]
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.execvp(argv[0], argv)
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, file=sys.stdout)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measured(cmd: str | Sequence[str], env: Mapping[str, str], *, shell: bool = False) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process (for a shell pipeline: its largest member)."""
    spec = json.dumps({"cmd": cmd if shell else list(cmd), "shell": shell})
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, spec], env=dict(env), capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"bench: `{cmd if shell else ' '.join(cmd)}` failed (exit {proc.returncode})")
    return wall, int(proc.stdout.split()[-1]) / 1024


def synthetic_pipeline(folder: Path, size_mb: int, shard_mb: int = 500) -> int:
    """A diffusers-shaped repo of ``size_mb`` MB of fp16 safetensors: a sharded UNet (with its index), a VAE,
    configs. Values are normal floats cast to fp16, which compress like real fp16 weights (~0.92)."""
    import numpy as np

    rng = np.random.default_rng(0)

    def write_safetensors(path: Path, nbytes: int) -> int:
        n = nbytes // 2
        header = {
            "weight": {"dtype": "F16", "shape": [n], "data_offsets": [0, n * 2]},
            "__metadata__": {"format": "pt"},
        }
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(len(raw).to_bytes(8, "little") + raw)
            done = 0
            while done < n:
                k = min(16 << 20, n - done)
                f.write(rng.standard_normal(k, dtype=np.float32).astype(np.float16).tobytes())
                done += k
        return path.stat().st_size

    total = int(size_mb * 1_000_000)
    unet_bytes, vae_bytes = total * 9 // 10, total // 10
    shards = max(1, round(unet_bytes / (shard_mb * 1_000_000)))
    weight_map: dict[str, str] = {}
    written = 0
    for i in range(shards):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        written += write_safetensors(folder / "unet" / name, unet_bytes // shards)
        weight_map[f"weight.{i}"] = name
    index = {"metadata": {"total_size": unet_bytes}, "weight_map": weight_map}
    (folder / "unet" / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    written += write_safetensors(folder / "vae" / "diffusion_pytorch_model.safetensors", vae_bytes)
    (folder / "unet" / "config.json").write_text('{"_class_name": "UNet2DConditionModel"}\n')
    (folder / "vae" / "config.json").write_text('{"_class_name": "AutoencoderKL"}\n')
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text('{"_class_name": "LCMScheduler"}\n')
    model_index = {
        "_class_name": "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", "LCMScheduler"],
    }
    (folder / "model_index.json").write_text(json.dumps(model_index, indent=1))
    return written


def _series(name: str) -> Series:
    return Series(name)


def bench_pack(args: argparse.Namespace) -> list[Scenario]:
    """Build (warm cache) and install of a synthetic fp16 pipeline, against the by-hand tools in the same run:
    ``tar -ch | zstd -T0 -3`` (verifies nothing), the same followed by ``sha256sum`` (the by-hand pair), and for
    install ``zstd -dc | tar -x`` and untar + ``sha256sum``. Whole processes, interleaved; peak RSS measured."""
    from tests.testing.hub import HubServer, publish

    if shutil.which("zstd") is None:
        raise SystemExit("bench: the zstd command is needed for the baselines (apt-get install zstd)")
    work = Path(tempfile.mkdtemp(prefix="hfbundle-bench-pack-", dir=args.work_dir))
    try:
        repo = work / "repo"
        print(f"writing a {args.size_mb} MB synthetic fp16 pipeline …", file=sys.stderr)
        size = synthetic_pipeline(repo, args.size_mb)
        publish(work / "hub", "bench/sd-fp16", repo)
        shutil.rmtree(repo)
        env = base_env()
        with HubServer(work / "hub") as hub:
            online = {
                **env,
                "HF_ENDPOINT": hub.endpoint,
                "HF_HUB_CACHE": str(work / "cache"),
                "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1",
            }
            lock = work / "lock.json"
            timed([sys.executable, "-m", "bundler", "resolve", "bench/sd-fp16", "-o", str(lock)], online)
            print("warming the cache (first build downloads through the loopback Hub) …", file=sys.stderr)
            timed(
                [sys.executable, "-m", "bundler", "build", "--lock", str(lock), "-o", str(work / "warm.tar.zst"), "-q"],
                online,
            )
            (work / "warm.tar.zst").unlink()
            snap = next((work / "cache" / "models--bench--sd-fp16" / "snapshots").iterdir())
            hand_out, ours_out = work / "hand.tar.zst", work / "ours.tar.zst"
            tar_zstd = f"tar -C '{snap}' -chf - . | zstd -T0 -3 -q -f -o '{hand_out}'"
            sha = f"find -L '{snap}' -type f -print0 | xargs -0 sha256sum > /dev/null"
            s_zstd, s_pair, s_ours, s_pipe, s_cat = (
                _series("tar|zstd -T0 -3"),
                _series("tar|zstd, then sha256sum"),
                _series("hfbundle build (warm)"),
                _series("hfbundle build -o - (null)"),
                _series("cat bundle > file (the write alone)"),
            )

            def add(series: Series, wall: float, rss: float) -> None:
                series.add(wall, {"MB/s": size / wall / 1e6, "peak RSS MB": rss})

            build_cmd = [sys.executable, "-m", "bundler", "build", "--lock", str(lock), "-o", str(ours_out), "-q"]
            if args.threads:
                build_cmd += ["--threads", str(args.threads)]
            # The same build into a pipe (stdout is /dev/null in `measured`): what writing the file costs.
            pipe_cmd = [*build_cmd[: build_cmd.index("-o")], "-o", "-", *build_cmd[build_cmd.index("-o") + 2 :]]
            verify_scenarios = _verify_rows(args, env, online, work / "cache", "bench/sd-fp16", size)
            if args.only == "verify":
                return verify_scenarios
            copy_out = work / "copy.tar.zst"

            def new_file(path: Path) -> None:
                """Every row writes a new file: the one the previous round left is deleted first, untimed.
                Replacing a 1 GB file makes the kernel free its blocks inside the timed run (0.5-1.5 s here,
                ext4 mounted with ``discard``), a cost of the old file, not of the tool writing the new one."""
                path.unlink(missing_ok=True)
                os.sync()

            def fresh_run(series: Series, path: Path, cmd: str | list[str], run_env: dict[str, str]) -> None:
                new_file(path)
                add(series, *measured(cmd, run_env, shell=isinstance(cmd, str)))

            interleaved(
                args.reps,
                [
                    lambda: fresh_run(s_zstd, hand_out, tar_zstd, env),
                    lambda: fresh_run(s_pair, hand_out, f"{tar_zstd} && {sha}", env),
                    lambda: fresh_run(s_ours, ours_out, build_cmd, online),
                    lambda: add(s_pipe, *measured(pipe_cmd, online)),
                    # The floor under `build -o FILE`: writing the finished bundle's bytes (from the page cache)
                    # into a new file on the same disk, nothing else. build -o FILE - build -o - can only beat
                    # it by overlapping the write with compression.
                    lambda: fresh_run(s_cat, copy_out, f"cat '{ours_out}' > '{copy_out}'", env),
                ],
            )
            copy_out.unlink(missing_ok=True)
        bundle = ours_out
        s_untar, s_upair = _series("zstd -dc | tar -x"), _series("untar, then sha256sum")
        s_inst, s_again = _series("hfbundle install (empty cache)"), _series("hfbundle install again (no-op)")
        s_trust = _series("hfbundle install again --trust-existing")
        offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": CLOSED_ENDPOINT}
        dest = work / "dest"

        def fresh() -> Path:
            if dest.exists():
                shutil.rmtree(dest)
            return dest

        def untar(with_sha: bool) -> None:
            d = fresh()
            d.mkdir()
            cmd = f"zstd -dc -q '{bundle}' | tar -x -C '{d}'"
            if with_sha:
                cmd += f" && find '{d}' -type f -print0 | xargs -0 sha256sum > /dev/null"
            add(s_upair if with_sha else s_untar, *measured(cmd, env, shell=True))

        def install_twice() -> None:
            d = fresh()
            cmd = [sys.executable, "-m", "bundler", "install", str(bundle), "--cache-dir", str(d), "-q"]
            add(s_inst, *measured(cmd, offline))
            add(s_again, *measured(cmd, offline))  # re-hashes every blob already there (the default)
            add(s_trust, *measured([*cmd, "--trust-existing"], offline))  # sizes only

        interleaved(args.reps, [lambda: untar(False), lambda: untar(True), install_twice])
        where = f"{size / 1e6:.0f} MB fp16 pipeline, {os.cpu_count()} CPUs"
        return [
            Scenario(f"build: pack a warm cache, {where}", s_pair, [s_zstd, s_ours, s_pipe, s_cat]),
            Scenario(f"install: unpack into an empty folder, {where}", s_untar, [s_upair, s_inst, s_again, s_trust]),
            *verify_scenarios,
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _verify_rows(
    args: argparse.Namespace, env: Mapping[str, str], online: Mapping[str, str], cache: Path, repo: str, size: int
) -> list[Scenario]:
    """``hf cache verify REPO`` (the real client's check: it lists the repo on the loopback Hub, then hashes the
    cached files) against ``hfbundle verify REPO`` (offline) of the same warm cache, interleaved; and
    ``sha256sum`` of the blobs, the one-core floor."""
    hf_cli = Path(sys.executable).parent / "hf"
    if not hf_cli.exists():
        hf_cli = Path(shutil.which("hf") or "hf")
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": CLOSED_ENDPOINT}
    s_hf, s_ours, s_sha = _series("hf cache verify"), _series("hfbundle verify"), _series("sha256sum (blobs)")
    blobs = cache / f"models--{repo.replace('/', '--')}" / "blobs"

    def add(series: Series, wall: float, rss: float) -> None:
        series.add(wall, {"MB/s": size / wall / 1e6, "peak RSS MB": rss})

    hf_cmd = [str(hf_cli), "cache", "verify", repo, "--cache-dir", str(cache), "--format", "quiet"]
    ours_cmd = [sys.executable, "-m", "bundler", "verify", repo, "--cache-dir", str(cache), "--json"]
    interleaved(
        args.reps,
        [
            lambda: add(s_hf, *measured(hf_cmd, online)),
            lambda: add(s_ours, *measured(ours_cmd, offline)),
            lambda: add(s_sha, *measured(f"sha256sum '{blobs}'/* > /dev/null", env, shell=True)),
        ],
    )
    where = f"{size / 1e6:.0f} MB fp16 pipeline, {os.cpu_count()} CPUs"
    return [Scenario(f"verify: a warm cache, {where}", s_hf, [s_ours, s_sha])]


# -- oci: push / pull --install through a loopback registry --------------------------------------------------------


def bench_oci(args: argparse.Namespace) -> list[Scenario]:
    """Push and ``pull --install`` of a synthetic fp16 pipeline through a loopback docker-registry
    (distribution 2.8), against ``skopeo copy`` of the same artifact (to and from the registry) and against the
    local ``install`` of the bundle file, in one run, interleaved; peak RSS of each client process. Every push
    goes to an emptied registry, every install into an empty cache."""
    from tests.testing.hub import HubServer, publish
    from tests.testing.registry import Registry

    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} is needed (bash scripts/setup installs it)")
    work = Path(tempfile.mkdtemp(prefix="hfbundle-bench-oci-", dir=args.work_dir))
    try:
        repo = work / "repo"
        print(f"writing a {args.size_mb} MB synthetic fp16 pipeline …", file=sys.stderr)
        size = synthetic_pipeline(repo, args.size_mb)
        publish(work / "hub", "bench/sd-fp16", repo)
        shutil.rmtree(repo)
        env = base_env()
        bundle = work / "bench.tar.zst"
        with HubServer(work / "hub") as hub:
            online = {**env, "HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(work / "cache")}
            online |= {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
            timed([sys.executable, "-m", "bundler", "build", "bench/sd-fp16", "-o", str(bundle), "-q"], online)
        shutil.rmtree(work / "cache")
        offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": CLOSED_ENDPOINT}
        layout = work / "layout"
        timed([sys.executable, "-m", "bundler", "push", str(bundle), f"oci-layout:{layout}:v1", "-q"], offline)
        reg = Registry(work / "registry")
        ref = f"{reg.host}/bench/sd-fp16:v1"

        def empty_registry() -> None:
            reg.kill()
            shutil.rmtree(reg.storage, ignore_errors=True)
            reg.start()

        def add(series: Series, wall: float, rss: float) -> None:
            series.add(wall, {"MB/s": size / wall / 1e6, "peak RSS MB": rss})

        s_skopeo_push, s_push = _series("skopeo copy oci: → registry"), _series("hfbundle push")
        push_cmd = [sys.executable, "-m", "bundler", "push", str(bundle), ref, "--plain-http", "-q"]
        skopeo_push = ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{ref}"]

        def run_push(series: Series, cmd: list[str]) -> Callable[[], None]:
            def run() -> None:
                empty_registry()
                add(series, *measured(cmd, offline))

            return run

        reg.start()
        try:
            interleaved(args.reps, [run_push(s_skopeo_push, skopeo_push), run_push(s_push, push_cmd)])
            empty_registry()
            timed(push_cmd, offline)
            s_local, s_pull = _series("hfbundle install (file)"), _series("hfbundle pull --install")
            s_skopeo_pull = _series("skopeo copy registry → oci:")
            dest = work / "dest"

            def fresh() -> Path:
                if dest.exists():
                    shutil.rmtree(dest)
                return dest

            def run_local() -> None:
                add(
                    s_local,
                    *measured(
                        [sys.executable, "-m", "bundler", "install", str(bundle), "--cache-dir", str(fresh()), "-q"],
                        offline,
                    ),
                )

            def run_pull() -> None:
                cmd = [sys.executable, "-m", "bundler", "pull", ref, "--install", "--cache-dir", str(fresh())]
                add(s_pull, *measured([*cmd, "--plain-http"], offline))

            def run_skopeo_pull() -> None:
                cmd = ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{fresh()}:v1"]
                add(s_skopeo_pull, *measured(cmd, offline))

            interleaved(args.reps, [run_local, run_pull, run_skopeo_pull])
        finally:
            reg.kill()
        where = f"{size / 1e6:.0f} MB fp16 pipeline, loopback docker-registry, {os.cpu_count()} CPUs (shared)"
        return [
            Scenario(f"push: bundle → empty registry, {where}", s_skopeo_push, [s_push]),
            Scenario(f"pull: registry → cache, {where}", s_local, [s_pull, s_skopeo_pull]),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- kit: an offline machine with only Python, install.py vs the same steps by hand -------------------------------


def bench_kit(args: argparse.Namespace) -> list[Scenario]:
    """The air-gapped round trip on the tiny demo. Making: ``hfbundle kit`` vs by hand (``pip wheel`` of hfbundle,
    ``pip download`` of its needs, ``hfbundle build``). Installing, with no network (``unshare -n`` when
    available): ``install.py`` (sums, venv, pip --no-index, install, verify, doctor) vs by hand (venv,
    ``pip install --no-index --find-links``, ``hfbundle install``, ``hfbundle verify``). Kit size on stderr."""
    from bundler import __version__
    from tests.testing.factory import standard_repos
    from tests.testing.hub import HubServer, publish

    netns = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode == 0
    cut = ["unshare", "-n"] if netns else []
    base_python = str(getattr(sys, "_base_executable", sys.executable))
    work = Path(tempfile.mkdtemp(prefix="hfbundle-bench-kit-"))
    try:
        repos = standard_repos()
        for repo_id in DEMO_REPOS:
            publish(work / "hub", repo_id, repos[repo_id].build(work / "repos" / repos[repo_id].name))
        env = base_env()
        s_hand_make, s_kit = _series("by hand: wheel+download+build"), _series("hfbundle kit")
        s_hand_inst, s_inst = _series("by hand: venv+pip+install+verify"), _series("install.py (+sums, doctor)")
        n = {"make": 0, "inst": 0}
        src = work / "src"  # pip wheel builds in-tree: from a copy, as `hfbundle kit` does
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "tests"))
        kits: list[Path] = []
        with HubServer(work / "hub") as hub:
            online = {**env, "HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(work / "online")}

            pip_download = [sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:", "-d"]

            def make_by_hand() -> None:
                n["make"] += 1
                d = work / f"hand{n['make']}"
                t0 = time.perf_counter()
                for cmd in (
                    [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(d / "wheels"), str(src)],
                    [
                        *pip_download,
                        str(d / "wheels"),
                        str(d / "wheels" / f"hfbundle-{__version__}-py3-none-any.whl"),
                        "pip",
                    ],
                    [sys.executable, "-m", "bundler", "build", "tiny-demo", "-q", "-o", str(d / "demo.tar.zst")],
                ):
                    timed(cmd, online)
                s_hand_make.add(time.perf_counter() - t0)

            def make_kit() -> None:
                n["make"] += 1
                kits.append(work / f"kit{n['make']}")
                s_kit.add(timed([sys.executable, "-m", "bundler", "kit", "tiny-demo", "-o", str(kits[-1])], online)[0])

            interleaved(args.reps, [make_by_hand, make_kit])
        kit = kits[0]
        size = sum(p.stat().st_size for p in kit.rglob("*") if p.is_file())
        wheels = sum(p.stat().st_size for p in (kit / "wheels").glob("*.whl"))
        print(f"kit: {size / 1e6:.1f} MB ({wheels / 1e6:.1f} MB of wheels)", file=sys.stderr)
        bundle = next((kit / "bundles").glob("*.tar.zst"))
        offline_env = {"PATH": env.get("PATH", "/usr/bin:/bin"), "HOME": env.get("HOME", "/root")}
        offline_env |= {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": CLOSED_ENDPOINT, "PIP_CONFIG_FILE": os.devnull}

        def by_hand() -> None:
            n["inst"] += 1
            d = work / f"off-hand{n['inst']}"
            venv_py = str(d / "venv" / "bin" / "python")
            cache = ["--cache-dir", str(d / "cache")]
            t0 = time.perf_counter()
            for cmd in (
                [base_python, "-m", "venv", str(d / "venv")],
                [venv_py, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(kit / "wheels"), "hfbundle"],
                [venv_py, "-m", "bundler", "install", str(bundle), "-q", *cache],
                [venv_py, "-m", "bundler", "verify", str(bundle), *cache],
            ):
                timed([*cut, *cmd], offline_env)
            s_hand_inst.add(time.perf_counter() - t0)

        def with_install_py() -> None:
            n["inst"] += 1
            d = work / f"off-kit{n['inst']}"
            cmd = [base_python, str(kit / "install.py"), "--venv", str(d / "venv"), "--cache-dir", str(d / "cache")]
            s_inst.add(timed([*cut, *cmd], offline_env)[0])

        interleaved(args.reps, [by_hand, with_install_py])
        where = f"tiny demo, kit {size / 1e6:.1f} MB, {'netns' if netns else 'no netns'}, {os.cpu_count()} CPUs"
        return [
            Scenario(f"make the kit (online, pip cache warm), {where}", s_hand_make, [s_kit]),
            Scenario(f"offline: from the kit to a verified cache, {where}", s_hand_inst, [s_inst]),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- scale: many small files (backup, restore, verify) against tar and sha256sum -------------------------------


def small_files_cache(
    cache: Path, files: int, repos: int = 1, seed: int = 0, kb: tuple[int, int] = (1, 4)
) -> tuple[int, int]:
    """A dataset-shaped symlink-layout cache written directly (no Hub): ``repos`` dataset repos sharing
    ``files`` files of ``kb`` (1-4 by default) KB of random bytes, each a git blob (etag = git sha1), one commit
    and a ``main`` ref each, in folders of 1,000 files. Returns (files, bytes of content)."""
    import hashlib
    import random

    from bundler.cache.layout import RepoLayout, ensure_cachedir_tag
    from bundler.hashing import git_blob_sha1

    rnd = random.Random(seed)
    ensure_cachedir_tag(cache)
    per_repo = max(1, files // repos)
    total = n = 0
    for r in range(repos):
        repo_id = f"bench/dataset-{r:04d}"
        lay = RepoLayout(cache, "dataset", repo_id)
        lay.blobs.mkdir(parents=True)
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        snap = lay.snapshot(commit)
        for i in range(per_repo):
            data = rnd.randbytes(rnd.randint(kb[0] << 10, kb[1] << 10))
            etag = git_blob_sha1(data)
            with open(lay.blob(etag), "wb") as f:
                f.write(data)
            link = snap / "data" / f"part-{i // 1000:04d}" / f"row-{i:07d}.bin"
            if i % 1000 == 0:
                link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f"../../../../blobs/{etag}", link)
            total += len(data)
            n += 1
        lay.ref("main").parent.mkdir(parents=True, exist_ok=True)
        lay.ref("main").write_text(commit)
    return n, total


def size_floor(tar_out: Path, ours_out: Path, data: int) -> list[str]:
    """What the smallest bundle of these blobs could be, measured on the backup's own tar stream (docs/FORMAT.md,
    "Small files"): its blob members compressed together in runs of whole members of up to 1 MiB (no frame,
    index record or checksum per member), also with each tar header in a zstd block of its own; its manifest at
    level 9 (the writer's), with a window over all of it, and at 19. Bytes a file over the data, against tar's
    and against the budget of a bundle within 2 % of tar's size."""
    import tarfile

    import zstandard

    stream = subprocess.run(["zstd", "-dcq", str(ours_out)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        members = tar.getmembers()
        manifest_member, blobs = members[0], members[1:]
        manifest = stream[manifest_member.offset_data : manifest_member.offset_data + manifest_member.size]
    n = len(blobs)
    spans = [(m.offset, m.offset_data + -(-m.size // 512) * 512) for m in blobs]

    runs: list[list[tuple[int, int]]] = [[]]  # whole members, up to 1 MiB of tar bytes a run
    held = 0
    for start, end in spans:
        if runs[-1] and held + end - start > 1 << 20:
            runs.append([])
            held = 0
        runs[-1].append((start, end))
        held += end - start

    def shared(blocks: bool) -> int:
        cctx = zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=not blocks)
        if not blocks:
            return sum(len(cctx.compress(stream[run[0][0] : run[-1][1]])) for run in runs)
        total = 0
        for run in runs:
            obj = cctx.compressobj()
            for a, b in run:
                for part in (stream[a : a + 512], stream[a + 512 : b]):
                    total += len(obj.compress(part)) + len(obj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
            total += len(obj.flush())
        return total

    def packed(level: int, window: int | None = None) -> int:
        if window is None:  # as the writer compresses it
            cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
        else:
            params = zstandard.ZstdCompressionParameters.from_level(level, window_log=window, write_checksum=1)
            cctx = zstandard.ZstdCompressor(compression_params=params)
        return len(cctx.compress(manifest))

    window = max(10, (len(manifest) - 1).bit_length())
    tar_size = tar_out.stat().st_size
    per = {
        "tar --zstd": tar_size - data,
        "budget (tar + 2 %)": int(tar_size * 1.02) - data,
        "this bundle": ours_out.stat().st_size - data,
        "blobs in shared 1 MiB runs": shared(False) - data,
        "  the same, tar headers in blocks of their own": shared(True) - data,
        "manifest at level 9": packed(9),
        "  level 9, a window over all of it": packed(9, window),
        "  level 19": packed(19),
    }
    lines = [f"\nsize floor: {n} files, bytes a file over the data (docs/FORMAT.md, 'Small files')"]
    lines += [f"  {name:48} {value / n:8.1f}" for name, value in per.items()]
    return lines


def _kb_range(text: str) -> tuple[int, int]:
    """``MIN-MAX`` (KB, 1 <= MIN <= MAX <= 1024) for ``bench scale --kb``."""
    low, sep, high = text.partition("-")
    try:
        lo, hi = int(low), int(high if sep else low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected MIN-MAX in KB, e.g. 1-4") from None
    if not 1 <= lo <= hi <= 1024:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 1 <= MIN <= MAX <= 1024")
    return lo, hi


def bench_scale(args: argparse.Namespace) -> list[Scenario]:
    """hfbundle backup / restore / verify of a many-small-files cache against ``tar --zstd -cf`` / ``-xf`` and
    ``sha256sum`` of the same files, at each size in ``--files``; interleaved whole processes, peak RSS and the
    time per file in the breakdown. Linearity: compare ``ms/file`` across sizes."""
    if shutil.which("zstd") is None:
        raise SystemExit("bench: the zstd command is needed for the baselines (apt-get install zstd)")
    sizes = [int(x) for x in str(args.files).split(",") if x]
    scenarios: list[Scenario] = []
    env = {**base_env(), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": CLOSED_ENDPOINT}
    works: list[Path] = []
    try:
        for n_files in sizes:
            work = Path(tempfile.mkdtemp(prefix="hfbundle-bench-scale-", dir=args.work_dir))
            works.append(work)
            cache = work / "hub"
            print(f"writing {n_files} small files in {args.repos} repo(s) …", file=sys.stderr)
            n, size = small_files_cache(cache, n_files, args.repos, kb=args.kb)
            scenarios += _scale_round(args, env, work, cache, n, size)
            if not args.no_model:
                scenarios += _scale_model_round(args, env, work, n_files)
    finally:
        # Deleted only at the end: on ext4 without a journal (this VM's disk), creating files within 60-360 s
        # of deleting many makes each inode allocation step over the recently deleted ones (`recently_deleted`
        # in ext4's ialloc.c): `tar -xf` of 20,000 files took 1.8 s in a fresh folder and 18-28 s just after
        # an `rm -rf` of the previous round's. Every round extracts into a folder of its own instead.
        for work in works:
            shutil.rmtree(work, ignore_errors=True)
    return scenarios


def _scale_round(
    args: argparse.Namespace, env: Mapping[str, str], work: Path, cache: Path, n: int, size: int
) -> list[Scenario]:
    hf = [sys.executable, "-m", "bundler"]
    tar_out, ours_out = work / "tar.tar.zst", work / "ours.tar.zst"

    def add(series: Series, wall: float, rss: float) -> None:
        series.add(wall, {"ms/file": wall / n * 1000, "peak RSS MB": rss})

    def sized(series: Series, out: Path) -> None:
        series.parts.setdefault("output MB", []).append(out.stat().st_size / 1e6)

    s_tar, s_backup = _series("tar --zstd -cf"), _series("hfbundle backup")

    def run_tar() -> None:
        tar_out.unlink(missing_ok=True)
        add(s_tar, *measured(["tar", "--zstd", "-cf", str(tar_out), "-C", str(cache), "."], env))
        sized(s_tar, tar_out)

    def run_backup() -> None:
        ours_out.unlink(missing_ok=True)
        add(s_backup, *measured([*hf, "backup", "--cache-dir", str(cache), "-o", str(ours_out), "-q"], env))
        sized(s_backup, ours_out)

    interleaved(args.reps, [run_tar, run_backup])
    if args.size_floor:
        lines = size_floor(tar_out, ours_out, size)
        print("\n".join(lines), file=sys.stderr if args.json else sys.stdout, flush=True)

    s_untar, s_restore = _series("tar --zstd -xf"), _series("hfbundle restore")
    rounds = itertools.count()

    def fresh() -> Path:
        """A new folder for each extraction, none deleted before the end (see :func:`bench_scale`)."""
        return work / f"dest-{next(rounds)}"

    def run_untar() -> None:
        d = fresh()
        d.mkdir()
        add(s_untar, *measured(["tar", "--zstd", "-xf", str(tar_out), "-C", str(d)], env))

    def run_restore() -> None:
        d = fresh()
        add(s_restore, *measured([*hf, "restore", str(ours_out), "--cache-dir", str(d), "-q"], env))

    restore_reps = args.restore_reps if args.restore_reps is not None else args.reps
    interleaved(restore_reps, [run_untar, run_restore])

    s_sha, s_verify = _series("sha256sum (blobs)"), _series("hfbundle verify")
    sha = f"find '{cache}' -path '*/blobs/*' -type f -print0 | xargs -0 sha256sum > /dev/null"

    def run_sha() -> None:
        add(s_sha, *measured(sha, env, shell=True))

    def run_verify() -> None:
        add(s_verify, *measured([*hf, "verify", "--cache-dir", str(cache), "--json"], env))

    interleaved(args.reps, [run_sha, run_verify])
    kb = f"{args.kb[0]}-{args.kb[1]} KB"
    where = f"{n} files of {kb} ({size / 1e6:.0f} MB) in {args.repos} repo(s), {os.cpu_count()} CPUs"
    return [
        Scenario(f"scale backup: {where}", s_tar, [s_backup]),
        Scenario(f"scale restore: {where}", s_untar, [s_restore]),
        Scenario(f"scale verify: {where}", s_sha, [s_verify]),
    ]


def _scale_model_round(args: argparse.Namespace, env: Mapping[str, str], work: Path, n_files: int) -> list[Scenario]:
    """``doctor`` and a warm ``build --lock`` of a model repo of ``n_files`` small files (git blobs, 1-4 KB of
    random bytes, folders of 1,000): published to the loopback Hub, resolved through it, its cache written
    directly as huggingface_hub lays it out (a cold build through the loopback server takes ~7 ms a file).
    Against ``sha256sum`` of the blobs and ``tar -ch | zstd -T0 -3`` of the snapshot, as ``bench pack``."""
    import random

    from bundler.cache.layout import RepoLayout, ensure_cachedir_tag
    from bundler.hashing import git_blob_sha1
    from tests.testing.hub import HubServer, publish

    repo_id, rnd = "bench/many-files", random.Random(1)
    folder, cache = work / "model-files", work / "model-hub"
    files: list[tuple[str, bytes]] = []
    for i in range(n_files):
        files.append((f"data/part-{i // 1000:04d}/row-{i:07d}.txt", rnd.randbytes(rnd.randint(1024, 4096))))
    for rel, data in files:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    commit = publish(work / "store", repo_id, folder)
    shutil.rmtree(folder)
    ensure_cachedir_tag(cache)
    lay = RepoLayout(cache, "model", repo_id)
    lay.blobs.mkdir(parents=True)
    for rel, data in files:
        etag = git_blob_sha1(data)
        with open(lay.blob(etag), "wb") as f:
            f.write(data)
        link = lay.snapshot(commit) / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("../" * rel.count("/") + f"../../blobs/{etag}", link)
    lay.ref("main").parent.mkdir(parents=True)
    lay.ref("main").write_text(commit)
    size = sum(len(d) for _, d in files)
    del files
    lock = work / "many-files.lock.json"
    with HubServer(work / "store") as hub:
        online = {**env, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0"}
        timed([sys.executable, "-m", "bundler", "resolve", repo_id, "-o", str(lock)], online)
    hf = [sys.executable, "-m", "bundler"]
    offline = {**env, "HF_HUB_CACHE": str(cache)}
    snap = lay.snapshot(commit)
    hand_out, ours_out = work / "model-hand.tar.zst", work / "model-ours.tar.zst"

    def add(series: Series, wall: float, rss: float) -> None:
        series.add(wall, {"ms/file": wall / n_files * 1000, "peak RSS MB": rss})

    s_sha, s_doctor = _series("sha256sum (blobs)"), _series("hfbundle doctor")
    sha = f"find '{lay.blobs}' -type f -print0 | xargs -0 sha256sum > /dev/null"

    def run_sha() -> None:
        add(s_sha, *measured(sha, offline, shell=True))

    def run_doctor() -> None:
        add(s_doctor, *measured([*hf, "doctor", repo_id, "--cache-dir", str(cache), "--json"], offline))

    interleaved(args.reps, [run_sha, run_doctor])
    s_tar, s_build = _series("tar -ch | zstd -T0 -3"), _series("hfbundle build --lock (warm)")

    def run_tar() -> None:
        add(s_tar, *measured(f"tar -C '{snap}' -chf - . | zstd -T0 -3 -q -f -o '{hand_out}'", offline, shell=True))

    def run_build() -> None:
        ours_out.unlink(missing_ok=True)
        add(s_build, *measured([*hf, "build", "--lock", str(lock), "-o", str(ours_out), "-q"], offline))

    interleaved(args.reps, [run_tar, run_build])
    where = f"a model repo of {n_files} files of 1-4 KB ({size / 1e6:.0f} MB), {os.cpu_count()} CPUs"
    return [Scenario(f"scale doctor: {where}", s_sha, [s_doctor]), Scenario(f"scale build: {where}", s_tar, [s_build])]


# -- entry point -----------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "runner", help="hfbundle run vs a bare diffusers script (same cache, steps, size, seed, threads)"
    )
    p.add_argument("--recipe", default="tiny-demo", help="recipe to run (default: tiny-demo)")
    p.add_argument("--cache-dir", help="an installed cache to use (default: set up the tiny demo in a temp folder)")
    p.add_argument("--reps", type=int, default=5, help="timed runs of each (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each first (default 1)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: physical cores)")
    p.add_argument("--steps", type=int, default=None, help="also run a heavier generation with this many steps")
    p.add_argument("--size", type=int, default=None, help="… and this width and height (multiple of 8)")
    p.set_defaults(func=bench_runner)

    p = sub.add_parser("backup", help="hfbundle backup/restore vs tar --zstd of the same cache folder")
    p.add_argument("--cache-dir", help="a cache to back up (default: a synthetic one in a temp folder)")
    p.add_argument("--size-mb", type=int, default=300, help="size of the synthetic cache (default 300)")
    p.add_argument("--reps", type=int, default=3, help="timed runs of each (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each first (default 1)")
    p.add_argument("--threads", type=int, default=0, help="hfbundle's zstd threads (default 0: one per CPU)")
    p.set_defaults(func=bench_backup)

    p = sub.add_parser("pack", help="hfbundle build/install vs tar|zstd and sha256sum by hand (synthetic fp16)")
    p.add_argument("--size-mb", type=int, default=2000, help="size of the synthetic pipeline (default 2000)")
    p.add_argument("--reps", type=int, default=5, help="timed runs of each, interleaved (default 5)")
    p.add_argument("--threads", type=int, default=0, help="hfbundle's zstd threads (default 0: one per CPU)")
    p.add_argument("--work-dir", default=None, help="where to write the temp files (default: $TMPDIR)")
    p.add_argument("--only", choices=("verify",), default=None, help="only the verify rows (hf cache verify vs ours)")
    p.set_defaults(func=bench_pack)

    p = sub.add_parser("oci", help="hfbundle push / pull --install vs skopeo copy and local install (registry)")
    p.add_argument("--size-mb", type=int, default=1000, help="size of the synthetic pipeline (default 1000)")
    p.add_argument("--reps", type=int, default=3, help="timed runs of each (default 3)")
    p.add_argument("--work-dir", default=None, help="where to write the temp files (default: $TMPDIR)")
    p.set_defaults(func=bench_oci)

    p = sub.add_parser("kit", help="hfbundle kit + install.py vs the same steps by hand, with no network")
    p.add_argument("--reps", type=int, default=2, help="timed runs of each (default 2)")
    p.set_defaults(func=bench_kit)

    p = sub.add_parser("scale", help="many small files: backup/restore/verify vs tar --zstd and sha256sum")
    p.add_argument("--files", default="5000,20000", help="comma-separated file counts (default 5000,20000)")
    p.add_argument("--repos", type=int, default=1, help="spread the files over this many repos (default 1)")
    p.add_argument("--reps", type=int, default=3, help="timed runs of each (default 3)")
    p.add_argument("--restore-reps", type=int, default=None, help="timed restores (default: --reps)")
    p.add_argument(
        "--kb",
        type=_kb_range,
        default=(1, 4),
        help="sizes of the dataset cache's files: MIN-MAX KB of random bytes (default 1-4)",
    )
    p.add_argument("--no-model", action="store_true", help="leave out doctor and build (a model repo of as many files)")
    p.add_argument(
        "--size-floor",
        action="store_true",
        help="also measure the smallest bundle of the backup's blobs (shared frames; docs/FORMAT.md)",
    )
    p.add_argument("--work-dir", default=None, help="where to write the temp files (default: $TMPDIR)")
    p.set_defaults(func=bench_scale)

    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} logical CPUs, python {sys.version.split()[0]}", file=sys.stderr)
    print_results(args.func(args), as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
