"""Which files of a repo each role needs: the loaders' own picking rules, replayed on the repo's file list.

Everything here is a pure function of a file list (the Hub's tree at one commit) plus the few small JSON
configs a rule must read, passed in as ``read_json``. No network, no torch: :mod:`bundler.resolve` feeds
these from the Hub, tests feed them plain lists.

The rules mirror these upstream functions (diffusers 0.42.1, transformers 5.x, optimum-intel):

- ``diffusers-pipeline``: ``DiffusionPipeline.download`` with ``_get_custom_components_and_folders``,
  ``filter_model_files``, ``is_safetensors_compatible``, ``_get_ignore_patterns`` and
  ``variant_compatible_siblings`` (``diffusers/pipelines/pipeline_loading_utils.py``), then
  ``snapshot_download``'s pattern filter (``huggingface_hub.utils.filter_repo_objects``).
- ``diffusers-model``: ``ModelMixin.from_pretrained`` → ``_fetch_index_file`` (+ ``_legacy``),
  ``_get_checkpoint_shard_files`` and ``_get_model_file`` (``diffusers/utils/hub_utils.py``).
- ``lora``: ``_fetch_state_dict`` / ``_best_guess_weight_name`` (``diffusers/loaders/lora_base.py``).
- ``transformers-model``: ``PreTrainedModel.from_pretrained``'s checkpoint order (safetensors, its index,
  then ``.bin`` and its index) plus the tokenizer/processor files transformers probes for.
- ``openvino-pipeline``: the whole commit. ``OVDiffusionPipeline._from_pretrained``'s allow/ignore patterns
  (optimum-intel 2.0) pick what it downloads online (:func:`openvino_pipeline_files`, checked against the real
  loader in ``tests/test_openvino_loader.py``), but offline it needs every file of the commit: see
  :func:`openvino_offline_files`.

Longer than ~500 lines: one small pure function per loader rule (diffusers components, variants, weights,
transformers, OpenVINO), replayed on a file list; kept together so the rules can be read side by side.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from .errors import ResolveError

if TYPE_CHECKING:
    from .recipe import RepoSpec

JsonReader = Callable[[str], Any]

# --------------------------------------------------------------------------------------------- diffusers names

CONFIG_NAME = "config.json"
MODEL_INDEX = "model_index.json"
SCHEDULER_CONFIG_NAME = "scheduler_config.json"
CUSTOM_PIPELINE_FILE_NAME = "pipeline.py"
WEIGHTS_NAME = "diffusion_pytorch_model.bin"
WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.bin.index.json"
SAFETENSORS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
ONNX_WEIGHTS_NAME = "model.onnx"
ONNX_EXTERNAL_WEIGHTS_NAME = "weights.pb"
FLASHPACK_WEIGHTS_NAME = "model.flashpack"
TRANSFORMERS_WEIGHTS_NAME = "pytorch_model.bin"
TRANSFORMERS_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
TRANSFORMERS_SAFE_WEIGHTS_NAME = "model.safetensors"
TRANSFORMERS_SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
LORA_WEIGHT_NAME = "pytorch_lora_weights.bin"
LORA_WEIGHT_NAME_SAFE = "pytorch_lora_weights.safetensors"

# diffusers.utils.constants.TRANSFORMERS_COMPONENT_AUX_FILES: root files download() always allows.
TRANSFORMERS_COMPONENT_AUX_FILES = (
    "chat_template.jinja",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
# Pipelines with ``_load_connected_pipes = True``: download() also fetches README.md (the model card names the
# connected "prior" repo, which a recipe must list as a repo of its own).
CONNECTED_PIPELINES = frozenset(
    {
        "KandinskyCombinedPipeline",
        "KandinskyImg2ImgCombinedPipeline",
        "KandinskyInpaintCombinedPipeline",
        "KandinskyV22CombinedPipeline",
        "KandinskyV22Img2ImgCombinedPipeline",
        "KandinskyV22InpaintCombinedPipeline",
        "StableCascadeCombinedPipeline",
        "WuerstchenCombinedPipeline",
    }
)
# Pipelines with ``_is_onnx = True``: they keep ``*.onnx``/``*.pb``.
ONNX_PIPELINES = frozenset(
    {
        "OnnxStableDiffusionPipeline",
        "StableDiffusionOnnxPipeline",
        "OnnxStableDiffusionImg2ImgPipeline",
        "OnnxStableDiffusionInpaintPipeline",
        "OnnxStableDiffusionInpaintPipelineLegacy",
        "OnnxStableDiffusionUpscalePipeline",
    }
)

# The weight names diffusers' regexes are built from (with transformers installed, as at load time).
_WEIGHT_NAMES = (
    WEIGHTS_NAME,
    SAFETENSORS_WEIGHTS_NAME,
    ONNX_WEIGHTS_NAME,
    ONNX_EXTERNAL_WEIGHTS_NAME,
    TRANSFORMERS_WEIGHTS_NAME,
    TRANSFORMERS_SAFE_WEIGHTS_NAME,
)
_PREFIXES = "|".join(w.split(".")[0] for w in _WEIGHT_NAMES)
_SUFFIXES = "|".join(w.split(".")[-1] for w in _WEIGHT_NAMES)
_SHARD = r"\d{5}-of-\d{5}"
# filter_model_files: a plain ``endswith`` on these (no dot: "openvino_model.bin" counts, as upstream).
_MODEL_FILE_EXTENSIONS = tuple(w.split(".")[-1] for w in (*_WEIGHT_NAMES, FLASHPACK_WEIGHTS_NAME))
_NON_VARIANT_FILE = re.compile(rf"({_PREFIXES})(-{_SHARD})?\.({_SUFFIXES})$")
_NON_VARIANT_INDEX = re.compile(rf"({_PREFIXES})\.({_SUFFIXES})\.index\.json")
# Any variant, for error messages: diffusion_pytorch_model.fp16.safetensors, model.fp16-00001-of-00002...
_ANY_VARIANT = re.compile(rf"^(?:{_PREFIXES})\.([A-Za-z0-9_-]+?)(?:-{_SHARD})?\.(?:{_SUFFIXES})$")
_ANY_LEGACY_VARIANT = re.compile(rf"^.*-{_SHARD}\.([A-Za-z0-9_-]+)\.(?:{_SUFFIXES})$")


def _variant_file_re(variant: str) -> re.Pattern[str]:
    return re.compile(rf"({_PREFIXES})\.({variant}|{variant}-{_SHARD})\.({_SUFFIXES})$")


def _basename_matches(filenames: Iterable[str], pattern: re.Pattern[str]) -> set[str]:
    """diffusers' ``filter_with_regex``: ``re.match`` on the last path component."""
    return {f for f in filenames if pattern.match(f.split("/")[-1]) is not None}


