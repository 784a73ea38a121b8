"""Deterministic tiny repos shaped like real Hugging Face model repos.

Every builder writes a fresh folder through the real ``save_pretrained`` code paths of diffusers and
transformers, so configs, ``model_index.json`` and weight files look exactly like the ones the Hub serves,
only with a few thousand parameters. The same seed gives the same bytes, file for file, on the same library
versions (configs record ``_diffusers_version`` / ``transformers_version``).

Heavy libraries (torch, diffusers, transformers, peft) are imported inside the builders only: importing this
module is cheap.

Example::

    from pathlib import Path
    from tests.testing.factory import build_all, make_sd_pipeline

    sd = make_sd_pipeline(Path("/tmp/tiny-sd"), bin=True, variant="fp16", extra_folders=("readme",))
    repos = build_all(Path("/tmp/repos"))  # {"hfbundle-test/tiny-sd": Path("/tmp/repos/tiny-sd"), ...}
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import string
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

__all__ = [
    "LORA_WEIGHT_NAME",
    "PROMPT",
    "SD_COMPONENTS",
    "SD_EXTRA_FOLDERS",
    "SIZE_BUDGET",
    "TinyRepo",
    "build_all",
    "make_lcm_lora",
    "make_openvino_sd",
    "make_sd_pipeline",
    "make_sdxl_like",
    "make_taesd",
    "standard_repos",
]

#: Weight name of the LCM-LoRA file (as in latent-consistency/lcm-lora-sdv1-5); pass it to ``load_lora_weights``.
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
#: A prompt made only of words the tiny tokenizer knows whole.
PROMPT = "a photo of a cat"
#: Components of the tiny SD pipeline that carry weights (``safety_checker`` too when asked for).
SD_COMPONENTS = ("unet", "vae", "text_encoder")
#: Values accepted by ``make_sd_pipeline(extra_folders=...)``.
SD_EXTRA_FOLDERS = ("onnx", "flax", "openvino", "single_file", "readme", "gitattributes")
#: Every standard repo stays under this many bytes (1 MiB, all files summed).
SIZE_BUDGET = 1 << 20

_ORG = "hfbundle-test"
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
# Characters of the tiny byte-level BPE: anything else in a prompt becomes the unknown token.
_CHARS = string.ascii_lowercase + string.digits + "!,.'-?"
_WORDS = ("photo", "of", "cat", "dog", "an", "astronaut", "riding", "horse", "tiny", "test", "the")
_TEXT_HIDDEN = 8  # CLIP hidden size == UNet cross_attention_dim
_IMAGE_SIZE = 32  # feature extractor / safety checker vision input
_FP16_TAG = ".fp16."


@dataclass(frozen=True)
class TinyRepo:
    """One standard tiny repo: its Hub-style id, what it is for, and its builder."""

    repo_id: str
    summary: str
    build: Callable[[Path], Path]

    @property
    def name(self) -> str:
        """The part of ``repo_id`` after the slash (the folder name ``build_all`` uses)."""
        return self.repo_id.split("/", 1)[1]


# --------------------------------------------------------------------------------------------------------------
# Plumbing


@contextmanager
def _torch_session(seed: int) -> Iterator[Any]:
    """Import torch, pin one thread and seed a forked RNG; restore the caller's RNG and thread count after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield torch
    finally:
        torch.set_num_threads(threads)


