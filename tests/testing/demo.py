"""The main job on an embedded default, end to end (``bash scripts/demo``).

1. generate the tiny demo repos (a ~1 MB SD pipeline, a TAESD, an LCM-LoRA) and publish them on a loopback Hub;
2. ``hfbundle build tiny-demo`` through the real huggingface_hub client, into an "online" cache;
3. stop the Hub; ``hfbundle install`` the bundle into a fresh "offline" cache;
4. ``hfbundle run tiny-demo`` in a child process with ``HF_HUB_OFFLINE=1`` and ``HF_ENDPOINT`` at a closed
   port, so any network attempt fails loudly;
5. print where the bundle, the cache and the image are.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .factory import standard_repos
from .hub import HubServer, publish

DEMO_REPOS = ("hfbundle-test/tiny-sd", "hfbundle-test/tiny-taesd", "hfbundle-test/tiny-lcm-lora")
CLOSED_ENDPOINT = "http://127.0.0.1:9"  # discard port: nothing listens, every request fails at once


def _hfbundle(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bundler", *args], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"demo: `hfbundle {' '.join(args)}` failed (exit {proc.returncode})")
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="work folder (default ./demo-out)")
    parser.add_argument("--prompt", default="a tiny red cube on a table")
    args = parser.parse_args(argv)
    out: Path = args.out.absolute()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    base_env["HF_HUB_DISABLE_TELEMETRY"] = "1"

    print("1/4 generating the tiny demo repos and publishing them on a loopback Hub", flush=True)
    # transformers' save_pretrained draws progress bars; the demo's own output is the story.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    repos = standard_repos()
    hub_root = out / "hub"
    for repo_id in DEMO_REPOS:
        folder = repos[repo_id].build(out / "repos" / repos[repo_id].name)
        publish(hub_root, repo_id, folder)

    bundle = out / "tiny-demo.tar.zst"
    with HubServer(hub_root) as hub:
        print(f"2/4 building the bundle through the real huggingface_hub client ({hub.endpoint})", flush=True)
        online_env = {**base_env, "HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(out / "online-cache")}
        build = _hfbundle("build", "tiny-demo", "-o", str(bundle), env=online_env)
        sys.stdout.write("".join(f"    {line}\n" for line in build.stdout.splitlines()))
    print("    the Hub is now stopped", flush=True)

    cache = out / "offline-cache"
    offline_env = {**base_env, "HF_ENDPOINT": CLOSED_ENDPOINT, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    print(f"3/4 installing into a fresh cache, offline: {cache}", flush=True)
    inst = _hfbundle("install", str(bundle), env=offline_env)
    sys.stdout.write("".join(f"    {line}\n" for line in inst.stdout.splitlines()))
    _hfbundle("verify", env=offline_env)
    print("    verify: every blob, link and ref checked", flush=True)

    image = out / "tiny-demo.png"
    print("4/4 generating an image with the CPU runner, Hub unreachable", flush=True)
    run = _hfbundle("run", "tiny-demo", "--prompt", args.prompt, "-o", str(image), "--threads", "1", env=offline_env)
    sys.stdout.write("".join(f"    {line}\n" for line in run.stdout.splitlines()))

    print(f"\nbundle: {bundle}\ncache:  {cache}\nimage:  {image}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
