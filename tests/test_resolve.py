"""The resolver against a loopback Hub: lock records, errors, the shipped recipes on repos shaped like the
real ones, and the oracle — the file set equals what the real loaders download from the same Hub."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bundler.errors import ResolveError
from bundler.lockfile import Lock
from bundler.recipe import Recipe, RepoSpec, Role, RunnerDefaults, Weights, load_spec
from bundler.resolve import resolve
from tests.testing.hf_client import run_hf_client
from tests.testing.hub import HubServer, publish

TOKEN = "hf_loopback_secret"


def write_files(folder: Path, files: dict[str, bytes | str | dict[str, Any]]) -> Path:
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            content = json.dumps(content, indent=2)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return folder


def fake(label: str, size: int = 300) -> bytes:
    return (hashlib.sha256(label.encode()).digest() * (size // 32 + 1))[:size]


def one(repo: str, **kwargs: Any) -> Recipe:
    return Recipe(name="test", repos=(RepoSpec(name="r", repo=repo, **kwargs),))


def paths(lock: Lock, index: int = 0) -> set[str]:
    return {f.path for f in lock.repos[index].files}


# ------------------------------------------------------------------------------------ small hand-made repos

SMALL_PIPE: dict[str, bytes | str | dict[str, Any]] = {
    "model_index.json": {
        "_class_name": "StableDiffusionPipeline",
        "scheduler": ["diffusers", "LCMScheduler"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "safety_checker": [None, None],
    },
    "scheduler/scheduler_config.json": {"_class_name": "LCMScheduler"},
    "unet/config.json": {"_class_name": "UNet2DConditionModel"},
    "unet/diffusion_pytorch_model.safetensors": fake("unet"),
    "unet/diffusion_pytorch_model.fp16.safetensors": fake("unet16", 150),
    "unet/diffusion_pytorch_model.bin": fake("unetbin"),
    "README.md": "# pipe\n",
}
SMALL_VAE: dict[str, bytes | str | dict[str, Any]] = {
    "config.json": {"_class_name": "AutoencoderTiny"},
    "diffusion_pytorch_model.safetensors": fake("taesd"),
    "diffusion_pytorch_model.bin": fake("taesdbin"),
    "README.md": "# taesd\n",
}


@pytest.fixture(scope="module")
def small_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    root = tmp_path_factory.mktemp("small-hub")
    src = tmp_path_factory.mktemp("small-src")
    publish(root, "org/pipe", write_files(src / "pipe", SMALL_PIPE))
    publish(root, "org/taesd", write_files(src / "taesd", SMALL_VAE))
    publish(root, "org/taesd", write_files(src / "taesd-v2", {**SMALL_VAE, "README.md": "# v2\n"}), revision="v2")
    publish(root, "org/gated", write_files(src / "gated", SMALL_VAE), gated=True)
    publish(root, "org/misc", write_files(src / "misc", {"a.gguf": fake("gguf"), "notes/x.txt": "x", "b.json": "{}"}))
    with HubServer(root, token=TOKEN) as hub:
        yield hub


def test_lock_records_pin_commit_and_hub_hashes(small_hub: HubServer) -> None:
    recipe = Recipe(
        name="small",
        description="two repos",
        repos=(
            RepoSpec(name="pipeline", repo="org/pipe", role="diffusers-pipeline"),
            RepoSpec(name="vae", repo="org/taesd", role="diffusers-model", revision="v2"),
        ),
        runner=RunnerDefaults(pipeline="pipeline", vae="vae", steps=2),
    )
    small_hub.clear_log()
    lock = resolve(recipe, endpoint=small_hub.endpoint)
    pipe, vae = lock.repos
    assert (pipe.name, pipe.role, pipe.revision, pipe.repo_type) == ("pipeline", "diffusers-pipeline", "main", "model")
    assert len(pipe.commit) == 40 and vae.revision == "v2" and vae.commit != pipe.commit
    assert paths(lock) == {
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    }
    assert pipe.upstream == tuple(sorted(SMALL_PIPE))  # the repo's full file list
    by_path = {f.path: f for f in pipe.files}
    weights = by_path["unet/diffusion_pytorch_model.safetensors"]
    assert weights.size == 300 and weights.lfs_sha256 == hashlib.sha256(fake("unet")).hexdigest()
    config = by_path["unet/config.json"]
    data = json.dumps(SMALL_PIPE["unet/config.json"], indent=2).encode()
    assert config.lfs_sha256 is None and config.blob_id == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert paths(lock, 1) == {"config.json", "diffusion_pytorch_model.safetensors"}
    assert lock.recipe == "small"
    assert lock.extra["recipe"] == {"name": "small", "version": "1", "description": "two repos"}
    assert lock.extra["runner"]["vae"] == "vae" and lock.extra["runner"]["steps"] == 2
    assert Lock.loads(lock.dumps()) == lock  # the lock format round-trips
    # only small JSON configs were downloaded, never weights
    assert small_hub.downloaded_files("org/pipe") == ["model_index.json"]
    assert small_hub.downloaded_files("org/taesd") == []


def test_repo_spec_detects_role(small_hub: HubServer) -> None:
    lock = resolve(load_spec("org/pipe"), endpoint=small_hub.endpoint)
    assert lock.repos[0].role == "diffusers-pipeline" and lock.extra["runner"]["pipeline"] == "model"
    lock = resolve(load_spec("org/taesd@v2"), endpoint=small_hub.endpoint)
    assert lock.repos[0].role == "diffusers-model" and lock.repos[0].revision == "v2"
    lock = resolve(load_spec("org/misc"), endpoint=small_hub.endpoint)
    assert lock.repos[0].role == "whole-repo" and paths(lock) == {"a.gguf", "b.json", "notes/x.txt"}


def test_include_exclude_refine(small_hub: HubServer) -> None:
    lock = resolve(
        load_spec("org/pipe", variant="fp16", include=["*.md"], exclude=["scheduler/"]), endpoint=small_hub.endpoint
    )
    assert paths(lock) == {
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "README.md",
    }
    files = resolve(one("org/misc", role="files", include=("notes/*", "*.json")), endpoint=small_hub.endpoint)
    assert paths(files) == {"notes/x.txt", "b.json"}
    with pytest.raises(ResolveError, match="no file selected"):
        resolve(one("org/misc", role="files", include=("*.nothing",)), endpoint=small_hub.endpoint)


def test_variant_absent_lists_what_exists(small_hub: HubServer) -> None:
    with pytest.raises(ResolveError) as e:
        resolve(one("org/pipe", role="diffusers-pipeline", variant="bf16"), endpoint=small_hub.endpoint)
    assert "org/pipe@" in e.value.message and "variant 'bf16' not found; variants present: fp16" in e.value.message
    assert e.value.hint == "use one of: fp16"
    with pytest.raises(ResolveError) as e:
        resolve(one("org/taesd", role="diffusers-model", variant="fp16"), endpoint=small_hub.endpoint)
    assert "variant 'fp16' not found; it has no variant weight files" in e.value.message


def test_repo_not_found(small_hub: HubServer) -> None:
    with pytest.raises(ResolveError) as e:
        resolve(load_spec("org/nope"), endpoint=small_hub.endpoint)
    assert e.value.message == f"repo org/nope not found on {small_hub.endpoint} (or it is private)"
    assert e.value.hint is not None and "check the name" in e.value.hint and "HF_TOKEN" in e.value.hint
    assert e.value.exit_code == 1


def test_revision_not_found_lists_refs(small_hub: HubServer) -> None:
    with pytest.raises(ResolveError) as e:
        resolve(load_spec("org/taesd@v3"), endpoint=small_hub.endpoint)
    assert e.value.message == "revision 'v3' not found in org/taesd"
    assert e.value.hint is not None and "branches: main, v2" in e.value.hint


def test_gated_repo_needs_the_right_token(small_hub: HubServer, tmp_path: Path) -> None:
    spec = one("org/gated", role="diffusers-model")
    lock = resolve(spec, endpoint=small_hub.endpoint, token=TOKEN)
    assert paths(lock) == {"config.json", "diffusion_pytorch_model.safetensors"}
    with pytest.raises(ResolveError) as e:
        resolve(spec, endpoint=small_hub.endpoint, token="hf_wrong")
    assert e.value.message.startswith(f"the Hub at {small_hub.endpoint} refused the token (HTTP 401")
    assert e.value.hint is not None and "invalid or expired" in e.value.hint
    # No token at all: huggingface_hub would look in the environment and ~/.cache, so run with a clean one.
    code = f"""
    from bundler.errors import ResolveError
    from bundler.recipe import load_spec
    from bundler.resolve import resolve
    try:
        resolve(load_spec("org/gated"), endpoint={small_hub.endpoint!r})
        emit({{"error": None}})
    except ResolveError as e:
        emit({{"error": e.message}})
    """
    result = run_hf_client(code, cache=tmp_path / "cache")
    assert result == {"error": "org/gated is gated: access needs an accepted licence and a token"}
    try:  # the hint says how to get in
        resolve(spec, endpoint=small_hub.endpoint, token=False)
    except ResolveError as gated:
        assert gated.hint is not None and "HF_TOKEN" in gated.hint and "hf auth login" in gated.hint
    else:
        raise AssertionError("a gated repo resolved without a token")


def test_optional_repo_is_skipped(small_hub: HubServer) -> None:
    recipe = Recipe(
        name="opt",
        repos=(
            RepoSpec(name="vae", repo="org/taesd", role="diffusers-model"),
            RepoSpec(name="extra", repo="org/missing", optional=True),
        ),
    )
    lock = resolve(recipe, endpoint=small_hub.endpoint)
    assert [r.name for r in lock.repos] == ["vae"]
    assert lock.extra["skipped"][0]["name"] == "extra" and "not found" in lock.extra["skipped"][0]["reason"]


def test_unreachable_hub_is_a_resolve_error() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ResolveError) as e:
        resolve(load_spec("org/pipe"), endpoint=f"http://127.0.0.1:{port}")
    assert e.value.message.startswith(f"cannot reach the Hub at http://127.0.0.1:{port}")
    assert e.value.hint is not None and "HF_ENDPOINT" in e.value.hint


def test_wrong_role_explains(small_hub: HubServer) -> None:
    with pytest.raises(ResolveError) as e:
        resolve(one("org/misc", role="diffusers-pipeline"), endpoint=small_hub.endpoint)
    assert e.value.message.startswith("org/misc@") and "not a diffusers pipeline" in e.value.message
    with pytest.raises(ResolveError, match="several LoRA weight files"):
        resolve(one("org/pipe", role="lora"), endpoint=small_hub.endpoint)


# ------------------------------------------------------------------------------ factory repos (torch needed)

STANDARD = (
    "tiny-sd",
    "tiny-taesd",
    "tiny-lcm-lora",
    "tiny-sd-safetensors-only",
    "tiny-sd-bin-only",
    "tiny-sd-mixed",
    "tiny-sd-fp16",
    "tiny-sd-extras",
    "tiny-sd-safety-checker",
    "tiny-sdxl",
)


def _drop(folder: Path, *rels: str) -> None:
    for rel in rels:
        path = folder / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _patch_index(folder: Path, **entries: Any) -> None:
    path = folder / "model_index.json"
    index = json.loads(path.read_text())
    index.update(entries)
    path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _real_shaped(src: Path) -> dict[str, Path]:
    """Trees shaped like the repos the FastSDCPU recipes name, from the tiny factory builds (the files the
    rules look at — names, folders, variants, single-file checkpoints, READMEs — match; contents are tiny)."""
    from tests.testing.factory import make_lcm_lora, make_openvino_sd, make_sd_pipeline, make_sdxl_like, make_taesd

    out: dict[str, Path] = {}
    null = [None, None]

    # stabilityai/sd-turbo: fp16 variants, single-file sd_turbo.safetensors, README; no feature extractor
    sd = make_sd_pipeline(src / "sd-turbo", variant="fp16", extra_folders=("single_file", "readme", "gitattributes"))
    (sd / "tiny-sd.safetensors").rename(sd / "sd_turbo.safetensors")
    _drop(sd, "tiny-sd.ckpt", "feature_extractor")
    _patch_index(sd, feature_extractor=null, safety_checker=null, image_encoder=null)
    out["stabilityai/sd-turbo"] = sd

    # SimianLuo/LCM_Dreamshaper_v7: safetensors + .bin, a safety checker, a 4k single-file checkpoint
    lcm = make_sd_pipeline(
        src / "lcm-dreamshaper", bin=True, safety_checker=True, extra_folders=("single_file", "readme", "gitattributes")
    )
    (lcm / "tiny-sd.safetensors").rename(lcm / "LCM_Dreamshaper_v7_4k.safetensors")
    _drop(lcm, "tiny-sd.ckpt")
    _patch_index(lcm, _class_name="LatentConsistencyModelPipeline")
    out["SimianLuo/LCM_Dreamshaper_v7"] = lcm

    # Lykon/dreamshaper-8: fp16 variants, a feature extractor, no safety checker
    out["Lykon/dreamshaper-8"] = make_sd_pipeline(src / "dreamshaper-8", variant="fp16", extra_folders=("readme",))

    # latent-consistency/lcm-lora-sdv1-5: one safetensors LoRA, README, images
    lora = make_lcm_lora(src / "lcm-lora")
    _drop(lora, "pytorch_lora_weights.bin", "pytorch_lora_weights_old.safetensors")
    out["latent-consistency/lcm-lora-sdv1-5"] = lora

    # madebyollin/taesd and taesdxl: config, safetensors + bin, the original .pth files, README
    out["madebyollin/taesd"] = make_taesd(src / "taesd")
    taesdxl = make_taesd(src / "taesdxl", seed=1)
    for part in ("encoder", "decoder"):
        (taesdxl / f"taesd_{part}.pth").rename(taesdxl / f"taesdxl_{part}.pth")
    out["madebyollin/taesdxl"] = taesdxl

    # stabilityai/sdxl-turbo: two text encoders, fp16 variants, two single-file checkpoints
    xl = make_sdxl_like(src / "sdxl-turbo")
    for weights in [*xl.glob("*/*.safetensors")]:
        shutil.copyfile(weights, weights.with_name(weights.name.replace(".safetensors", ".fp16.safetensors")))
    write_files(
        xl,
        {
            "sd_xl_turbo_1.0.safetensors": fake("xl"),
            "sd_xl_turbo_1.0_fp16.safetensors": fake("xl16"),
            "README.md": "# sdxl-turbo\n",
            "LICENSE.md": "license\n",
        },
    )
    out["stabilityai/sdxl-turbo"] = xl

    # rupeshs/sd-turbo-openvino: an optimum-intel export
    out["rupeshs/sd-turbo-openvino"] = make_openvino_sd(src / "sd-turbo-openvino")
    return out


def _edge_shapes(src: Path, built: dict[str, Path]) -> dict[str, Path]:
    """Cases the standard set lacks: a variant on some components only, a sharded single model."""
    from tests.testing.factory import make_taesd

    partial = src / "fp16-partial"
    shutil.copytree(built[f"{ORG}/tiny-sd-fp16"], partial)
    _drop(partial, "vae/diffusion_pytorch_model.fp16.safetensors")

    autoencoder_tiny: Any = importlib.import_module("diffusers").AutoencoderTiny
    sharded = src / "taesd-sharded"
    model = autoencoder_tiny.from_pretrained(make_taesd(src / "taesd-plain"))
    model.save_pretrained(sharded, max_shard_size="5KB")
    shutil.copyfile(src / "taesd-plain" / "diffusion_pytorch_model.bin", sharded / "diffusion_pytorch_model.bin")
    assert len(list(sharded.glob("diffusion_pytorch_model-*.safetensors"))) > 1
    return {f"{ORG}/tiny-sd-fp16-partial": partial, f"{ORG}/tiny-taesd-sharded": sharded}


@pytest.fixture(scope="module")
def factory_hub(
    tmp_path_factory: pytest.TempPathFactory, tiny_repos: dict[str, Path]
) -> Iterator[tuple[HubServer, dict[str, Path]]]:
    """The standard tiny repos (built once per session by conftest) plus the shaped ones, on a Hub of our own."""
    root = tmp_path_factory.mktemp("hub")
    src = tmp_path_factory.mktemp("repos")
    folders = {repo_id: folder for repo_id, folder in tiny_repos.items() if repo_id.split("/")[1] in STANDARD}
    assert len(folders) == len(STANDARD)
    folders.update(_real_shaped(src / "real"))
    folders.update(_edge_shapes(src / "edge", folders))
    for repo_id, folder in folders.items():
        publish(root, repo_id, folder)
    with HubServer(root) as hub:
        yield hub, folders


SD_CONFIGS = {
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
SD_SAFETENSORS = {
    "text_encoder/model.safetensors",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
}
TAESD = {"config.json", "diffusion_pytorch_model.safetensors"}
XL = {
    *SD_CONFIGS,
    *SD_SAFETENSORS,
    "text_encoder_2/config.json",
    "text_encoder_2/model.safetensors",
    *(f"tokenizer_2/{n}" for n in ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json")),
}
OPENVINO = {
    "model_index.json",
    "scheduler/scheduler_config.json",
    "feature_extractor/preprocessor_config.json",
    *(f"tokenizer/{n}" for n in ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json")),
    *(f"{c}/{n}" for c in ("text_encoder", "unet", "vae_decoder", "vae_encoder") for n in (
        "config.json", "openvino_model.xml", "openvino_model.bin"
    )),
}  # fmt: skip

# What each shipped recipe takes, by repo name, written from the rules (not from output): the diffusers
# folders with config + safetensors; no .bin, fp16 variants, single-file checkpoints, READMEs or images.
SHIPPED_EXPECTED: dict[str, dict[str, set[str]]] = {
    # = the files FastSDCPU was traced reading for sd-turbo (HF-FACTS)
    "lcm-sd-turbo": {"pipeline": SD_CONFIGS | SD_SAFETENSORS},
    "lcm-dreamshaper-v7-taesd": {
        "pipeline": SD_CONFIGS
        | SD_SAFETENSORS
        | {
            "feature_extractor/preprocessor_config.json",
            "safety_checker/config.json",
            "safety_checker/model.safetensors",
        },
        "taesd": TAESD,
    },
    "lcm-lora-dreamshaper-8": {
        "pipeline": SD_CONFIGS | SD_SAFETENSORS | {"feature_extractor/preprocessor_config.json"},
        "lcm-lora": {"pytorch_lora_weights.safetensors"},
        "taesd": TAESD,
    },
    "sdxl-turbo-taesdxl": {"pipeline": XL, "taesdxl": TAESD},
    # the whole commit: optimum-intel 2.0 lists it all offline (rules.openvino_offline_files, proven with the real
    # loader in tests/test_openvino_loader.py), README and .gitattributes included
    "openvino-sd-turbo": {"pipeline": OPENVINO | {"README.md", ".gitattributes"}},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED_EXPECTED))
def test_shipped_recipe_picks(factory_hub: tuple[HubServer, dict[str, Path]], name: str) -> None:
    hub, folders = factory_hub
    recipe = load_spec(name)
    lock = resolve(recipe, endpoint=hub.endpoint)
    got = {r.name: {f.path for f in r.files} for r in lock.repos}
    assert got == SHIPPED_EXPECTED[name]
    for repo in lock.repos:
        upstream = {p.relative_to(folders[repo.repo_id]).as_posix() for p in folders[repo.repo_id].rglob("*")}
        assert set(repo.upstream) == {p for p in upstream if (folders[repo.repo_id] / p).is_file()}
        if repo.role == "openvino-pipeline":
            assert {f.path for f in repo.files} == set(repo.upstream)
        else:  # the real shape has more than the loader needs
            assert {f.path for f in repo.files} < set(repo.upstream)
    assert lock.extra["runner"]["pipeline"] == "pipeline"


@pytest.mark.slow
def test_tiny_demo_recipe(factory_hub: tuple[HubServer, dict[str, Path]]) -> None:
    hub, _ = factory_hub
    lock = resolve(load_spec("tiny-demo"), endpoint=hub.endpoint)
    got = {r.name: {f.path for f in r.files} for r in lock.repos}
    assert got == {
        "pipeline": SD_CONFIGS | SD_SAFETENSORS | {"feature_extractor/preprocessor_config.json"},
        "taesd": TAESD,
        "lcm-lora": {"pytorch_lora_weights.safetensors"},
    }
    assert lock.extra["runner"] == {
        "pipeline": "pipeline",
        "scheduler": "LCMScheduler",
        "steps": 2,
        "guidance": 1.0,
        "width": 64,
        "height": 64,
        "vae": "taesd",
        "lora": "lcm-lora",
        "lora_fuse": True,
        "lora_scale": 1.0,
        "dtype": "float32",
    }


# ----------------------------------------------------------------------------------------------- the oracle

ORG = "hfbundle-test"
# (case id, repo, loader, loader kwargs): "pipeline" = DiffusionPipeline.download, "from_pretrained" =
# DiffusionPipeline.from_pretrained, "model" = AutoencoderTiny.from_pretrained, "transformers" =
# CLIPTextModel.from_pretrained, "lora" = pipe.load_lora_weights. (OpenVINO: the real optimum-intel is the
# oracle in tests/test_openvino_loader.py.)
ORACLE_CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("safetensors-only", f"{ORG}/tiny-sd-safetensors-only", "pipeline", {}),
    ("safetensors-only-loaded", f"{ORG}/tiny-sd-safetensors-only", "from_pretrained", {}),
    ("bin-only", f"{ORG}/tiny-sd-bin-only", "pipeline", {}),
    ("mixed", f"{ORG}/tiny-sd-mixed", "pipeline", {}),
    ("mixed-safetensors-required", f"{ORG}/tiny-sd-mixed", "pipeline", {"use_safetensors": True}),
    ("fp16", f"{ORG}/tiny-sd-fp16", "pipeline", {"variant": "fp16"}),
    ("fp16-not-asked", f"{ORG}/tiny-sd-fp16", "pipeline", {}),
    ("variant-absent", f"{ORG}/tiny-sd-safetensors-only", "pipeline", {"variant": "fp16"}),
    ("onnx-flax-openvino", f"{ORG}/tiny-sd-extras", "pipeline", {}),
    ("hub-shaped", f"{ORG}/tiny-sd", "pipeline", {}),
    ("hub-shaped-fp16", f"{ORG}/tiny-sd", "pipeline", {"variant": "fp16"}),
    ("hub-shaped-bin", f"{ORG}/tiny-sd", "pipeline", {"use_safetensors": False}),
    ("safety-checker", f"{ORG}/tiny-sd-safety-checker", "pipeline", {}),
    ("sdxl", f"{ORG}/tiny-sdxl", "pipeline", {}),
    ("sd-turbo-shaped", "stabilityai/sd-turbo", "pipeline", {}),
    ("fp16-partial", f"{ORG}/tiny-sd-fp16-partial", "pipeline", {"variant": "fp16"}),
    ("taesd", f"{ORG}/tiny-taesd", "model", {}),
    ("taesd-sharded", f"{ORG}/tiny-taesd-sharded", "model", {}),
    ("taesd-bin", f"{ORG}/tiny-taesd", "model", {"use_safetensors": False}),
    ("taesd-variant-absent", f"{ORG}/tiny-taesd", "model", {"variant": "fp16"}),
    ("text-encoder", f"{ORG}/tiny-sd", "transformers", {"subfolder": "text_encoder"}),
    ("lora", f"{ORG}/tiny-lcm-lora", "lora", {"weight_name": "pytorch_lora_weights.safetensors"}),
    ("lora-old", f"{ORG}/tiny-lcm-lora", "lora", {"weight_name": "pytorch_lora_weights_old.safetensors"}),
    ("lora-best-guess", f"{ORG}/tiny-lcm-lora", "lora", {}),
]

ORACLE_CODE = """
import json, os
from pathlib import Path