def filter_model_files(filenames: Iterable[str]) -> list[str]:
    """Files that hold model weights (diffusers' ``filter_model_files``)."""
    return [f for f in filenames if f.endswith(_MODEL_FILE_EXTENSIONS)]


def variants_in(filenames: Iterable[str]) -> list[str]:
    """The variant names the weight files of ``filenames`` carry (``fp16``, ``ema``…), sorted."""
    found: set[str] = set()
    for f in filenames:
        base = f.split("/")[-1]
        m = _ANY_VARIANT.match(base) or _ANY_LEGACY_VARIANT.match(base)
        if m:
            found.add(m.group(1))
    return sorted(found)


def match_patterns(path: str, patterns: Iterable[str]) -> bool:
    """``snapshot_download``'s matching: ``fnmatchcase`` where ``*`` crosses ``/``; ``dir/`` means ``dir/*``."""
    return any(fnmatchcase(path, p + "*" if p.endswith("/") else p) for p in patterns)


def filter_files(
    filenames: Iterable[str], allow: Iterable[str] | None = None, ignore: Iterable[str] | None = None
) -> set[str]:
    """The files an allow-list keeps and an ignore-list does not drop (``filter_repo_objects``)."""
    allow_list = None if allow is None else list(allow)
    ignore_list = [] if ignore is None else list(ignore)
    return {
        f
        for f in filenames
        if (allow_list is None or match_patterns(f, allow_list)) and not match_patterns(f, ignore_list)
    }


