"""The per-role file rules on plain file lists, and a property check against diffusers' own functions."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bundler import rules
from bundler.errors import ResolveError

SD_INDEX: dict[str, Any] = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.42.1",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "LCMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
CONFIGS = {
    "model_index.json",
    "feature_extractor/preprocessor_config.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    "vae/config.json",
}
SAFE = {
    "text_encoder/model.safetensors",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
}
BIN = {"text_encoder/pytorch_model.bin", "unet/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.bin"}
FP16_SAFE = {f.replace(".safetensors", ".fp16.safetensors") for f in SAFE}
FP16_BIN = {f.replace(".bin", ".fp16.bin") for f in BIN}
NOISE = {
    ".gitattributes",
    "README.md",
    "v1-5.safetensors",
    "v1-5.ckpt",
    "unet/diffusion_pytorch_model.msgpack",
    "text_encoder/flax_model.msgpack",
    "onnx/unet/model.onnx",
    "onnx/unet/weights.pb",
    "openvino/unet/openvino_model.xml",
    "openvino/unet/openvino_model.bin",
}


def no_json(path: str) -> Any:
    raise AssertionError(f"unexpected read of {path}")


def reader(files: dict[str, Any]) -> Callable[[str], Any]:
    return lambda path: files[path]


# -------------------------------------------------------------------------------------------- pipelines


@pytest.mark.parametrize(
    ("present", "kwargs", "expected"),
    [
        (CONFIGS | SAFE | BIN | NOISE, {}, CONFIGS | SAFE),
        (CONFIGS | BIN | NOISE, {}, CONFIGS | BIN),
        # one component without safetensors switches the whole pipeline to .bin (_get_ignore_patterns)
        (CONFIGS | BIN | SAFE - {"vae/diffusion_pytorch_model.safetensors"}, {}, CONFIGS | BIN),
        (CONFIGS | SAFE | BIN, {"weights": "bin"}, CONFIGS | BIN),
        (CONFIGS | SAFE | FP16_SAFE | BIN | FP16_BIN, {"variant": "fp16"}, CONFIGS | FP16_SAFE),
        # the variant per component, the regular weights where a component lacks it
        (
            CONFIGS | SAFE | FP16_SAFE - {"vae/diffusion_pytorch_model.fp16.safetensors"},
            {"variant": "fp16"},
            CONFIGS
            | (FP16_SAFE - {"vae/diffusion_pytorch_model.fp16.safetensors"})
            | {"vae/diffusion_pytorch_model.safetensors"},
        ),
        (CONFIGS | SAFE | FP16_SAFE, {}, CONFIGS | SAFE),
    ],
    ids=["safetensors", "bin-only", "mixed", "weights-bin", "fp16", "fp16-partial", "fp16-present-not-asked"],
)
def test_pipeline_files(present: set[str], kwargs: dict[str, Any], expected: set[str]) -> None:
    assert rules.pipeline_files(present, SD_INDEX, **kwargs) == expected


def test_pipeline_sharded_weights_and_index() -> None:
    shards = {
        "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.json",
    }
    bin_index = {"unet/diffusion_pytorch_model.bin.index.json"}
    present = CONFIGS | SAFE - {"unet/diffusion_pytorch_model.safetensors"} | shards | bin_index
    picked = rules.pipeline_files(present, SD_INDEX)
    assert shards <= picked
    assert not bin_index & picked  # index files of ignored formats are ignored too


def test_pipeline_variant_absent_lists_variants() -> None:
    with pytest.raises(ResolveError) as e:
        rules.pipeline_files(CONFIGS | SAFE | FP16_SAFE, SD_INDEX, variant="fp32")
    assert e.value.message == "variant 'fp32' not found; variants present: fp16"
    with pytest.raises(ResolveError, match="it has no variant weight files"):
        rules.pipeline_files(CONFIGS | SAFE, SD_INDEX, variant="fp16")


def test_pipeline_safetensors_only_refuses_bin_components() -> None:
    with pytest.raises(ResolveError, match="not every component has safetensors"):
        rules.pipeline_files(CONFIGS | BIN, SD_INDEX, weights="safetensors")
    assert rules.pipeline_files(CONFIGS | SAFE | BIN, SD_INDEX, weights="safetensors") == CONFIGS | SAFE


def test_pipeline_aux_root_files_and_ignore_files() -> None:
    index = {**SD_INDEX, "_ignore_files": ["tokenizer/merges.txt"]}
    present = CONFIGS | SAFE | {"tokenizer.json", "generation_config.json", "notes.txt"}
    picked = rules.pipeline_files(present, index)
    assert {"tokenizer.json", "generation_config.json"} <= picked  # TRANSFORMERS_COMPONENT_AUX_FILES
    assert "notes.txt" not in picked and "tokenizer/merges.txt" not in picked


def test_pipeline_custom_code_needs_trust() -> None:
    index = {**SD_INDEX, "unet": ["my_unet", "MyUNet"]}
    present = CONFIGS | SAFE | {"unet/my_unet.py", "pipeline.py"}
    with pytest.raises(ResolveError) as e:
        rules.pipeline_files(present, index)
    assert "unet/my_unet.py" in e.value.message and e.value.hint and "trust_remote_code" in e.value.hint
    assert {"unet/my_unet.py", "pipeline.py"} <= rules.pipeline_files(present, index, trust_remote_code=True)
    # a root pipeline.py the pipeline does not use is code we never run: left out without trust
    assert "pipeline.py" not in rules.pipeline_files(CONFIGS | SAFE | {"pipeline.py"}, SD_INDEX)


def test_pipeline_custom_class_needs_trust() -> None:
    index = {**SD_INDEX, "_class_name": ["my_pipeline", "MyPipeline"]}
    present = CONFIGS | SAFE | {"my_pipeline.py"}
    with pytest.raises(ResolveError, match=r"my_pipeline\.py"):
        rules.pipeline_files(present, index)
    assert "my_pipeline.py" in rules.pipeline_files(present, index, trust_remote_code=True)


def test_connected_and_onnx_pipelines() -> None:
    combined = {**SD_INDEX, "_class_name": "KandinskyV22CombinedPipeline"}
    assert "README.md" in rules.pipeline_files(CONFIGS | SAFE | {"README.md"}, combined)
    onnx_index = {
        "_class_name": "OnnxStableDiffusionPipeline",
        "unet": ["diffusers", "OnnxRuntimeModel"],
        "scheduler": ["diffusers", "PNDMScheduler"],
    }
    present = {"model_index.json", "unet/model.onnx", "unet/weights.pb", "scheduler/scheduler_config.json"}
    assert rules.pipeline_files(present, onnx_index) == present


def test_pipeline_needs_class_name() -> None:
    with pytest.raises(ResolveError, match="_class_name"):
        rules.pipeline_files(CONFIGS, {"unet": ["diffusers", "UNet2DConditionModel"]})


# ---------------------------------------------------------------------------------------- single models


TAESD = {"config.json", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "README.md"}


@pytest.mark.parametrize(
    ("present", "kwargs", "expected"),
    [
        (TAESD, {}, {"config.json", "diffusion_pytorch_model.safetensors"}),
        (TAESD - {"diffusion_pytorch_model.safetensors"}, {}, {"config.json", "diffusion_pytorch_model.bin"}),
        (TAESD, {"weights": "bin"}, {"config.json", "diffusion_pytorch_model.bin"}),
        (
            TAESD | {"diffusion_pytorch_model.fp16.safetensors"},
            {"variant": "fp16"},
            {"config.json", "diffusion_pytorch_model.fp16.safetensors"},
        ),
        (
            {"vae/config.json", "vae/diffusion_pytorch_model.safetensors", "unet/config.json"},
            {"subfolder": "vae"},
            {"vae/config.json", "vae/diffusion_pytorch_model.safetensors"},
        ),
    ],
)
def test_diffusers_model_files(present: set[str], kwargs: dict[str, Any], expected: set[str]) -> None:
    assert rules.diffusers_model_files(present, read_json=no_json, **kwargs) == expected


def test_diffusers_model_sharded() -> None:
    index = "diffusion_pytorch_model.safetensors.index.json"
    shards = [
        "diffusion_pytorch_model-00001-of-00002.safetensors",
        "diffusion_pytorch_model-00002-of-00002.safetensors",
    ]
    weight_map = {"a": shards[0], "b": shards[1], "c": shards[1]}
    present = {"config.json", index, *shards, "diffusion_pytorch_model.bin"}
    read = reader({index: {"metadata": {}, "weight_map": weight_map}})
    assert rules.diffusers_model_files(present, read_json=read) == {"config.json", index, *shards}

    with pytest.raises(ResolveError, match="names shards the repo does not have"):
        rules.diffusers_model_files(present - {shards[1]}, read_json=read)
    evil = reader({index: {"weight_map": {"a": "../x.safetensors"}}})
    with pytest.raises(ResolveError, match="outside its folder"):
        rules.diffusers_model_files(present, read_json=evil)


def test_diffusers_model_legacy_variant_index() -> None:
    legacy = "diffusion_pytorch_model.safetensors.fp16.index.json"
    shard = "diffusion_pytorch_model-00001-of-00001.fp16.safetensors"
    present = {"config.json", legacy, shard}
    read = reader({legacy: {"weight_map": {"a": shard}}})
    assert rules.diffusers_model_files(present, read_json=read, variant="fp16") == present


def test_diffusers_model_errors() -> None:
    with pytest.raises(ResolveError) as e:
        rules.diffusers_model_files(TAESD, read_json=no_json, variant="fp16")
    assert "variant 'fp16' not found" in e.value.message and "no variant weight files" in e.value.message
    with pytest.raises(ResolveError) as e:
        rules.diffusers_model_files(TAESD | {"diffusion_pytorch_model.ema.bin"}, read_json=no_json, variant="fp16")
    assert e.value.message.endswith("variants present: ema")
    with pytest.raises(ResolveError, match="not a diffusers model"):
        rules.diffusers_model_files({"model.safetensors"}, read_json=no_json)
    with pytest.raises(ResolveError) as e:
        rules.diffusers_model_files(
            {"config.json", "diffusion_pytorch_model.bin"}, read_json=no_json, weights="safetensors"
        )
    assert e.value.hint is not None and 'weights = "auto"' in e.value.hint


# ------------------------------------------------------------------------------------------------- lora

LORA = {
    "README.md",
    "pytorch_lora_weights.safetensors",
    "pytorch_lora_weights.bin",
    "pytorch_lora_weights_old.safetensors",
    "images/grid.png",
}


def test_lora_by_weight_name() -> None:
    assert rules.lora_files(LORA, weight_name="pytorch_lora_weights_old.safetensors") == {
        "pytorch_lora_weights_old.safetensors"
    }
    assert rules.lora_files({"sub/a.safetensors"}, weight_name="a.safetensors", subfolder="sub") == {
        "sub/a.safetensors"
    }
    with pytest.raises(ResolveError) as e:
        rules.lora_files(LORA, weight_name="lora.safetensors")
    assert "'lora.safetensors' not found" in e.value.message
    assert e.value.hint is not None and "pytorch_lora_weights_old.safetensors" in e.value.hint


def test_lora_best_guess_like_diffusers() -> None:
    # diffusers prefers a file ending in pytorch_lora_weights.safetensors among the .safetensors
    assert rules.lora_files(LORA) == {"pytorch_lora_weights.safetensors"}
    assert rules.lora_files(LORA, weights="bin") == {"pytorch_lora_weights.bin"}
    assert rules.lora_files({"only.bin", "README.md"}) == {"only.bin"}
    assert rules.lora_files({"a.safetensors", "optimizer.safetensors"}) == {"a.safetensors"}
    with pytest.raises(ResolveError) as e:
        rules.lora_files({"a.safetensors", "b.safetensors"})
    assert "several LoRA weight files: a.safetensors, b.safetensors" in e.value.message
    with pytest.raises(ResolveError, match="no LoRA weight file"):
        rules.lora_files({"README.md"})


# ---------------------------------------------------------------------------------- transformers / openvino


def test_transformers_model_files() -> None:
    present = {
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        "generation_config.json",
        "modeling_custom.py",
        "README.md",
        "onnx/model.onnx",
    }
    expected = present - {"pytorch_model.bin", "modeling_custom.py", "README.md", "onnx/model.onnx"}
    assert rules.transformers_model_files(present, read_json=no_json) == expected
    with_code = rules.transformers_model_files(present, read_json=no_json, trust_remote_code=True)
    assert with_code == expected | {"modeling_custom.py"}
    bin_only = rules.transformers_model_files(present - {"model.safetensors"}, read_json=no_json)
    assert "pytorch_model.bin" in bin_only
    index = "model.safetensors.index.json"
    sharded = {"config.json", index, "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
    read = reader(
        {index: {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}}
    )
    assert rules.transformers_model_files(sharded, read_json=read) == sharded
    with pytest.raises(ResolveError, match="variant 'fp16' not found"):
        rules.transformers_model_files(present, read_json=no_json, variant="fp16")


OV_INDEX = {
    "_class_name": "OVStableDiffusionPipeline",
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["optimum", "OVModelTextEncoder"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["optimum", "OVModelUnet"],
    "vae_decoder": ["optimum", "OVModelVaeDecoder"],
    "vae_encoder": ["optimum", "OVModelVaeEncoder"],
}


def test_openvino_pipeline_files() -> None:
    ir = {
        f"{c}/openvino_model.{x}"
        for c in ("text_encoder", "unet", "vae_decoder", "vae_encoder")
        for x in ("xml", "bin")
    }
    configs = {"model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "unet/config.json"}
    noise = {
        "README.md",
        ".gitattributes",
        "unet/diffusion_pytorch_model.safetensors",
        "text_encoder/pytorch_model.bin",
        "unet/model.onnx",
        "unet/model.onnx_data",
        "unet/flax.msgpack",
        "other/file.txt",
    }
    assert rules.openvino_pipeline_files(ir | configs | noise, OV_INDEX) == ir | configs
    with pytest.raises(ResolveError, match="not an OpenVINO export"):
        rules.openvino_pipeline_files(configs, OV_INDEX)


# ------------------------------------------------------------------------------------------------ helpers


def test_detect_role() -> None:
    index_read = reader({"model_index.json": SD_INDEX})
    assert rules.detect_role(CONFIGS | SAFE, index_read) == "diffusers-pipeline"
    ov_files = {"model_index.json", "unet/openvino_model.xml", "unet/openvino_model.bin"}
    assert rules.detect_role(ov_files, reader({"model_index.json": {**SD_INDEX, "_class_name": "X"}})) == (
        "openvino-pipeline"
    )
    assert rules.detect_role(ov_files, reader({"model_index.json": OV_INDEX})) == "openvino-pipeline"
    model_read = reader({"config.json": {"_class_name": "AutoencoderTiny"}})
    assert rules.detect_role(TAESD, model_read) == "diffusers-model"
    assert rules.detect_role(TAESD, reader({"config.json": {"model_type": "clip"}})) == "whole-repo"
    assert rules.detect_role({"a.gguf"}, no_json) == "whole-repo"
    sub_read = reader({"vae/config.json": {"_class_name": "AutoencoderKL"}})
    assert rules.detect_role(CONFIGS | SAFE, sub_read, subfolder="vae") == "diffusers-model"


def test_variants_in_and_patterns() -> None:
    names = FP16_SAFE | {"unet/diffusion_pytorch_model.ema.bin", "model.bf16-00001-of-00002.safetensors"}
    assert rules.variants_in(names | SAFE) == ["bf16", "ema", "fp16"]
    assert rules.variants_in(SAFE) == []
    assert rules.match_patterns("unet/sub/x.json", ["unet/*.json"])  # * crosses '/', as in snapshot_download
    assert rules.match_patterns("unet/x.bin", ["unet/"])
    assert not rules.match_patterns("unet.bin", ["unet/"])
    assert rules.filter_files(["a.json", "b.bin", "c.json"], ["*.json"], ["c*"]) == {"a.json"}
    assert rules.add_variant("diffusion_pytorch_model.safetensors.index.json", "fp16") == (
        "diffusion_pytorch_model.safetensors.index.fp16.json"
    )


# ------------------------------------------------------------------------ property: same as diffusers

_DIRS = st.sampled_from(["", "unet/", "vae/", "text_encoder/", "onnx/unet/", "tokenizer/"])
_STEMS = st.sampled_from(
    ["diffusion_pytorch_model", "model", "pytorch_model", "weights", "flax_model", "openvino_model", "x"]
)
_MIDDLES = st.sampled_from(["", ".fp16", ".ema", "-00001-of-00002", ".fp16-00001-of-00002", "-00001-of-00002.fp16"])
_EXTS = st.sampled_from([".safetensors", ".bin", ".onnx", ".pb", ".msgpack", ".json", ".safetensors.index.json"])
_FILES = st.builds(lambda d, s, m, e: d + s + m + e, _DIRS, _STEMS, _MIDDLES, _EXTS)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(files=st.sets(_FILES, max_size=12), variant=st.sampled_from([None, "fp16", "ema"]))
def test_same_choices_as_diffusers(files: set[str], variant: str | None) -> None:
    upstream: Any = importlib.import_module("diffusers.pipelines.pipeline_loading_utils")

    folders = {"unet", "vae", "text_encoder"}
    assert set(rules.filter_model_files(files)) == set(upstream.filter_model_files(files))
    assert rules.is_safetensors_compatible(files, folders, variant) == upstream.is_safetensors_compatible(
        files, folder_names=folders, variant=variant
    )
    for ignore in ([], ["*.bin", "*.msgpack", "*.onnx", "*.pb"], ["*.safetensors", "*.msgpack"]):
        try:
            theirs: Any = tuple(set(x) for x in upstream.variant_compatible_siblings(files, variant, ignore))
        except ValueError:
            theirs = "error"
        try:
            ours: Any = rules.variant_compatible_siblings(files, variant, ignore)
        except ResolveError:
            ours = "error"
        assert ours == theirs, json.dumps(sorted(files))
