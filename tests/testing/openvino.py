"""FastSDCPU's OpenVINO stack (optimum-intel 2.0.0, openvino 2026.2.0 on huggingface_hub 1.33 / diffusers 0.37) in
a subprocess: ``scripts/setup`` installs it in ``.venv-openvino``.

:func:`export_ir` turns a tiny diffusers SD folder into real OpenVINO IR with that optimum-intel (what
``optimum-cli export openvino`` does for ``rupeshs/sd-turbo-openvino``); :func:`run_openvino` runs a snippet with it
against a cache and reports back through ``emit(value)`` like :mod:`tests.testing.hf_client`, or returns the failed
process when ``expect_failure`` is set (the tests of the loaders' offline requirements need the failure's text).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
OPENVINO_PYTHON = REPO_ROOT / ".venv-openvino" / "bin" / "python"
_MARK = "@@ov-result@@ "
_PRELUDE = (
    "import json as _json, warnings\nwarnings.simplefilter('ignore')\nimport torch\ntorch.set_num_threads(1)\n\n"
    f"def emit(value):\n    print({_MARK!r} + _json.dumps(value), flush=True)\n\n\n"
)


def require_openvino() -> Path:
    """The OpenVINO venv's python; skips the test when it is absent, except in CI (there setup must make it)."""
    if not OPENVINO_PYTHON.exists() and not os.environ.get("CI"):
        pytest.skip("no .venv-openvino (bash scripts/setup creates it): optimum-intel 2.0 + openvino 2026.2")
    return OPENVINO_PYTHON


def base_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment: nothing inherited that could reach a real Hub, a token or OpenVINO's telemetry.

    ``HOME`` is ``home``; its ``intel/openvino_telemetry`` holds ``0`` (the opt-out ``import openvino`` and nncf
    read). No Hub variable is set here: each test sets exactly the ones it is about.
    """
    opt_out = home / "intel" / "openvino_telemetry"
    opt_out.parent.mkdir(parents=True, exist_ok=True)
    opt_out.write_text("0", encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra or {})
    return env


def run_openvino(code: str, env: Mapping[str, str], *, expect_failure: bool = False, timeout: float = 600) -> Any:
    """Run ``code`` with the OpenVINO venv's python in ``env``; the last ``emit``-ted value, or with
    ``expect_failure`` the finished process (it must have failed)."""
    python = require_openvino()
    proc = subprocess.run(
        [str(python), "-c", _PRELUDE + textwrap.dedent(code)],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if expect_failure:
        assert proc.returncode != 0, f"expected the loader to fail, it did not:\n{proc.stdout[-2000:]}"
        return proc
    results = [line[len(_MARK) :] for line in proc.stdout.splitlines() if line.startswith(_MARK)]
    if proc.returncode != 0 or not results:
        raise AssertionError(
            f"OpenVINO subprocess failed (exit {proc.returncode}):\n--- stdout\n{proc.stdout[-4000:]}\n"
            f"--- stderr\n{proc.stderr[-8000:]}"
        )
    return json.loads(results[-1])


_EXPORT = """
import sys
from optimum.intel import OVStableDiffusionPipeline
pipe = OVStableDiffusionPipeline.from_pretrained(sys.argv[1], export=True, compile=False)
pipe.save_pretrained(sys.argv[2])
emit(sorted(str(p.relative_to(sys.argv[2])) for p in __import__("pathlib").Path(sys.argv[2]).rglob("*") if p.is_file()))
"""


def export_ir(source: Path, dest: Path, *, home: Path) -> list[str]:
    """Export the diffusers folder ``source`` to OpenVINO IR in ``dest`` with optimum-intel; the files written."""
    python = require_openvino()
    env = base_env(home, {"HF_HUB_OFFLINE": "1", "HF_HOME": str(home / "hf")})
    proc = subprocess.run(
        [str(python), "-c", _PRELUDE + textwrap.dedent(_EXPORT), str(source), str(dest)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    results = [line[len(_MARK) :] for line in proc.stdout.splitlines() if line.startswith(_MARK)]
    if proc.returncode != 0 or not results:
        raise AssertionError(f"OpenVINO export failed (exit {proc.returncode}):\n{proc.stderr[-8000:]}")
    files: list[str] = json.loads(results[-1])
    return files


# Files the real rupeshs/sd-turbo-openvino (an optimum-cli export) carries besides what the loader reads, and
# files a loader must skip (its ignore patterns): the resolver must leave all of these out, as the loader does.
_CARD = "---\nlibrary_name: diffusers\ntags: [openvino, text-to-image]\n---\n# tiny-sd-openvino\nA tiny SD as IR.\n"
_NOISE = {
    "README.md": _CARD.encode(),
    ".gitattributes": b"*.bin filter=lfs diff=lfs merge=lfs -text\n",
    "unet/model.onnx": b"not a real onnx model, never read\n",
    "text_encoder/model.safetensors": b"never read: optimum-intel ignores *.safetensors\n",
    "flax_model.msgpack": b"never read\n",
}


def make_openvino_repo(dest: Path, *, work: Path, repo_id: str) -> Path:
    """A tiny SD pipeline exported to real OpenVINO IR by optimum-intel 2.0 (``export_ir``), with the tokenizer's
    slow files (``vocab.json``/``merges.txt``, as the real repo has) and the noise above; ``_name_or_path`` set to
    ``repo_id`` so the published bytes do not depend on the temp folder. Returns ``dest``."""
    import shutil

    from tests.testing.factory import make_sd_pipeline

    source = make_sd_pipeline(work / "sd")
    export_ir(source, dest, home=work / "home")
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
        if (source / "tokenizer" / name).is_file() and not (dest / "tokenizer" / name).exists():
            shutil.copyfile(source / "tokenizer" / name, dest / "tokenizer" / name)
    index = json.loads((dest / "model_index.json").read_text(encoding="utf-8"))
    index["_name_or_path"] = repo_id
    (dest / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for rel, data in _NOISE.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    return dest