def _no_variant(variant: str, filenames: Iterable[str], where: str = "") -> ResolveError:
    have = variants_in(filenames)
    listing = f"variants present: {', '.join(have)}" if have else "it has no variant weight files"
    return ResolveError(
        f"variant {variant!r} not found{where}; {listing}",
        hint=f"use one of: {', '.join(have)}" if have else "drop the variant to get the regular weights",
    )


# ------------------------------------------------------------------------------------------ diffusers-pipeline


def is_safetensors_compatible(
    filenames: Collection[str], folder_names: Collection[str] | None = None, variant: str | None = None
) -> bool:
    """Every weight-carrying component has safetensors (diffusers' ``is_safetensors_compatible``)."""
    files = filter_model_files(filenames)
    if folder_names:
        files = [f for f in files if os.path.split(f)[0] in folder_names]
    components: dict[str, list[str]] = {}
    for f in files:
        parts = f.split("/")
        if len(parts) == 2:
            components.setdefault(parts[0], []).append(parts[1])
    variant_re = _variant_file_re(variant) if variant is not None else None
    if not components:
        chosen: set[str] = _basename_matches(files, variant_re) if variant_re else set()
        if not chosen:
            chosen = _basename_matches(files, _NON_VARIANT_FILE)
        return any(".safetensors" in f for f in chosen)
    for names in components.values():
        chosen = _basename_matches(names, variant_re) if variant_re else set()
        if not chosen:
            chosen = _basename_matches(names, _NON_VARIANT_FILE)
        if not any(os.path.splitext(n)[1] == ".safetensors" for n in chosen):
            return False
    return True


def pipeline_ignore_patterns(
    filenames: Collection[str],
    model_folder_names: Collection[str],
    *,
    use_safetensors: bool,
    allow_pickle: bool,
    is_onnx: bool = False,
    variant: str | None = None,
) -> list[str]:
    """diffusers' ``_get_ignore_patterns``: safetensors unless a component lacks them, then ``.bin`` for all."""
    compatible = is_safetensors_compatible(filenames, model_folder_names, variant)
    if use_safetensors and not allow_pickle and not compatible:
        raise ResolveError(
            f"not every component has safetensors weights (variant={variant})",
            hint='set weights = "auto" (or "bin") to accept .bin weights for this pipeline',
        )
    if use_safetensors and compatible:
        return ["*.bin", "*.msgpack"] + ([] if is_onnx else ["*.onnx", "*.pb"])
    return ["*.safetensors", "*.msgpack"] + ([] if is_onnx else ["*.onnx", "*.pb"])


def variant_compatible_siblings(
    filenames: Collection[str], variant: str | None = None, ignore_patterns: Collection[str] = ()
) -> tuple[set[str], set[str]]:
    """diffusers' ``variant_compatible_siblings``: per component, the variant's weights when it has them,
    else the regular ones. Returns (usable files, variant files); no variant file at all is an error."""
    variant_re = _variant_file_re(variant) if variant is not None else None
    variant_index_re = (
        re.compile(rf"({_PREFIXES})\.({_SUFFIXES})\.index\.{variant}\.json$") if variant is not None else None
    )
    legacy_re = re.compile(rf".*-{_SHARD}\.{variant}\.[a-z]+$") if variant is not None else None
    legacy_index_re = (
        re.compile(rf"({_PREFIXES})\.({_SUFFIXES})\.{variant}\.index\.json$") if variant is not None else None
    )
    # Upstream strips "*." and compares with endswith (so "*.bin" drops "openvino_model.bin" too).
    suffixes = tuple(p.lstrip("*.") for p in ignore_patterns)

    components: dict[str, list[str]] = {}
    for f in filenames:
        parts = f.split("/")
        components.setdefault(parts[0] if len(parts) == 2 else "", []).append(f)

    usable: set[str] = set()
    variant_files: set[str] = set()
    for names in components.values():
        kept = [f for f in names if not f.endswith(suffixes)] if suffixes else names
        found: set[str] = set()
        if variant_re and variant_index_re and legacy_re and legacy_index_re:
            current = _basename_matches(kept, variant_re)
            legacy = _basename_matches(kept, legacy_re)
            if current:
                found = current | _basename_matches(kept, variant_index_re)
            elif legacy:
                found = legacy | _basename_matches(kept, legacy_index_re)
        if found:
            variant_files |= found
        else:
            usable |= _basename_matches(kept, _NON_VARIANT_FILE) | _basename_matches(kept, _NON_VARIANT_INDEX)
    usable |= variant_files
    if variant is not None and not variant_files:
        raise _no_variant(variant, filenames)
    return usable, variant_files


