"""The CPU runner: generate an image from what is installed, the way FastSDCPU would, with no network.

Offline is enforced, not hoped for: ``HF_HUB_OFFLINE=1`` (and the transformers/diffusers equivalents, and
telemetry off) are set before any Hub library is imported, and every loader gets ``local_files_only=True``.
When the Hub libraries were already imported in this process with the network on (an embedding app), the
generation runs in a child process instead, because they read those variables only at import.

Before anything heavy is imported, :func:`bundler.doctor.doctor` checks that every repo the recipe runs from
is installed and complete (sizes only; ``verify=True`` re-hashes): a run that would fail offline stops with the
doctor's message and fix, never with a loader's "diffusion_pytorch_model.bin not found".

The recipe supplies the defaults (steps, guidance, size, scheduler, the TAESD swap, the LoRA with its weight
name, fused or not); arguments override them. torch, diffusers and transformers are imported only inside the
functions that generate (``pip install hfbundle[runner]``)::

    >>> report = run("tiny-demo", prompt="a red cube", output="cube.png", seed=1)  # doctest: +SKIP
    >>> report.width, report.steps, report.bundle_id[:12]  # doctest: +SKIP
    (64, 2, '132ea3e8c1db')

Longer than ~500 lines: one pipeline builder per mode (LCM, TAESD, LoRA, OpenVINO) behind the one place that may
import torch and diffusers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .cache.layout import default_cache_dir
from .errors import HfBundleError, RunError, UsageError
from .records import JsonRecord

__all__ = ["OFFLINE_ENV", "RunPlan", "RunReport", "physical_cores", "plan_run", "run"]

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DIFFUSERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    # huggingface_hub >= 1.3x sends one request per process even with local_files_only unless one of these is set
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}
_HUB_MODULES = ("huggingface_hub", "diffusers", "transformers", "optimum")
_RESULT_MARK = "@@hfbundle-run@@ "
DTYPES = ("float32", "float16", "bfloat16")


# -- records ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSpec(JsonRecord):
    """One repo to load, pinned by the preflight: what the loader is called with."""

    name: str
    repo: str
    revision: str
    commit: str
    variant: str | None = None
    use_safetensors: bool | None = None
    subfolder: str | None = None
    weight_name: str | None = None  # LoRA only

    @property
    def label(self) -> str:
        return f"{self.repo}@{self.commit[:12]}"


@dataclass(frozen=True)
class RunPlan(JsonRecord):
    """Everything a generation needs, resolved from the recipe, the arguments and the cache (JSON-able, so a
    child process can run it without reading the recipe again)."""

    spec: str
    recipe: str
    cache_dir: str
    output: str
    prompt: str
    negative_prompt: str | None
    seed: int
    steps: int
    guidance: float
    width: int
    height: int
    threads: int
    dtype: str
    role: str
    pipeline: LoadSpec
    vae: LoadSpec | None = None
    lora: LoadSpec | None = None
    lora_fuse: bool = False
    lora_scale: float = 1.0
    scheduler: str | None = None
    bundle_id: str | None = None
    progress: bool = False
    preflight_seconds: float = 0.0
    notes: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunPlan:
        def load(key: str) -> LoadSpec | None:
            return LoadSpec(**data[key]) if data.get(key) else None

        rest = {k: v for k, v in data.items() if k not in ("pipeline", "vae", "lora")}
        rest["notes"] = tuple(rest.get("notes", ()))
        return cls(**rest, pipeline=LoadSpec(**data["pipeline"]), vae=load("vae"), lora=load("lora"))


_REPORT_FLOATS = (
    "guidance",
    "load_seconds",
    "seconds_per_step",
    "total_seconds",
    "preflight_seconds",
    "import_seconds",
    "generate_seconds",
)


@dataclass(frozen=True)
class RunReport(
    JsonRecord,
    rounding=dict.fromkeys(_REPORT_FLOATS, 4),
    convert={"step_seconds": lambda steps: [round(s, 4) for s in steps]},
):
    """What a run produced and how long each phase took (seconds)."""

    output: str
    recipe: str
    prompt: str
    seed: int
    steps: int
    guidance: float
    width: int
    height: int
    load_seconds: float  # from_pretrained, the TAESD swap, the LoRA (and its fusing), the scheduler
    seconds_per_step: float  # median denoising step
    total_seconds: float  # from the call to run() to the PNG on disk
    threads: int
    repos: dict[str, str] = field(default_factory=dict)  # recipe repo name -> repo_id@commit
    bundle_id: str | None = None
    negative_prompt: str | None = None
    dtype: str = "float32"
    preflight_seconds: float = 0.0  # the doctor's check of the cache
    import_seconds: float = 0.0  # torch + diffusers
    generate_seconds: float = 0.0  # the pipeline call: prompt encoding, denoising, decoding
    step_seconds: tuple[float, ...] = ()
    offline: bool = True  # huggingface_hub's HF_HUB_OFFLINE as the loaders saw it
    isolated: bool = False  # ran in a child process
    notes: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunReport:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["step_seconds"] = tuple(kwargs.get("step_seconds", ()))
        kwargs["notes"] = tuple(kwargs.get("notes", ()))
        return cls(**kwargs)

    def render(self) -> list[str]:
        lines = [
            f"wrote {self.output} ({self.width}x{self.height}, {self.steps} steps, guidance {self.guidance:g}, "
            f"seed {self.seed})",
            f"recipe {self.recipe}"
            + (f", bundle {self.bundle_id[:12]}" if self.bundle_id else "")
            + ": "
            + ", ".join(self.repos.values()),
            f"load {self.load_seconds:.2f} s, {self.seconds_per_step * 1000:.0f} ms/step, generate "
            f"{self.generate_seconds:.2f} s, total {self.total_seconds:.2f} s "
            f"({self.threads} thread{'s' if self.threads > 1 else ''}, {self.dtype})",
        ]
        lines.extend(f"note: {n}" for n in self.notes)
        return lines


# -- entry point -----------------------------------------------------------------------------------------------


def run(
    spec: str,
    *,
    prompt: str,
    output: str | Path,
    steps: int | None = None,
    guidance: float | None = None,
    width: int | None = None,
    height: int | None = None,
    seed: int = 0,
    negative_prompt: str | None = None,
    threads: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    verify: bool = False,
    isolate: bool = False,
) -> RunReport:
    """Generate one image from an installed recipe, offline; write ``output`` (PNG) and return the report.

    ``threads`` 0 means the physical cores; ``verify`` re-hashes every file in the preflight; ``isolate``
    runs the generation in a child process even when this one could host it. In-process, the offline
    variables (:data:`OFFLINE_ENV`) stay set in this process afterwards. Raises :class:`RunError` with the
    doctor's diagnosis when the recipe would not load offline.
    """
    t0 = time.perf_counter()
    plan = plan_run(
        spec,
        prompt=prompt,
        output=output,
        steps=steps,
        guidance=guidance,
        width=width,
        height=height,
        seed=seed,
        negative_prompt=negative_prompt,
        threads=threads,
        cache_dir=cache_dir,
        progress=progress,
        verify=verify,
    )
    if isolate or _hub_imported_online():
        report = _run_in_child(plan)
    else:
        os.environ.update(OFFLINE_ENV)
        report = _generate(plan)
    return dataclasses.replace(report, total_seconds=time.perf_counter() - t0)


def plan_run(
    spec: str,
    *,
    prompt: str,
    output: str | Path,
    steps: int | None = None,
    guidance: float | None = None,
    width: int | None = None,
    height: int | None = None,
    seed: int = 0,
    negative_prompt: str | None = None,
    threads: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    verify: bool = False,
) -> RunPlan:
    """The recipe's defaults overridden by the arguments, checked against the cache by the doctor (light:
    nothing heavy is imported). Raises :class:`RunError` when the recipe would not load offline."""
    from .doctor import doctor
    from .recipe import load_spec

    t0 = time.perf_counter()
    recipe = load_spec(spec)
    runner = recipe.runner
    by_name = {r.name: r for r in recipe.repos}
    if runner.pipeline is None or runner.pipeline not in by_name:
        raise RunError(
            f"recipe {recipe.name!r} names no pipeline to run",
            hint="set [runner] pipeline = <repo name> in the recipe",
        )
    main = by_name[runner.pipeline]
    if main.role == "openvino-pipeline":
        _require_openvino(recipe.name)
    steps = steps if steps is not None else runner.steps
    width = width if width is not None else runner.width
    height = height if height is not None else runner.height
    for key, value in (("width", width), ("height", height)):
        if value % 8:
            raise UsageError(f"{key} {value} is not a multiple of 8", hint="Stable Diffusion works in 8-pixel blocks")
    dtype = runner.dtype or "float32"
    if dtype not in DTYPES:
        raise UsageError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    report = doctor(spec, cache, rehash=verify)
    if not report.ok:
        raise RunError(
            report.summary(),
            hint="; ".join(report.fixes) + f" (details: hfbundle doctor {spec})",
        )
    diag = {d.name: d for d in report.repos}
    role = diag[main.name].role or main.role
    if role == "openvino-pipeline":
        _require_openvino(recipe.name)
    elif role != "diffusers-pipeline":
        raise RunError(
            f"recipe {recipe.name!r}: its pipeline repo {main.repo} has role {role!r}, which the runner cannot run",
            hint="the runner runs diffusers pipelines (role diffusers-pipeline) and OpenVINO ones with optimum-intel",
        )

    notes: list[str] = []

    def load(name: str | None, what: str) -> LoadSpec | None:
        if name is None or name not in by_name:
            return None
        r, d = by_name[name], diag[name]
        if d.commit is None or d.missing:  # an optional repo that is not (fully) installed: go without it
            notes.append(f"{what} skipped: {r.repo} is not installed (optional)")
            return None
        weight_name = None
        if what == "LoRA":
            picked = r.weight_name or (d.expected[0] if len(d.expected) == 1 else None)
            prefix = f"{r.subfolder.strip('/')}/" if r.subfolder else ""
            weight_name = picked[len(prefix) :] if picked and picked.startswith(prefix) else picked
        return LoadSpec(
            name=r.name,
            repo=r.repo,
            revision=r.revision,
            commit=d.commit,
            variant=r.variant,
            use_safetensors={"safetensors": True, "bin": False}.get(r.weights),
            subfolder=r.subfolder,
            weight_name=weight_name,
        )

    pipeline = load(main.name, "pipeline")
    assert pipeline is not None  # doctor said ok, and the pipeline is never optional-and-missing silently
    return RunPlan(
        spec=spec,
        recipe=recipe.name,
        cache_dir=str(cache.absolute()),
        output=str(Path(output).absolute()),
        prompt=prompt,
        negative_prompt=negative_prompt if negative_prompt is not None else runner.negative_prompt,
        seed=int(seed),
        steps=int(steps),
        guidance=float(guidance if guidance is not None else runner.guidance),
        width=int(width),
        height=int(height),
        threads=int(threads) or physical_cores(),
        dtype=dtype,
        role=role,
        pipeline=pipeline,
        vae=load(runner.vae, "TAESD swap"),
        lora=load(runner.lora, "LoRA"),
        lora_fuse=runner.lora_fuse,
        lora_scale=runner.lora_scale,
        scheduler=runner.scheduler,
        bundle_id=diag[main.name].bundle_id,
        progress=progress,
        preflight_seconds=time.perf_counter() - t0,
        notes=tuple(notes),
    )


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads make torch's CPU kernels slower, not faster)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = os.cpu_count() or 1
    cores: set[tuple[str | None, str]] = set()
    try:
        with open("/proc/cpuinfo") as f:
            phys: str | None = None
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":", 1)[1].strip()
                elif line.startswith("core id"):
                    cores.add((phys, line.split(":", 1)[1].strip()))
    except OSError:
        pass
    physical = len(cores) if cores else max(1, (os.cpu_count() or 2) // 2)
    return max(1, min(physical, allowed))


def _require_openvino(recipe: str) -> None:
    missing = []
    for module in ("optimum.intel", "openvino"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # the parent package (optimum) is absent
            found = False
        if not found:
            missing.append(module.split(".")[-1] if module == "optimum.intel" else module)
    if missing:
        raise RunError(
            f"recipe {recipe!r} is an OpenVINO pipeline: running it needs optimum-intel and OpenVINO "
            f"(not installed here: {', '.join('optimum-intel' if m == 'intel' else m for m in missing)})",
            hint="pip install 'optimum[openvino]' and run again; or pick a PyTorch recipe (hfbundle resolve --list)",
        )


def _hub_imported_online() -> bool:
    """A Hub library is already imported with the network on: the offline switches can no longer reach it."""
    if not any(m in sys.modules for m in _HUB_MODULES):
        return False
    for module in ("huggingface_hub.constants", "diffusers.utils.constants"):
        top = module.split(".")[0]
        if top in sys.modules and not getattr(sys.modules.get(module), "HF_HUB_OFFLINE", False):
            return True
    return "transformers" in sys.modules and "huggingface_hub.constants" not in sys.modules


# -- the child process -----------------------------------------------------------------------------------------


def _run_in_child(plan: RunPlan) -> RunReport:
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, **OFFLINE_ENV, "HF_HUB_CACHE": plan.cache_dir, "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, "-m", "bundler.runner", json.dumps(plan.to_json())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=None if plan.progress else subprocess.PIPE,  # the progress bar goes straight to our stderr
        text=True,
        check=False,
    )
    results = [line[len(_RESULT_MARK) :] for line in proc.stdout.splitlines() if line.startswith(_RESULT_MARK)]
    if results:
        data = json.loads(results[-1])
        if "error" in data:
            raise RunError(data["error"]["message"], hint=data["error"].get("hint"))
        return dataclasses.replace(RunReport.from_json(data["report"]), isolated=True)
    tail = ((proc.stderr or "").strip().splitlines() or ["(no output)"])[-1]
    raise RunError(
        f"the runner's child process failed (exit {proc.returncode}): {tail}",
        hint=f"run `hfbundle doctor {plan.spec}`; with HFBUNDLE_DEBUG=1 the child's traceback is shown",
    )


def _child_main(argv: list[str]) -> int:
    try:
        plan = RunPlan.from_json(json.loads(argv[0]))
        out: dict[str, Any] = {"report": _generate(plan).to_json()}
    except HfBundleError as e:
        out = {"error": {"message": e.message, "hint": e.hint}}
    sys.stdout.write(_RESULT_MARK + json.dumps(out) + "\n")
    return 0


# -- generation (heavy imports from here on) -------------------------------------------------------------------


def _generate(plan: RunPlan) -> RunReport:
    t0 = time.perf_counter()
    import torch

    # diffusers is imported as Any: its loaders are untyped and mypy --strict would flag every call.
    diffusers: Any = importlib.import_module("diffusers")
    _quiet_libraries(diffusers)
    torch.set_num_threads(plan.threads)
    import_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    if plan.role == "openvino-pipeline":
        pipe, repos = _load_openvino(plan)
    else:
        pipe, repos = _load_diffusers(plan, diffusers, getattr(torch, plan.dtype))
    pipe.set_progress_bar_config(disable=not plan.progress, desc="denoising", file=sys.stderr)
    load_s = time.perf_counter() - t1

    marks: list[float] = []

    def on_step_end(_pipe: Any, _step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        marks.append(time.perf_counter())
        return kwargs

    call: dict[str, Any] = {"callback_on_step_end": on_step_end} if plan.role != "openvino-pipeline" else {}
    if plan.negative_prompt:
        call["negative_prompt"] = plan.negative_prompt
    generator = torch.Generator("cpu").manual_seed(plan.seed)
    t2 = time.perf_counter()
    with torch.inference_mode():
        result = pipe(
            plan.prompt,
            num_inference_steps=plan.steps,
            guidance_scale=plan.guidance,
            width=plan.width,
            height=plan.height,
            generator=generator,
            **call,
        )
    generate_s = time.perf_counter() - t2
    image = result.images[0]
    # The first step also carries prompt encoding and latent set-up: time steps between callbacks.
    steps_s = tuple(b - a for a, b in zip([t2, *marks], marks, strict=False))
    per_step = statistics.median(steps_s[1:] or steps_s) if steps_s else generate_s / max(1, plan.steps)
    text = {
        "prompt": plan.prompt,
        "seed": str(plan.seed),
        "steps": str(plan.steps),
        "guidance": f"{plan.guidance:g}",
        "size": f"{image.width}x{image.height}",
        "recipe": plan.recipe,
        "repos": json.dumps(repos, sort_keys=True),
        "Software": f"hfbundle {__version__}",
    }
    if plan.negative_prompt:
        text["negative_prompt"] = plan.negative_prompt
    if plan.bundle_id:
        text["bundle_id"] = plan.bundle_id
    save_png(image, Path(plan.output), text)
    hub_constants = sys.modules.get("huggingface_hub.constants")
    return RunReport(
        output=plan.output,
        recipe=plan.recipe,
        prompt=plan.prompt,
        seed=plan.seed,
        steps=plan.steps,
        guidance=plan.guidance,
        width=int(image.width),
        height=int(image.height),
        load_seconds=load_s,
        seconds_per_step=per_step,
        total_seconds=plan.preflight_seconds + time.perf_counter() - t0,
        threads=plan.threads,
        repos=repos,
        bundle_id=plan.bundle_id,
        negative_prompt=plan.negative_prompt,
        dtype=plan.dtype,
        preflight_seconds=plan.preflight_seconds,
        import_seconds=import_s,
        generate_seconds=generate_s,
        step_seconds=steps_s,
        offline=bool(getattr(hub_constants, "HF_HUB_OFFLINE", False)),
        notes=plan.notes,
    )


def _load_diffusers(plan: RunPlan, diffusers: Any, dtype: Any) -> tuple[Any, dict[str, str]]:
    """The pipeline as FastSDCPU builds it: from_pretrained, the TAESD swap, the LoRA (fused), the scheduler."""
    common: dict[str, Any] = {"cache_dir": plan.cache_dir, "local_files_only": True}
    main = plan.pipeline
    with _quiet_warnings(), _load_errors(plan, main):
        pipe = diffusers.DiffusionPipeline.from_pretrained(
            main.repo,
            revision=main.revision,
            variant=main.variant,
            use_safetensors=main.use_safetensors,
            torch_dtype=dtype,
            **common,
        )
    repos = {main.name: main.label}
    if plan.vae is not None:
        vae = plan.vae
        with _quiet_warnings(), _load_errors(plan, vae):
            pipe.vae = diffusers.AutoencoderTiny.from_pretrained(
                vae.repo,
                revision=vae.revision,
                subfolder=vae.subfolder,
                variant=vae.variant,
                use_safetensors=vae.use_safetensors,
                torch_dtype=dtype,
                **common,
            )
        repos[vae.name] = vae.label
    if plan.lora is not None:
        lora = plan.lora
        with _quiet_warnings(), _load_errors(plan, lora):
            pipe.load_lora_weights(
                lora.repo,
                weight_name=lora.weight_name,  # offline loading needs it: no Hub listing to guess from
                subfolder=lora.subfolder,
                revision=lora.revision,
                adapter_name=lora.name,
                **common,
            )
            if plan.lora_fuse:
                pipe.fuse_lora(lora_scale=plan.lora_scale)
            elif plan.lora_scale != 1.0:
                pipe.set_adapters([lora.name], adapter_weights=[plan.lora_scale])
        repos[lora.name] = lora.label
    if plan.scheduler and type(pipe.scheduler).__name__ != plan.scheduler:
        scheduler_cls = getattr(diffusers, plan.scheduler, None)
        if scheduler_cls is None:
            raise RunError(
                f"recipe {plan.recipe!r}: diffusers has no scheduler {plan.scheduler!r}",
                hint="use a scheduler class name of diffusers, e.g. LCMScheduler",
            )
        pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    return pipe, repos


def _load_openvino(plan: RunPlan) -> tuple[Any, dict[str, str]]:
    """An OpenVINO export through optimum-intel, as FastSDCPU's OpenVINO mode loads it: static shapes for the
    requested size, then compiled for the CPU (``tests/test_openvino_loader.py`` runs it with optimum-intel 2.0)."""
    intel: Any = importlib.import_module("optimum.intel")
    pipeline_cls = getattr(intel, "OVDiffusionPipeline", None) or intel.OVStableDiffusionPipeline
    main = plan.pipeline
    with _quiet_warnings(), _load_errors(plan, main):
        pipe = pipeline_cls.from_pretrained(
            main.repo,
            revision=main.revision,
            cache_dir=plan.cache_dir,
            local_files_only=True,
            compile=False,
            ov_config={"CACHE_DIR": "", "INFERENCE_NUM_THREADS": str(plan.threads)},
        )
        # batch_size=-1 (dynamic), as FastSDCPU: a static batch of 1 makes optimum-intel 2.0 reshape the UNet to
        # batch 2 (it assumes classifier-free guidance unless the UNet takes timestep_cond), and a guidance 1.0
        # run such as sd-turbo then fails in infer ("model input (shape=[2,4,8,8]) ... incompatible").
        pipe.reshape(batch_size=-1, height=plan.height, width=plan.width, num_images_per_prompt=1)
        pipe.compile()
    return pipe, {main.name: main.label}


@contextlib.contextmanager
def _load_errors(plan: RunPlan, load: LoadSpec) -> Iterator[None]:
    """A loader failing after the doctor passed the cache: say which repo, and how to look closer."""
    try:
        yield
    except HfBundleError:
        raise
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise RunError(
            f"could not load {load.repo} ({load.name}) offline: {type(e).__name__}: {first}",
            hint=f"run `hfbundle doctor {plan.spec}` to re-hash and check every file; "
            "if it reports no problem, the recipe asks for something the loader does not support",
        ) from e


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    """Deprecation notices the loaders raise about their own calls: nothing a user of the runner can act on.
    ``torch_dtype`` stays (diffusers 0.42 renamed it ``dtype``; older releases, which hfbundle supports, ignore
    ``dtype``), and diffusers itself passes ``local_dir_use_symlinks`` to huggingface_hub."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*`torch_dtype` is deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*local_dir_use_symlinks", category=UserWarning)
        yield


def _quiet_libraries(diffusers: Any) -> None:
    """Loading bars and advisory warnings of the libraries are noise on our stderr: keep only errors."""
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    with contextlib.suppress(ImportError):
        transformers: Any = importlib.import_module("transformers")
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


def save_png(image: Any, path: Path, text: Mapping[str, str]) -> None:
    """Write ``image`` as a PNG with ``text`` in tEXt/iTXt chunks, atomically (temp file, then rename)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        if value.isascii():
            info.add_text(key, value)
        else:
            info.add_itxt(key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        image.save(tmp, format="PNG", pnginfo=info)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