import torch

torch.set_num_threads(1)
from diffusers import AutoencoderTiny, DiffusionPipeline

cases = json.loads(os.environ["ORACLE_CASES"])
caches = Path(os.environ["ORACLE_CACHES"])
pipe = None


def snapshot_files(cache, repo):
    out = set()
    for snap in (cache / ("models--" + repo.replace("/", "--")) / "snapshots").glob("*"):
        out |= {p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file()}
    return sorted(out)


results = {}
for case_id, repo, loader, kwargs in cases:
    cache = caches / case_id
    kwargs = dict(kwargs, cache_dir=str(cache))
    try:
        if loader == "pipeline":
            DiffusionPipeline.download(repo, **kwargs)
        elif loader == "from_pretrained":
            DiffusionPipeline.from_pretrained(repo, **kwargs)
        elif loader == "model":
            AutoencoderTiny.from_pretrained(repo, **kwargs)
        elif loader == "transformers":
            from transformers import CLIPTextModel

            CLIPTextModel.from_pretrained(repo, **kwargs)
        else:
            if pipe is None:
                pipe = DiffusionPipeline.from_pretrained(os.environ["ORACLE_BASE"])
            pipe.load_lora_weights(repo, adapter_name=case_id.replace("-", "_"), **kwargs)
        results[case_id] = {"files": snapshot_files(cache, repo)}
    except Exception as e:
        results[case_id] = {"error": type(e).__name__, "message": str(e)[:300]}