def pipeline_files(
    filenames: Collection[str],
    model_index: Mapping[str, Any],
    *,
    variant: str | None = None,
    weights: str = "auto",
    trust_remote_code: bool = False,
) -> set[str]:
    """The files ``DiffusionPipeline.download`` / ``from_pretrained`` fetch from a pipeline repo.

    Code files (``pipeline.py``, ``<component>/<Class>.py``) are kept only with ``trust_remote_code``; a repo
    whose pipeline or components *need* them is refused without it.
    """
    if not isinstance(model_index, Mapping) or "_class_name" not in model_index:
        raise ResolveError(f"{MODEL_INDEX} has no _class_name: not a diffusers pipeline")
    use_safetensors, allow_pickle = _weights_flags(weights)
    ignored_files = model_index.get("_ignore_files") or []
    files = set(filenames) - set(ignored_files)

    # _get_custom_components_and_folders
    folder_names = [k for k, v in model_index.items() if isinstance(v, list) and k != "_class_name"]
    custom_components: dict[str, str] = {}
    for component in folder_names:
        module = model_index[component][0] if model_index[component] else None
        if isinstance(module, str) and f"{component}/{module}.py" in files:
            custom_components[component] = module
    class_name = model_index["_class_name"]
    custom_pipeline = class_name[0] if isinstance(class_name, list) and class_name else None
    pipeline_class = class_name[1] if isinstance(class_name, list) and len(class_name) > 1 else class_name
    needs_code = sorted(f"{c}/{m}.py" for c, m in custom_components.items())
    if custom_pipeline is not None and f"{custom_pipeline}.py" in files:
        needs_code.append(f"{custom_pipeline}.py")
    if needs_code and not trust_remote_code:
        raise ResolveError(
            f"the pipeline runs code from the repo ({', '.join(needs_code)})",
            hint="read that code; if you trust it, set trust_remote_code = true for this repo in the recipe",
        )

    model_folder_names = {os.path.split(f)[0] for f in filter_model_files(files) if os.path.split(f)[0] in folder_names}
    ignore = pipeline_ignore_patterns(
        files,
        model_folder_names,
        use_safetensors=use_safetensors,
        allow_pickle=allow_pickle,
        is_onnx=pipeline_class in ONNX_PIPELINES,
        variant=variant,
    )
    model_filenames, _ = variant_compatible_siblings(files, variant=variant, ignore_patterns=ignore)

    allow = list(model_filenames)
    allow += [f"{k}/*" for k in folder_names if k not in model_folder_names]
    allow += [f"{k}/{m}.py" for k, m in custom_components.items()]
    if custom_pipeline is not None and f"{custom_pipeline}.py" in files:
        allow.append(f"{custom_pipeline}.py")
    allow += [f"{k}/{CONFIG_NAME}" for k in model_folder_names]
    allow += [SCHEDULER_CONFIG_NAME, CONFIG_NAME, MODEL_INDEX, CUSTOM_PIPELINE_FILE_NAME]
    allow += TRANSFORMERS_COMPONENT_AUX_FILES
    if pipeline_class in CONNECTED_PIPELINES:
        allow.append("README.md")
    ignore += [f"{p}.index.*json" for p in ignore]
    picked = filter_files(files, allow, ignore)
    if not trust_remote_code:  # download() also takes an unused root pipeline.py: code we never run stays out
        picked.discard(CUSTOM_PIPELINE_FILE_NAME)
    return picked


def _weights_flags(weights: str) -> tuple[bool, bool]:
    """(use_safetensors, allow_pickle) as diffusers derives them from ``use_safetensors=None|True|False``."""
    if weights == "safetensors":
        return True, False
    if weights == "bin":
        return False, True
    return True, True


