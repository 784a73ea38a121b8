"""Run the real huggingface_hub client in a fresh interpreter, pointed at a loopback hub and a cache.

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` once, when it is imported, so every
client interaction that needs a given endpoint or cache runs in a subprocess. The snippet reports back by calling
``emit(value)`` (JSON-serialisable); :func:`run_hf_client` returns the last value emitted.

    result = run_hf_client(
        "from huggingface_hub import hf_hub_download\nemit(hf_hub_download('org/tiny', 'config.json'))",
        endpoint=hub.endpoint,
        cache=tmp_path / "cache",
    )
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
_MARK = "@@hf-client-result@@ "
_PRELUDE = f"import json as _json\n\n\ndef emit(value):\n    print({_MARK!r} + _json.dumps(value), flush=True)\n\n\n"


def client_env(
    *,
    cache: Path,
    endpoint: str | None = None,
    token: str | None = None,
    offline: bool = False,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A clean environment for a client subprocess: nothing inherited that could reach a real Hub or token."""
    home = Path(cache).parent / "hf-home"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if endpoint is not None:
        env["HF_ENDPOINT"] = endpoint
    if token is not None:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    env.update(extra_env or {})
    return env


def run_hf_client(
    code: str,
    *,
    cache: Path,
    endpoint: str | None = None,
    token: str | None = None,
    offline: bool = False,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> Any:
    """Run ``code`` in a subprocess with :func:`client_env`; fail the test with its stderr if it fails."""
    env = client_env(cache=cache, endpoint=endpoint, token=token, offline=offline, extra_env=extra_env)
    proc = subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    results = [line[len(_MARK) :] for line in proc.stdout.splitlines() if line.startswith(_MARK)]
    if proc.returncode != 0 or not results:
        raise AssertionError(
            f"client subprocess failed (exit {proc.returncode}):\n--- stdout\n{proc.stdout[-4000:]}\n"
            f"--- stderr\n{proc.stderr[-8000:]}"
        )
    return json.loads(results[-1])