emit(results)
"""


def _weights(kwargs: dict[str, Any]) -> Weights:
    table: dict[bool | None, Weights] = {None: "auto", True: "safetensors", False: "bin"}
    return table[kwargs.get("use_safetensors")]


@pytest.fixture(scope="module")
def oracle(
    factory_hub: tuple[HubServer, dict[str, Path]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """What the real loaders download, run once for every case in one fresh interpreter (imports cost ~5 s)."""
    hub, folders = factory_hub
    work = tmp_path_factory.mktemp("oracle")
    extra = {
        "ORACLE_CASES": json.dumps(ORACLE_CASES),
        "ORACLE_CACHES": str(work / "caches"),
        "ORACLE_BASE": str(folders[f"{ORG}/tiny-sd-safetensors-only"]),
        "OMP_NUM_THREADS": "1",
    }
    result: dict[str, dict[str, Any]] = run_hf_client(
        ORACLE_CODE, cache=work / "empty-cache", endpoint=hub.endpoint, extra_env=extra, timeout=300
    )
    return result


@pytest.mark.slow
@pytest.mark.parametrize(("case_id", "repo", "loader", "kwargs"), ORACLE_CASES, ids=[c[0] for c in ORACLE_CASES])
def test_oracle_same_files_as_the_loaders(
    factory_hub: tuple[HubServer, dict[str, Path]],
    oracle: dict[str, dict[str, Any]],
    case_id: str,
    repo: str,
    loader: str,
    kwargs: dict[str, Any],
) -> None:
    hub, _ = factory_hub
    role: dict[str, Role] = {
        "pipeline": "diffusers-pipeline",
        "from_pretrained": "diffusers-pipeline",
        "model": "diffusers-model",
        "transformers": "transformers-model",
    }
    spec = RepoSpec(
        name="r",
        repo=repo,
        role=role.get(loader, "lora"),
        variant=kwargs.get("variant"),
        weights=_weights(kwargs),
        weight_name=kwargs.get("weight_name"),
        subfolder=kwargs.get("subfolder"),
    )
    loaders = oracle[case_id]
    if "error" in loaders:
        with pytest.raises(ResolveError):
            resolve(Recipe(name=case_id, repos=(spec,)), endpoint=hub.endpoint)
        return
    lock = resolve(Recipe(name=case_id, repos=(spec,)), endpoint=hub.endpoint)
    assert sorted(paths(lock)) == loaders["files"]


@pytest.mark.slow
def test_oracle_saw_the_interesting_cases(oracle: dict[str, dict[str, Any]]) -> None:
    """Guard the oracle itself: the error cases failed in the loaders, the others fetched what they should."""
    assert {k for k, v in oracle.items() if "error" in v} == {
        "variant-absent",
        "mixed-safetensors-required",
        "taesd-variant-absent",
    }
    assert "unet/diffusion_pytorch_model.bin" in oracle["mixed"]["files"]
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in oracle["fp16"]["files"]
    assert oracle["lora-best-guess"]["files"] == ["pytorch_lora_weights.safetensors"]
    partial = oracle["fp16-partial"]["files"]
    assert (
        "vae/diffusion_pytorch_model.safetensors" in partial
        and "unet/diffusion_pytorch_model.fp16.safetensors" in partial
    )
    assert "diffusion_pytorch_model.safetensors.index.json" in oracle["taesd-sharded"]["files"]
    assert oracle["safetensors-only-loaded"]["files"] == oracle["safetensors-only"]["files"]