# ---------------------------------------------------------------------------------------------- diffusers-model


def add_variant(weights_name: str, variant: str | None) -> str:
    """diffusers' ``_add_variant``: ``a.b.safetensors`` → ``a.b.fp16.safetensors``."""
    if variant is None:
        return weights_name
    parts = weights_name.split(".")
    return ".".join([*parts[:-1], variant, parts[-1]])


def _prefix(subfolder: str | None) -> str:
    return f"{subfolder.strip('/')}/" if subfolder else ""


def _shards(index_path: str, read_json: JsonReader, files: Collection[str], prefix: str) -> set[str]:
    index = read_json(index_path)
    weight_map = index.get("weight_map") if isinstance(index, Mapping) else None
    if not isinstance(weight_map, Mapping) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ResolveError(f"{index_path} has no valid weight_map", hint="the checkpoint index is damaged upstream")
    shards = sorted(set(weight_map.values()))
    bad = [s for s in shards if os.path.basename(s) != s]
    if bad:
        raise ResolveError(f"{index_path} names shards outside its folder: {', '.join(bad)}")
    missing = [prefix + s for s in shards if prefix + s not in files]
    if missing:
        raise ResolveError(
            f"{index_path} names shards the repo does not have: {', '.join(missing)}",
            hint="the repo is incomplete at this revision; pin another revision",
        )
    return {index_path, *(prefix + s for s in shards)}


def diffusers_model_files(
    filenames: Collection[str],
    *,
    read_json: JsonReader,
    subfolder: str | None = None,
    variant: str | None = None,
    weights: str = "auto",
) -> set[str]:
    """The files ``ModelMixin.from_pretrained`` (e.g. ``AutoencoderTiny``) fetches: its config and weights."""
    files = set(filenames)
    prefix = _prefix(subfolder)
    where = f" in {subfolder}/" if subfolder else ""
    config = prefix + CONFIG_NAME
    if config not in files:
        raise ResolveError(
            f"no {CONFIG_NAME}{where}: not a diffusers model",
            hint='set role = "whole-repo" or "files" for repos that are not diffusers models',
        )
    use_safetensors, allow_pickle = _weights_flags(weights)
    index_name = SAFE_WEIGHTS_INDEX_NAME if use_safetensors else WEIGHTS_INDEX_NAME
    index = prefix + add_variant(index_name, variant)
    if index not in files and variant is not None:  # _fetch_index_file_legacy: name.safetensors.fp16.index.json
        parts = index_name.split(".")
        index = prefix + ".".join([*parts[:2], variant, *parts[2:]])
    if index in files:
        return {config, *_shards(index, read_json, files, prefix)}

    safe = prefix + add_variant(SAFETENSORS_WEIGHTS_NAME, variant)
    pickle = prefix + add_variant(WEIGHTS_NAME, variant)
    if use_safetensors and safe in files:
        return {config, safe}
    if allow_pickle and pickle in files:
        return {config, pickle}
    level = [f for f in files if f.startswith(prefix) and "/" not in f[len(prefix) :]]
    if variant is not None and any(f in files for f in (prefix + SAFETENSORS_WEIGHTS_NAME, prefix + WEIGHTS_NAME)):
        raise _no_variant(variant, level, where)
    wanted = " or ".join(
        n.split("/")[-1] for n in ([safe] if use_safetensors else []) + ([pickle] if allow_pickle else [])
    )
    raise ResolveError(
        f"no {wanted}{where}",
        hint=(
            'the model only has .bin weights: set weights = "auto"'
            if not allow_pickle and pickle in files
            else "check the repo and subfolder; this role expects diffusers weight files"
        ),
    )


# ------------------------------------------------------------------------------------------------------- lora


