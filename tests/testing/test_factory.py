"""The tiny-repo factory: shapes, sizes, byte-for-byte determinism, and real loaders on the local folders."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bundler
from tests.testing import factory
from tests.testing.factory import (
    LORA_WEIGHT_NAME,
    PROMPT,
    SIZE_BUDGET,
    build_all,
    make_sd_pipeline,
    standard_repos,
)

pytestmark = pytest.mark.slow

_SD_COMMON = {
    "feature_extractor/preprocessor_config.json",
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    "vae/config.json",
}
_SD_SAFETENSORS = {
    "text_encoder/model.safetensors",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
}
_SD_BIN = {
    "text_encoder/pytorch_model.bin",
    "unet/diffusion_pytorch_model.bin",
    "vae/diffusion_pytorch_model.bin",
}


def _fp16(names: set[str]) -> set[str]:
    return {name.replace(".safetensors", ".fp16.safetensors").replace(".bin", ".fp16.bin") for name in names}


_OPENVINO_PARTS = ("text_encoder", "unet", "vae_decoder", "vae_encoder")
_OPENVINO_FILES = ("openvino_model.xml", "openvino_model.bin")

# The file list of every standard repo: the oracle resolver and bundle tests can rely on.
EXPECTED_FILES: dict[str, set[str]] = {
    "tiny-sd": _SD_COMMON
    | _SD_SAFETENSORS
    | _SD_BIN
    | _fp16(_SD_SAFETENSORS | _SD_BIN)
    | {"tiny-sd.safetensors", "tiny-sd.ckpt", "README.md", ".gitattributes"},
    "tiny-taesd": {
        "README.md",
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.bin",
        "taesd_encoder.pth",
        "taesd_decoder.pth",
    },
    "tiny-lcm-lora": {
        "README.md",
        "images/image_grid.png",
        "images/lcm_lora_sample.png",
        "pytorch_lora_weights.bin",
        "pytorch_lora_weights.safetensors",
        "pytorch_lora_weights_old.safetensors",
    },
    "tiny-sd-safetensors-only": _SD_COMMON | _SD_SAFETENSORS,
    "tiny-sd-bin-only": _SD_COMMON | _SD_BIN,
    "tiny-sd-mixed": _SD_COMMON | _SD_BIN | (_SD_SAFETENSORS - {"vae/diffusion_pytorch_model.safetensors"}),
    "tiny-sd-fp16": _SD_COMMON | _SD_SAFETENSORS | _fp16(_SD_SAFETENSORS),
    "tiny-sd-extras": _SD_COMMON
    | _SD_SAFETENSORS
    | {f"onnx/{part}/model.onnx" for part in _OPENVINO_PARTS}
    | {"onnx/unet/weights.pb"}
    | {f"openvino/{part}/{name}" for part in _OPENVINO_PARTS for name in _OPENVINO_FILES}
    | {
        "unet/diffusion_pytorch_model.msgpack",
        "vae/diffusion_pytorch_model.msgpack",
        "text_encoder/flax_model.msgpack",
    },
    "tiny-sd-safety-checker": _SD_COMMON
    | _SD_SAFETENSORS
    | {"safety_checker/config.json", "safety_checker/model.safetensors"},
    "tiny-sd-openvino": {
        ".gitattributes",
        "README.md",
        "model_index.json",
        "feature_extractor/preprocessor_config.json",
        "scheduler/scheduler_config.json",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
    }
    | {f"{part}/{name}" for part in _OPENVINO_PARTS for name in ("config.json", *_OPENVINO_FILES)},
    "tiny-sdxl": (_SD_COMMON - {"feature_extractor/preprocessor_config.json"})
    | _SD_SAFETENSORS
    | {name.replace("text_encoder/", "text_encoder_2/") for name in _SD_SAFETENSORS if "text_encoder" in name}
    | {"text_encoder_2/config.json"}
    | {name.replace("tokenizer/", "tokenizer_2/") for name in _SD_COMMON if name.startswith("tokenizer/")},
}


def _tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under root: relative posix path -> (bytes, mode)."""
    return {
        path.relative_to(root).as_posix(): (path.read_bytes(), path.stat().st_mode & 0o777)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def torch_one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def repos(tmp_path_factory, torch_one_thread) -> dict[str, Path]:
    built = build_all(tmp_path_factory.mktemp("repos"))
    return {repo_id.split("/", 1)[1]: path for repo_id, path in built.items()}


def _diffusers() -> Any:
    # Typed Any: diffusers ships py.typed with unannotated functions that mypy --strict rejects.
    return importlib.import_module("diffusers")


def _load(folder: Path, **kwargs: Any) -> Any:
    pipe = _diffusers().DiffusionPipeline.from_pretrained(folder, local_files_only=True, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generate(pipe: Any, torch: Any, **kwargs: Any) -> Any:
    generator = torch.Generator().manual_seed(0)
    options = {"num_inference_steps": 2, "guidance_scale": 1.0, "generator": generator, **kwargs}
    return pipe(PROMPT, **options).images[0]


# ---------------------------------------------------------------------------------------------------------------
# Shape, size, determinism


def test_registry_names_every_standard_repo(repos):
    registry = standard_repos()
    assert all(repo_id.startswith("hfbundle-test/") for repo_id in registry)
    assert {repo.name for repo in registry.values()} == set(EXPECTED_FILES) == set(repos)
    assert all(repo.summary for repo in registry.values())


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_file_list_and_size(repos, name):
    tree = _tree(repos[name])
    assert set(tree) == EXPECTED_FILES[name]
    assert sum(len(data) for data, _ in tree.values()) <= SIZE_BUDGET
    assert {mode for _, mode in tree.values()} == {0o644}
    for path, (data, _) in tree.items():
        if path.endswith(".json"):
            json.loads(data)  # every config is valid JSON


def test_no_staging_leftovers(repos):
    root = next(iter(repos.values())).parent
    assert sorted(p.name for p in root.iterdir()) == sorted(repos)


def test_fresh_interpreter_builds_identical_bytes(repos, tmp_path):
    """Same seed, another process: every file (safetensors, torch.save zips, json, png) is byte-identical."""
    root = Path(bundler.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    code = (
        "import sys; from pathlib import Path; from tests.testing.factory import build_all; "
        "build_all(Path(sys.argv[1]))"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, env=env, capture_output=True)
    for name, folder in repos.items():
        first, second = _tree(folder), _tree(tmp_path / name)
        assert set(first) == set(second), name
        differing = [path for path in first if first[path] != second[path]]
        assert not differing, f"{name}: {differing}"


def test_seed_changes_weights_not_configs(tmp_path, torch_one_thread):
    a = make_sd_pipeline(tmp_path / "a", seed=0)
    b = make_sd_pipeline(tmp_path / "b", seed=1)
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (a / weights).read_bytes() != (b / weights).read_bytes()
    assert (a / "unet/config.json").read_bytes() == (b / "unet/config.json").read_bytes()


def test_import_is_light():
    code = (
        "import sys, tests.testing.factory; "
        "heavy = {'torch', 'diffusers', 'transformers', 'peft', 'safetensors'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    root = Path(bundler.__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"safetensors": False}, "at least one weight format"),
        ({"variant": "bf16"}, "unsupported variant"),
        ({"missing_safetensors": ("vae",)}, "pass bin=True"),
        ({"missing_safetensors": ("unett",), "bin": True}, "unknown components"),
        ({"extra_folders": ("tensorflow",)}, "unknown extra_folders"),
    ],
)
def test_bad_options_fail_before_writing(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_sd_pipeline(tmp_path / "sd", **kwargs)
    assert not (tmp_path / "sd").exists()


def test_refuses_non_empty_destination(tmp_path):
    (tmp_path / "stale.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        factory.make_taesd(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stale.txt"]


# ---------------------------------------------------------------------------------------------------------------
# Real loaders on the local folders


def test_tiny_sd_with_taesd_generates_64x64(repos, torch_one_thread):
    pipe = _load(repos["tiny-sd"])
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert type(pipe.scheduler).__name__ == "LCMScheduler"
    assert _generate(pipe, torch_one_thread).size == (64, 64)
    pipe.vae = _diffusers().AutoencoderTiny.from_pretrained(repos["tiny-taesd"], local_files_only=True)
    assert _generate(pipe, torch_one_thread).size == (64, 64)


def test_tokenizer_knows_the_prompt(repos):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(repos["tiny-sd"] / "tokenizer")
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(PROMPT).input_ids)
    assert tokens == ["<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>", "<|endoftext|>"]


def test_fp16_variant_loads_and_keeps_fp32_configs(repos, torch_one_thread):
    torch = torch_one_thread
    for name in ("tiny-sd", "tiny-sd-fp16"):
        pipe = _load(repos[name], variant="fp16", torch_dtype=torch.float16)
        assert pipe.unet.dtype == pipe.text_encoder.dtype == torch.float16
        config = json.loads((repos[name] / "text_encoder/config.json").read_text())
        assert config["dtype"] == "float32"  # the variant save must not leak into the main config
    pipe = _load(repos["tiny-sd"])  # dtype="auto"-style default load of the main weights still works
    assert _generate(pipe, torch, output_type="np").shape == (64, 64, 3)


@pytest.mark.parametrize(
    "name",
    ["tiny-sd-safetensors-only", "tiny-sd-bin-only", "tiny-sd-mixed", "tiny-sd-extras", "tiny-sd-safety-checker"],
)
def test_matrix_repo_loads_and_runs(repos, torch_one_thread, name):
    pipe = _load(repos[name])
    assert _generate(pipe, torch_one_thread, output_type="np").shape == (64, 64, 3)
    if name == "tiny-sd-safety-checker":
        assert type(pipe.safety_checker).__name__ == "StableDiffusionSafetyChecker"
        index = json.loads((repos[name] / "model_index.json").read_text())
        assert index["safety_checker"] == ["stable_diffusion", "StableDiffusionSafetyChecker"]
        assert index["requires_safety_checker"] is True


def test_model_index_is_portable(repos):
    for name in ("tiny-sd", "tiny-sd-openvino"):
        index = json.loads((repos[name] / "model_index.json").read_text())
        assert index["feature_extractor"] == ["transformers", "CLIPImageProcessor"]


def test_mixed_repo_lacks_only_vae_safetensors(repos):
    folder = repos["tiny-sd-mixed"]
    assert not list((folder / "vae").glob("*.safetensors"))
    assert (folder / "vae/diffusion_pytorch_model.bin").is_file()
    assert (folder / "unet/diffusion_pytorch_model.safetensors").is_file()


def test_extras_sit_beside_loadable_weights(repos):
    folder = repos["tiny-sd-extras"]
    assert (folder / "onnx/unet/model.onnx").stat().st_size > 0
    assert (folder / "openvino/unet/openvino_model.xml").read_text().startswith("<?xml")
    assert (folder / "unet/diffusion_pytorch_model.msgpack").read_bytes() == b"\x81\xa6params\x80"
    readme = (repos["tiny-sd"] / "README.md").read_text()
    assert readme.startswith("---\n") and "library_name: diffusers" in readme


def test_single_file_checkpoints(repos, torch_one_thread):
    from safetensors.torch import load_file

    folder = repos["tiny-sd"]
    flat = load_file(folder / "tiny-sd.safetensors")
    assert {key.split(".", 1)[0] for key in flat} == {"unet", "vae", "text_encoder"}
    ckpt = torch_one_thread.load(folder / "tiny-sd.ckpt", weights_only=True)
    assert set(ckpt["state_dict"]) == set(flat)


def test_lcm_lora_loads_and_fuses(repos, torch_one_thread):
    torch = torch_one_thread
    pipe = _load(repos["tiny-sd-safetensors-only"])
    to_q = pipe.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q
    before = to_q.weight.detach().clone()
    pipe.load_lora_weights(repos["tiny-lcm-lora"], weight_name=LORA_WEIGHT_NAME)
    pipe.fuse_lora()
    assert not torch.equal(before, to_q.weight.detach())
    assert _generate(pipe, torch).size == (64, 64)


def test_lcm_lora_decoys(repos):
    from PIL import Image
    from safetensors import safe_open

    folder = repos["tiny-lcm-lora"]
    with (
        safe_open(folder / LORA_WEIGHT_NAME, "pt") as main,
        safe_open(folder / "pytorch_lora_weights_old.safetensors", "pt") as old,
    ):
        assert set(main.keys()) == set(old.keys())
        # Same modules, another rank: a resolver that takes the wrong file loads other weights.
        key = "unet.down_blocks.1.attentions.0.proj_in.lora_A.weight"
        assert (main.get_slice(key).get_shape()[0], old.get_slice(key).get_shape()[0]) == (4, 2)
    for png in sorted((folder / "images").glob("*.png")):
        with Image.open(png) as image:
            image.load()
            assert image.mode == "RGB"


def test_taesd_config_matches_the_real_repo_shape(repos):
    config = json.loads((repos["tiny-taesd"] / "config.json").read_text())
    assert config["_class_name"] == "AutoencoderTiny"
    assert config["latent_channels"] == 4
    assert "block_out_channels" not in config


def test_openvino_tree_is_shaped_like_an_optimum_export(repos):
    folder = repos["tiny-sd-openvino"]
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "OVStableDiffusionPipeline"
    for part in _OPENVINO_PARTS:
        assert index[part][0] == "optimum"
        assert (folder / part / "openvino_model.xml").read_text().startswith("<?xml")
    assert not list(folder.rglob("*.safetensors"))


def test_sdxl_like_generates(repos, torch_one_thread):
    pipe = _load(repos["tiny-sdxl"])
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert _generate(pipe, torch_one_thread).size == (64, 64)