@contextmanager
def _staging(dest: Path) -> Iterator[Path]:
    """Yield a scratch folder beside ``dest``; on success normalise modes and move it to ``dest``.

    ``dest`` must be absent or an empty folder: a builder never mixes its output with stale files.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} exists and is not an empty folder; pass a fresh destination")
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield stage
        _normalise_modes(stage)
        if dest.exists():
            dest.rmdir()
        os.replace(stage, dest)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _normalise_modes(root: Path) -> None:
    # safetensors/transformers write some files 0600 via mkstemp; Hub downloads are 0644. Same tree, same modes.
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _diffusers() -> Any:
    """diffusers, typed ``Any``: it ships ``py.typed`` with unannotated constructors that mypy --strict rejects."""
    return importlib.import_module("diffusers")


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _write_json(path: Path, obj: object) -> Path:
    # The layout diffusers' ConfigMixin.to_json_string uses.
    return _write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _fake_bytes(label: str, size: int) -> bytes:
    """``size`` deterministic pseudo-random bytes named by ``label`` (stand-in weights never loaded)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def _png(width: int, height: int, seed: int) -> bytes:
    """A small RGB gradient PNG written by hand (no Pillow, no timestamps)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows += bytes(((x * 255) // width, (y * 255) // height, (seed * 37 + x * y) % 256))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


def _model_card(title: str, body: str, *, library: str, tags: tuple[str, ...], base_model: str = "") -> str:
    lines = ["---", "license: apache-2.0", f"library_name: {library}", "tags:"]
    lines += [f"- {tag}" for tag in tags]
    if base_model:
        lines.append(f"base_model: {base_model}")
    lines += ["---", "", f"# {title}", "", body.strip(), ""]
    return "\n".join(lines)


_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
        "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
        "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*",
        "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*", "*.png",
    )
)  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# Tokenizer


def _clip_vocab() -> tuple[dict[str, int], list[str]]:
    """A tiny CLIP-style byte-level BPE: base characters, their ``</w>`` forms, merges, specials last.

    Merges are ``c at</w>`` pairs (the end-of-word marker is glued to the last symbol, never its own token).
    """
    vocab: dict[str, int] = {}
    for token in [*_CHARS, *(c + "</w>" for c in _CHARS)]:
        vocab[token] = len(vocab)
    merges: list[str] = []
    for word in _WORDS:
        symbols = [*word[:-1], word[-1] + "</w>"]
        while len(symbols) > 1:
            merge = f"{symbols[0]} {symbols[1]}"
            if merge not in merges:
                merges.append(merge)
            symbols = [symbols[0] + symbols[1], *symbols[2:]]
            vocab.setdefault(symbols[0], len(vocab))
    vocab[_BOS] = len(vocab)
    vocab[_EOS] = len(vocab)
    return vocab, merges


def _write_tokenizer(folder: Path) -> dict[str, int]:
    """Write the four files real SD repos ship in ``tokenizer/`` (no ``tokenizer.json``)."""
    vocab, merges = _clip_vocab()
    _write_text(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    _write_text(folder / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    specials = {"bos_token": _BOS, "eos_token": _EOS, "pad_token": _EOS, "unk_token": _EOS}
    _write_json(folder / "special_tokens_map.json", specials)
    config = {
        **specials,
        "add_prefix_space": False,
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": 77,
        "tokenizer_class": "CLIPTokenizer",
    }
    _write_json(folder / "tokenizer_config.json", config)
    return vocab


# --------------------------------------------------------------------------------------------------------------
# Tiny models (call inside _torch_session; construction order fixes the weights)


def _tiny_unet(**overrides: Any) -> Any:
    UNet2DConditionModel = _diffusers().UNet2DConditionModel

    options: dict[str, Any] = {
        "sample_size": 8,  # x vae scale 8 = 64x64 by default
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (4, 8),
        "layers_per_block": 1,
        "norm_num_groups": 2,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "cross_attention_dim": _TEXT_HIDDEN,
        "attention_head_dim": 2,
    }
    options.update(overrides)
    return UNet2DConditionModel(**options)


def _tiny_vae() -> Any:
    AutoencoderKL = _diffusers().AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(4, 4, 4, 4),  # four blocks: scale factor 8, as in SD
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=2,
        sample_size=64,
    )


def _tiny_clip_text_config(vocab_size: int, **overrides: Any) -> Any:
    from transformers import CLIPTextConfig

    options: dict[str, Any] = {
        # bos 0 / eos 2 / pad 1 are what runwayml-era SD text encoders carry; with eos_token_id == 2
        # transformers pools at argmax(input_ids), i.e. at <|endoftext|>, the highest id.
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
        "vocab_size": vocab_size,
        "hidden_size": _TEXT_HIDDEN,
        "intermediate_size": 16,
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "projection_dim": _TEXT_HIDDEN,
        "max_position_embeddings": 77,
    }
    options.update(overrides)
    return CLIPTextConfig(**options)


def _lcm_scheduler() -> Any:
    LCMScheduler = _diffusers().LCMScheduler

    # steps_offset=1 avoids diffusers' "steps_offset!=1" deprecation warning.
    return LCMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=1,
        timestep_spacing="leading",
    )


def _image_processor() -> Any:
    import transformers

    # Without torchvision, transformers 5 maps CLIPImageProcessor to CLIPImageProcessorPil and logs about it;
    # take the PIL class directly when it exists (model_index.json is rewritten to the portable name below).
    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(size={"shortest_edge": _IMAGE_SIZE}, crop_size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE})


def _tiny_safety_checker(vocab_size: int) -> Any:
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    text = {
        # CLIP's default special-token ids (49406, 49407) lie outside the tiny vocab.
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
        "vocab_size": vocab_size,
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_attention_heads": 2,
    }
    vision = {"image_size": _IMAGE_SIZE, "patch_size": 16, "hidden_size": 8, "intermediate_size": 16}
    config = CLIPConfig(
        text_config={**text, "num_hidden_layers": 1},
        vision_config={**vision, "num_attention_heads": 2, "num_hidden_layers": 1},
        projection_dim=8,
    )
    return StableDiffusionSafetyChecker(config)


def _sd_pipeline(safety_checker: bool) -> Any:
    """The tiny StableDiffusionPipeline object (weights fixed by the current seed)."""
    StableDiffusionPipeline = _diffusers().StableDiffusionPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        vocab = _write_tokenizer(Path(scratch))
        tokenizer = CLIPTokenizer.from_pretrained(scratch)
    unet = _tiny_unet()
    vae = _tiny_vae()
    text_encoder = CLIPTextModel(_tiny_clip_text_config(len(vocab)))
    checker = _tiny_safety_checker(len(vocab)) if safety_checker else None
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_lcm_scheduler(),
        safety_checker=checker,
        feature_extractor=_image_processor(),
        requires_safety_checker=safety_checker,
    )


def _portable_model_index(folder: Path) -> None:
    """Name the feature extractor ``CLIPImageProcessor`` (as Hub repos do), not the PIL fallback class."""
    path = folder / "model_index.json"
    index = json.loads(path.read_text(encoding="utf-8"))
    for name, entry in index.items():
        if isinstance(entry, list) and entry == ["transformers", "CLIPImageProcessorPil"]:
            index[name] = ["transformers", "CLIPImageProcessor"]
    _write_json(path, index)


def _replace_tokenizer_folder(folder: Path) -> None:
    # transformers 5 saves tokenizer.json + tokenizer_config.json only; SD repos on the Hub carry the
    # slow-tokenizer files instead, and that is what offline loaders (FastSDCPU) read.
    shutil.rmtree(folder)
    _write_tokenizer(folder)


# --------------------------------------------------------------------------------------------------------------
# Stable Diffusion


def make_sd_pipeline(
    dest: Path,
    *,
    safetensors: bool = True,
    bin: bool = False,
    variant: str | None = None,
    missing_safetensors: tuple[str, ...] = (),
    extra_folders: tuple[str, ...] = (),
    safety_checker: bool = False,
    seed: int = 0,
) -> Path:
    """Write a tiny Stable Diffusion repo (LCM scheduler, 64x64 by default) to ``dest`` and return it.

    Args:
        dest: absent or empty folder to create.
        safetensors: write ``*.safetensors`` weights.
        bin: write ``*.bin`` weights too (SD repos on the Hub ship both).
        variant: also write ``*.{variant}.safetensors`` / ``.bin`` weights in float16 (only ``"fp16"``).
        missing_safetensors: components whose safetensors are deleted (``("vae",)`` makes the repo "mixed":
            diffusers' Hub download then takes ``.bin`` for the whole pipeline, a local folder falls back per
            component); needs ``bin=True``.
        extra_folders: non-loadable extras from ``SD_EXTRA_FOLDERS``: ``onnx/``, flax ``*.msgpack``,
            ``openvino/``, top-level single-file ``tiny-sd.safetensors`` + ``.ckpt``, ``README.md``,
            ``.gitattributes``.
        safety_checker: add a tiny ``StableDiffusionSafetyChecker`` component.
        seed: weights seed; the same seed gives the same bytes.

    Example::

        folder = make_sd_pipeline(tmp_path / "sd", bin=True, variant="fp16")
        pipe = DiffusionPipeline.from_pretrained(folder, variant="fp16", local_files_only=True)
        image = pipe(PROMPT, num_inference_steps=2, guidance_scale=1.0).images[0]  # 64x64
    """
    components = (*SD_COMPONENTS, "safety_checker") if safety_checker else SD_COMPONENTS
    if not (safetensors or bin):
        raise ValueError("choose at least one weight format: safetensors=True or bin=True")
    if variant not in (None, "fp16"):
        raise ValueError(f"unsupported variant {variant!r}; only 'fp16' is built")
    unknown = sorted(set(missing_safetensors) - set(components))
    if unknown:
        raise ValueError(f"missing_safetensors names unknown components {unknown}; choose from {components}")
    if missing_safetensors and not bin:
        raise ValueError("missing_safetensors leaves those components without weights; pass bin=True")
    unknown = sorted(set(extra_folders) - set(SD_EXTRA_FOLDERS))
    if unknown:
        raise ValueError(f"unknown extra_folders {unknown}; choose from {SD_EXTRA_FOLDERS}")

    with _torch_session(seed) as torch, _staging(dest) as stage:
        pipe = _sd_pipeline(safety_checker)
        _save_weights(torch, pipe, stage, safetensors=safetensors, bin=bin)
        if "single_file" in extra_folders:
            _write_single_file(torch, pipe, stage)
        if variant is not None:
            # Saving a variant into the same folder rewrites text_encoder/config.json to float16, which breaks
            # dtype="auto" loading of the main weights: save elsewhere and copy the weight files only.
            # Per model .half(): pipeline/ModelMixin .to(dtype) logs a spurious "keep in float32: []" warning.
            for component in components:
                getattr(pipe, component).half()
            with tempfile.TemporaryDirectory(dir=stage.parent) as scratch:
                _save_weights(torch, pipe, Path(scratch), safetensors=safetensors, bin=bin, variant=variant)
                for weight in sorted(Path(scratch).rglob(f"*.{variant}.*")):
                    shutil.copyfile(weight, stage / weight.relative_to(scratch))
        _portable_model_index(stage)
        _replace_tokenizer_folder(stage / "tokenizer")
        for component in missing_safetensors:
            for weight in (stage / component).glob("*.safetensors"):
                weight.unlink()
        _write_sd_extras(stage, extra_folders)
    return Path(dest)


def _save_weights(
    torch: Any, pipe: Any, folder: Path, *, safetensors: bool, bin: bool, variant: str | None = None
) -> None:
    """``pipe.save_pretrained`` once per format, then give transformers components their ``.bin`` too.

    transformers 5 always writes ``model.safetensors`` and ignores ``safe_serialization=False``; real repos
    saved by transformers 4 carry ``pytorch_model.bin``, so write it the way transformers 4 did (``torch.save``
    of the same state dict). Formats not asked for are deleted afterwards.
    """
    from safetensors.torch import load_file

    suffix = f".{variant}" if variant else ""
    pipe.save_pretrained(folder, safe_serialization=True, variant=variant)
    if bin:
        pipe.save_pretrained(folder, safe_serialization=False, variant=variant)
        for weights in sorted(folder.glob(f"*/model{suffix}.safetensors")):
            torch.save(load_file(weights), weights.with_name(f"pytorch_model{suffix}.bin"))
    if not safetensors:
        for weights in folder.glob("*/*.safetensors"):
            weights.unlink()


def _write_single_file(torch: Any, pipe: Any, folder: Path) -> None:
    """Top-level single-file checkpoints, as SD repos ship beside the diffusers folders.

    Keys are ``<component>.<diffusers key>`` in float16: the shape and size of the real thing, not loadable
    by ``from_single_file`` (which wants original LDM key names).
    """
    from safetensors.torch import save_file

    state: dict[str, Any] = {}
    for component in SD_COMPONENTS:
        for key, tensor in getattr(pipe, component).state_dict().items():
            state[f"{component}.{key}"] = tensor.detach().to(torch.float16).contiguous().clone()
    save_file(state, str(folder / "tiny-sd.safetensors"), metadata={"format": "pt"})
    # torch.save names the zip records after the file stem and fixes their timestamps: deterministic bytes.
    torch.save({"state_dict": state, "global_step": 0}, folder / "tiny-sd.ckpt")


def _write_sd_extras(folder: Path, extras: tuple[str, ...]) -> None:
    if "onnx" in extras:
        for part in ("text_encoder", "unet", "vae_decoder", "vae_encoder"):
            _write_bytes(folder / "onnx" / part / "model.onnx", b"\x08\x07" + _fake_bytes(f"onnx/{part}", 1024))
        _write_bytes(folder / "onnx" / "unet" / "weights.pb", _fake_bytes("onnx/unet/weights", 2048))
    if "flax" in extras:
        msgpack = b"\x81\xa6params\x80"  # {"params": {}}: a valid, empty flax state
        _write_bytes(folder / "unet" / "diffusion_pytorch_model.msgpack", msgpack)
        _write_bytes(folder / "vae" / "diffusion_pytorch_model.msgpack", msgpack)
        _write_bytes(folder / "text_encoder" / "flax_model.msgpack", msgpack)
    if "openvino" in extras:
        for part in ("text_encoder", "unet", "vae_decoder", "vae_encoder"):
            _write_openvino_model(folder / "openvino" / part, part)
    if "readme" in extras:
        body = (
            "A tiny, randomly initialised Stable Diffusion pipeline for offline tests of hfbundle.\n"
            "It produces noise; it exists to exercise loaders and resolvers."
        )
        tags = ("stable-diffusion", "text-to-image", "lcm")
        _write_text(folder / "README.md", _model_card("tiny-sd", body, library="diffusers", tags=tags))
    if "gitattributes" in extras:
        _write_text(folder / ".gitattributes", _GITATTRIBUTES)


def _write_openvino_model(folder: Path, label: str, *, weight_size: int = 512) -> None:
    """A minimal OpenVINO IR pair: valid-looking XML, fake weights. Never loaded."""
    xml = (
        '<?xml version="1.0"?>\n'
        f'<net name="{label}" version="11">\n'
        "\t<layers>\n"
        '\t\t<layer id="0" name="sample" type="Parameter" version="opset1">\n'
        '\t\t\t<data shape="1,4,8,8" element_type="f32" />\n'
        "\t\t</layer>\n"
        '\t\t<layer id="1" name="out_sample" type="Result" version="opset1" />\n'
        "\t</layers>\n"
        "\t<edges>\n"
        '\t\t<edge from-layer="0" from-port="0" to-layer="1" to-port="0" />\n'
        "\t</edges>\n"
        "</net>\n"
    )
    _write_text(folder / "openvino_model.xml", xml)
    _write_bytes(folder / "openvino_model.bin", _fake_bytes(f"openvino/{label}", weight_size))


# --------------------------------------------------------------------------------------------------------------
# TAESD, LCM-LoRA, OpenVINO, SDXL


def make_taesd(dest: Path, *, seed: int = 0) -> Path:
    """Write a tiny ``AutoencoderTiny`` repo shaped like madebyollin/taesd and return it.

    Files: ``config.json``, ``diffusion_pytorch_model.safetensors`` and ``.bin``, ``README.md`` and the
    ``taesd_encoder.pth`` / ``taesd_decoder.pth`` side files. Four latent channels and scale factor 8, like the
    tiny SD VAE, so ``pipe.vae = AutoencoderTiny.from_pretrained(folder)`` runs.
    """
    AutoencoderTiny = _diffusers().AutoencoderTiny

    with _torch_session(seed) as torch, _staging(dest) as stage:
        taesd = AutoencoderTiny(
            latent_channels=4,
            encoder_block_out_channels=(4, 4, 4, 4),
            decoder_block_out_channels=(4, 4, 4, 4),
            num_encoder_blocks=(1, 1, 1, 1),
            num_decoder_blocks=(1, 1, 1, 1),
        )
        taesd.save_pretrained(stage, safe_serialization=True)
        taesd.save_pretrained(stage, safe_serialization=False)
        # AutoencoderTiny registers a derived block_out_channels that its own from_pretrained then reports as
        # unexpected; madebyollin/taesd's config.json does not carry it.
        config = json.loads((stage / "config.json").read_text(encoding="utf-8"))
        config.pop("block_out_channels", None)
        _write_json(stage / "config.json", config)
        torch.save(taesd.encoder.state_dict(), stage / "taesd_encoder.pth")
        torch.save(taesd.decoder.state_dict(), stage / "taesd_decoder.pth")
        body = "A tiny, randomly initialised TAESD (Tiny AutoEncoder for Stable Diffusion) for offline tests."
        card = _model_card("tiny-taesd", body, library="diffusers", tags=("stable-diffusion", "vae"))
        _write_text(stage / "README.md", card)
    return Path(dest)


def _lcm_lora_state(rank: int) -> dict[str, Any]:
    """LoRA weights for the tiny SD UNet in the PEFT key format (``<module>.lora_A.weight``).

    Not ``convert_state_dict_to_diffusers``: on diffusers 0.42 it renames attention keys only (``to_q.lora.down``)
    and ``load_lora_weights`` then drops them with a peft "inconsistency" RuntimeWarning.
    """
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = _tiny_unet()
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        target_modules=["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"],
        init_lora_weights=False,  # random A *and* B, so fusing visibly changes the UNet
    )
    unet.add_adapter(config)
    return {key: tensor.detach().contiguous().clone() for key, tensor in get_peft_model_state_dict(unet).items()}


def make_lcm_lora(dest: Path, *, seed: int = 0) -> Path:
    """Write a tiny LoRA repo shaped like latent-consistency/lcm-lora-sdv1-5 and return it.

    ``pytorch_lora_weights.safetensors`` (``LORA_WEIGHT_NAME``) fits the tiny SD UNet:
    ``pipe.load_lora_weights(folder, weight_name=LORA_WEIGHT_NAME)`` then ``pipe.fuse_lora()`` work. Decoys a
    resolver must not take: the same weights as ``pytorch_lora_weights.bin``, an older
    ``pytorch_lora_weights_old.safetensors`` (other rank), ``README.md`` and ``images/*.png``.
    """
    StableDiffusionPipeline = _diffusers().StableDiffusionPipeline

    with _torch_session(seed), _staging(dest) as stage:
        state = _lcm_lora_state(rank=4)
        old = _lcm_lora_state(rank=2)
        for safe in (True, False):
            StableDiffusionPipeline.save_lora_weights(stage, unet_lora_layers=state, safe_serialization=safe)
        StableDiffusionPipeline.save_lora_weights(
            stage, unet_lora_layers=old, weight_name="pytorch_lora_weights_old.safetensors"
        )
        _write_bytes(stage / "images" / "image_grid.png", _png(32, 16, seed))
        _write_bytes(stage / "images" / "lcm_lora_sample.png", _png(16, 16, seed + 1))
        body = (
            "A tiny, randomly initialised LCM-LoRA for the hfbundle tiny SD pipeline.\n\n"
            "```python\n"
            'pipe.load_lora_weights("hfbundle-test/tiny-lcm-lora", weight_name="pytorch_lora_weights.safetensors")\n'
            "pipe.fuse_lora()\n"
            "```"
        )
        tags = ("lora", "text-to-image", "stable-diffusion", "lcm")
        card = _model_card("tiny-lcm-lora", body, library="diffusers", tags=tags, base_model=f"{_ORG}/tiny-sd")
        _write_text(stage / "README.md", card)
    return Path(dest)


def make_openvino_sd(dest: Path, *, seed: int = 0) -> Path:
    """Write a tree shaped like rupeshs/sd-turbo-openvino (optimum-intel export) and return it.

    Valid JSON configs (those of the tiny SD pipeline), the real tokenizer files, and per component
    ``openvino_model.xml`` + ``openvino_model.bin`` with fake contents: for resolver tests, never loaded.
    """
    with tempfile.TemporaryDirectory() as scratch:
        source = make_sd_pipeline(Path(scratch) / "sd", seed=seed)
        with _staging(dest) as stage:
            index = json.loads((source / "model_index.json").read_text(encoding="utf-8"))
            index = {key: value for key, value in index.items() if key not in ("unet", "vae", "text_encoder")}
            index.update(
                {
                    "_class_name": "OVStableDiffusionPipeline",
                    "text_encoder": ["optimum", "OVModelTextEncoder"],
                    "unet": ["optimum", "OVModelUnet"],
                    "vae_decoder": ["optimum", "OVModelVaeDecoder"],
                    "vae_encoder": ["optimum", "OVModelVaeEncoder"],
                }
            )
            _write_json(stage / "model_index.json", index)
            for folder in ("scheduler", "tokenizer", "feature_extractor"):
                shutil.copytree(source / folder, stage / folder)
            sources = {"text_encoder": "text_encoder", "unet": "unet", "vae_decoder": "vae", "vae_encoder": "vae"}
            for part, origin in sources.items():
                shutil.copyfile(source / origin / "config.json", _parent(stage / part / "config.json"))
                _write_openvino_model(stage / part, f"{part}-{seed}", weight_size=2048)
            body = "A tree shaped like an optimum-intel OpenVINO export of a tiny SD pipeline; fake weights."
            tags = ("openvino", "stable-diffusion", "text-to-image")
            _write_text(stage / "README.md", _model_card("tiny-sd-openvino", body, library="diffusers", tags=tags))
            _write_text(stage / ".gitattributes", _GITATTRIBUTES)
    return Path(dest)


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def make_sdxl_like(dest: Path, *, seed: int = 0) -> Path:
    """Write a tiny ``StableDiffusionXLPipeline`` repo (two CLIP text encoders, safetensors) and return it."""
    StableDiffusionXLPipeline = _diffusers().StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    with _torch_session(seed), _staging(dest) as stage:
        with tempfile.TemporaryDirectory() as scratch:
            vocab = _write_tokenizer(Path(scratch))
            tokenizer = CLIPTokenizer.from_pretrained(scratch)
            tokenizer_2 = CLIPTokenizer.from_pretrained(scratch)
        time_dim = 4
        unet = _tiny_unet(
            cross_attention_dim=2 * _TEXT_HIDDEN,  # the two encoders' hidden states, concatenated
            addition_embed_type="text_time",
            addition_time_embed_dim=time_dim,
            projection_class_embeddings_input_dim=6 * time_dim + _TEXT_HIDDEN,
            transformer_layers_per_block=1,
        )
        vae = _tiny_vae()
        text_encoder = CLIPTextModel(_tiny_clip_text_config(len(vocab)))
        text_encoder_2 = CLIPTextModelWithProjection(_tiny_clip_text_config(len(vocab)))
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=_lcm_scheduler(),
            force_zeros_for_empty_prompt=True,
        )
        pipe.save_pretrained(stage, safe_serialization=True)
        _portable_model_index(stage)
        for folder in ("tokenizer", "tokenizer_2"):
            _replace_tokenizer_folder(stage / folder)
    return Path(dest)


# --------------------------------------------------------------------------------------------------------------
# The standard set


def standard_repos() -> dict[str, TinyRepo]:
    """The tiny repos demos and tests use, by Hub-style repo id (``hfbundle-test/<name>``)."""
    sd = make_sd_pipeline
    specs: list[tuple[str, str, Callable[[Path], Path]]] = [
        (
            "tiny-sd",
            "SD like a real Hub repo: safetensors + bin + fp16 variant, single-file checkpoints, README",
            partial(
                sd,
                bin=True,
                variant="fp16",
                extra_folders=("single_file", "readme", "gitattributes"),
            ),
        ),
        ("tiny-taesd", "AutoencoderTiny like madebyollin/taesd", make_taesd),
        ("tiny-lcm-lora", "LoRA like latent-consistency/lcm-lora-sdv1-5, with decoys", make_lcm_lora),
        ("tiny-sd-safetensors-only", "SD with safetensors weights only", sd),
        ("tiny-sd-bin-only", "SD with .bin weights only", partial(sd, safetensors=False, bin=True)),
        (
            "tiny-sd-mixed",
            "SD with safetensors + bin, but vae lacks safetensors (diffusers falls back to .bin)",
            partial(sd, bin=True, missing_safetensors=("vae",)),
        ),
        ("tiny-sd-fp16", "SD with safetensors and an fp16 variant", partial(sd, variant="fp16")),
        (
            "tiny-sd-extras",
            "SD with onnx/, flax msgpack and openvino/ extras beside the safetensors",
            partial(sd, extra_folders=("onnx", "flax", "openvino")),
        ),
        (
            "tiny-sd-safety-checker",
            "SD with a StableDiffusionSafetyChecker component",
            partial(sd, safety_checker=True),
        ),
        ("tiny-sd-openvino", "OpenVINO export tree like rupeshs/sd-turbo-openvino (fake IR)", make_openvino_sd),
        ("tiny-sdxl", "SDXL pipeline with two text encoders, safetensors", make_sdxl_like),
    ]
    return {f"{_ORG}/{name}": TinyRepo(f"{_ORG}/{name}", summary, build) for name, summary, build in specs}


def build_all(root: Path, *, repos: dict[str, TinyRepo] | None = None) -> dict[str, Path]:
    """Build every standard repo (or ``repos``) into ``root/<name>``; return ``{repo_id: folder}``."""
    chosen = standard_repos() if repos is None else repos
    return {repo_id: repo.build(Path(root) / repo.name) for repo_id, repo in chosen.items()}