def _lora_candidates(filenames: Iterable[str], extension: str) -> list[str]:
    """diffusers' ``_best_guess_weight_name`` before it picks the first one."""
    files = [f for f in filenames if f.endswith(extension)]
    files = [f for f in files if all(s not in f for s in ("scheduler", "optimizer", "checkpoint"))]
    if any(f.endswith(LORA_WEIGHT_NAME) for f in files):
        files = [f for f in files if f.endswith(LORA_WEIGHT_NAME)]
    elif any(f.endswith(LORA_WEIGHT_NAME_SAFE) for f in files):
        files = [f for f in files if f.endswith(LORA_WEIGHT_NAME_SAFE)]
    return files


def lora_files(
    filenames: Collection[str], *, weight_name: str | None = None, subfolder: str | None = None, weights: str = "auto"
) -> set[str]:
    """Exactly the LoRA weight file ``load_lora_weights`` reads: ``weight_name`` (offline loading needs it),
    or diffusers' own best guess when that guess is unambiguous."""
    files = set(filenames)
    prefix = _prefix(subfolder)
    scope = sorted(f[len(prefix) :] for f in files if f.startswith(prefix))
    listing = ", ".join(prefix + f for f in scope if f.endswith((".safetensors", ".bin")))
    if weight_name is not None:
        path = prefix + weight_name.lstrip("/")
        if path in files:
            return {path}
        raise ResolveError(
            f"LoRA weight file {path!r} not found",
            hint=f"set weight_name to one of: {listing}" if listing else "the repo has no .safetensors/.bin files",
        )
    extensions = {"bin": (".bin",), "safetensors": (".safetensors",)}.get(weights, (".safetensors", ".bin"))
    for ext in extensions:
        candidates = _lora_candidates(scope, ext)
        if len(candidates) == 1:
            return {prefix + candidates[0]}
        if len(candidates) > 1:
            raise ResolveError(
                f"several LoRA weight files: {', '.join(prefix + c for c in candidates)}",
                hint='name the one to load: weight_name = "..." (offline loading needs it anyway)',
            )
    raise ResolveError(
        "no LoRA weight file (.safetensors or .bin) found",
        hint=f"set weight_name to one of: {listing}" if listing else "check the repo id",
    )


# ----------------------------------------------------------------------------------------- transformers-model

# Files transformers' Auto* loaders probe for beside the weights (tokenizers, processors, generation).
TRANSFORMERS_AUX_FILES = (
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
)


def transformers_model_files(
    filenames: Collection[str],
    *,
    read_json: JsonReader,
    subfolder: str | None = None,
    variant: str | None = None,
    weights: str = "auto",
    trust_remote_code: bool = False,
) -> set[str]:
    """Config, weights (safetensors, else ``.bin``; sharded via the index) and the tokenizer/processor
    files present, as ``AutoModel``/``AutoTokenizer``/``AutoProcessor.from_pretrained`` read them."""
    files = set(filenames)
    prefix = _prefix(subfolder)
    where = f" in {subfolder}/" if subfolder else ""
    config = prefix + CONFIG_NAME
    if config not in files:
        raise ResolveError(f"no {CONFIG_NAME}{where}: not a transformers model", hint='try role = "whole-repo"')
    use_safetensors, allow_pickle = _weights_flags(weights)
    order: list[tuple[str, str]] = []
    if use_safetensors:
        order += [(TRANSFORMERS_SAFE_WEIGHTS_NAME, ""), (TRANSFORMERS_SAFE_WEIGHTS_INDEX_NAME, "index")]
    if allow_pickle:
        order += [(TRANSFORMERS_WEIGHTS_NAME, ""), (TRANSFORMERS_WEIGHTS_INDEX_NAME, "index")]
    chosen: set[str] | None = None
    for name, kind in order:
        path = prefix + add_variant(name, variant)
        if path in files:
            chosen = _shards(path, read_json, files, prefix) if kind else {path}
            break
    if chosen is None:
        level = [f for f in files if f.startswith(prefix) and "/" not in f[len(prefix) :]]
        if variant is not None and any(prefix + n in files for n, _ in order):
            raise _no_variant(variant, level, where)
        raise ResolveError(
            f"no {' or '.join(add_variant(n, variant) for n, _ in order)}{where}",
            hint='check the repo; for .bin-only models set weights = "auto"',
        )
    aux = {prefix + n for n in TRANSFORMERS_AUX_FILES if prefix + n in files}
    code = (
        {f for f in files if f.startswith(prefix) and "/" not in f[len(prefix) :] and f.endswith(".py")}
        if trust_remote_code
        else set()
    )
    return {config, *chosen, *aux, *code}


# ------------------------------------------------------------------------------------------ openvino-pipeline

OPENVINO_XML = "openvino_model.xml"
OPENVINO_IGNORE = ("*.msgpack", "*.safetensors", "*pytorch_model.bin", "*.onnx", "*.onnx_data")


def openvino_pipeline_files(filenames: Collection[str], model_index: Mapping[str, Any]) -> set[str]:
    """optimum-intel's ``OVDiffusionPipeline._from_pretrained`` patterns: every component folder (plus
    ``vae_encoder``/``vae_decoder``), root IR files and configs; no safetensors, ``pytorch_model.bin``, onnx."""
    if not isinstance(model_index, Mapping):
        raise ResolveError(f"{MODEL_INDEX} is not a JSON object")
    components = {k for k in model_index if not k.startswith("_")} | {"vae_encoder", "vae_decoder"}
    allow = {f"{c}/*" for c in components}
    allow |= {OPENVINO_XML, OPENVINO_XML.replace(".xml", ".bin"), SCHEDULER_CONFIG_NAME, MODEL_INDEX, CONFIG_NAME}
    picked = filter_files(filenames, allow, OPENVINO_IGNORE)
    if not any(f.endswith("/" + OPENVINO_XML) or f == OPENVINO_XML for f in picked):
        raise ResolveError(
            f"no {OPENVINO_XML} in any component folder: not an OpenVINO export",
            hint='use role = "diffusers-pipeline" for a PyTorch pipeline',
        )
    return picked


def openvino_offline_files(filenames: Collection[str], model_index: Mapping[str, Any]) -> set[str]:
    """What optimum-intel 2.0 needs to load an OpenVINO export offline: every file of the commit.

    Offline (``HF_HUB_OFFLINE=1``, the only way it loads offline on huggingface_hub 1.x, see
    :mod:`bundler.loaderenv`), ``OVBaseModel.from_pretrained`` resolves ``refs/main`` to the commit and
    ``optimum.modeling_base.OptimizedModel.from_pretrained`` calls ``TasksManager.get_model_files``, whose listing
    fails and falls back to ``snapshot_download(repo, revision=<commit>)`` *without* patterns. With a commit as
    revision huggingface_hub 1.33 takes the download path: it needs ``trees/<commit>.json`` (else it lists the
    Hub: ``OfflineModeIsEnabled``) and then every file that listing names (else ``LocalEntryNotFoundError``).
    So only a complete snapshot with its complete listing loads; the real client's own online download (the
    patterns only, plus the full listing) fails offline the same way. The patterns still decide whether the repo
    is an OpenVINO export at all.
    """
    openvino_pipeline_files(filenames, model_index)  # raises when there is no IR to load
    return set(filenames)


# ------------------------------------------------------------------------------------------- one entry point


def pick_files(
    role: str, names: Collection[str], read_json: JsonReader, spec: RepoSpec, *, trust_weight_name: bool = False
) -> set[str]:
    """The files of ``names`` the loader of ``role`` reads for ``spec``, then the recipe's ``include`` added
    and its ``exclude`` taken away (``role`` is already detected: never ``auto``).

    ``trust_weight_name``: take a LoRA's ``weight_name`` even when ``names`` lacks it (the doctor, whose listing
    may be a snapshot's own files: the file is then missing rather than the recipe wrong).

        >>> from bundler.recipe import RepoSpec
        >>> spec = RepoSpec(name="m", repo="org/m", role="files", include=("*.json",))
        >>> sorted(pick_files("files", ["a.json", "b.bin"], lambda path: None, spec))
        ['a.json']
    """
    listing = frozenset(names)
    picked = _role_files(role, listing, read_json, spec, trust_weight_name=trust_weight_name)
    if role != "files" and spec.include:
        picked |= {f for f in listing if match_patterns(f, spec.include)}
    if spec.exclude:
        picked = {f for f in picked if not match_patterns(f, spec.exclude)}
    return picked


def listed_files(names: Collection[str], spec: RepoSpec) -> set[str]:
    """A recipe's explicit ``files`` list (what ``hfbundle trace`` recorded), checked against the repo's
    listing, plus its ``include`` matches minus its ``exclude`` matches. A listed file the repo lacks is an
    error: the app asked for it and got it, so a listing without it is another commit or a damaged one.

        >>> from bundler.recipe import ListedFile, RepoSpec
        >>> spec = RepoSpec(name="m", repo="org/m", files=(ListedFile("a.json"),))
        >>> sorted(listed_files(["a.json", "b.bin"], spec))
        ['a.json']
    """
    listing = frozenset(names)
    picked = {f.path for f in spec.files}
    absent = sorted(picked - listing)
    if absent:
        raise ResolveError(
            f"the recipe lists {', '.join(absent[:3])}{' …' if len(absent) > 3 else ''}, which the repo does not have",
            hint="pin the commit the app was traced against (commit = ...), or trace the app again",
        )
    if spec.include:
        picked |= {f for f in listing if match_patterns(f, spec.include)}
    if spec.exclude:
        picked = {f for f in picked if not match_patterns(f, spec.exclude)}
    return picked


def _role_files(
    role: str, names: frozenset[str], read_json: JsonReader, spec: RepoSpec, *, trust_weight_name: bool
) -> set[str]:
    if role == "diffusers-pipeline":
        index = read_json(MODEL_INDEX) if MODEL_INDEX in names else None
        if index is None:
            raise ResolveError(f"no {MODEL_INDEX}: not a diffusers pipeline", hint="check the role and repo")
        return pipeline_files(
            names, index, variant=spec.variant, weights=spec.weights, trust_remote_code=spec.trust_remote_code
        )
    if role == "openvino-pipeline":
        if MODEL_INDEX not in names:
            raise ResolveError(f"no {MODEL_INDEX}: not an OpenVINO pipeline export", hint="check the role")
        return openvino_offline_files(names, read_json(MODEL_INDEX))
    if role == "diffusers-model":
        return diffusers_model_files(
            names, read_json=read_json, subfolder=spec.subfolder, variant=spec.variant, weights=spec.weights
        )
    if role == "transformers-model":
        return transformers_model_files(
            names,
            read_json=read_json,
            subfolder=spec.subfolder,
            variant=spec.variant,
            weights=spec.weights,
            trust_remote_code=spec.trust_remote_code,
        )
    if role == "lora":
        if trust_weight_name and spec.weight_name is not None:
            return {_prefix(spec.subfolder) + spec.weight_name.lstrip("/")}
        return lora_files(names, weight_name=spec.weight_name, subfolder=spec.subfolder, weights=spec.weights)
    if role == "files":
        return {f for f in names if match_patterns(f, spec.include)}
    if role == "whole-repo":
        return set(names)
    raise ResolveError(f"unknown role {role!r}")


# ------------------------------------------------------------------------------------------------ detection


def detect_role(filenames: Collection[str], read_json: JsonReader, *, subfolder: str | None = None) -> str:
    """What a repo holds: ``model_index.json`` → a pipeline (OpenVINO when its components are IR files);
    ``config.json`` with ``_class_name`` → ``diffusers-model``; anything else → ``whole-repo``."""
    files = set(filenames)
    prefix = _prefix(subfolder)
    if not prefix and MODEL_INDEX in files:
        index = read_json(MODEL_INDEX)
        class_name = index.get("_class_name") if isinstance(index, Mapping) else None
        depth2 = [f.split("/")[1] for f in files if f.count("/") == 1]
        has_ir = OPENVINO_XML in depth2
        has_torch = any(n.startswith(("diffusion_pytorch_model", "model.", "model-", "pytorch_model")) for n in depth2)
        if (isinstance(class_name, str) and class_name.startswith("OV")) or (has_ir and not has_torch):
            return "openvino-pipeline"
        return "diffusers-pipeline"
    if prefix + CONFIG_NAME in files:
        config = read_json(prefix + CONFIG_NAME)
        if isinstance(config, Mapping) and "_class_name" in config:
            return "diffusers-model"
    return "whole-repo"
