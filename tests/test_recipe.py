"""Recipes: TOML schema, every key checked (did-you-mean), SPEC parsing, lookup of shipped and extra recipes."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest

from bundler.errors import RecipeError, UsageError
from bundler.recipe import (
    RECIPE_PATH_ENV,
    ROLES,
    Recipe,
    RepoSpec,
    RunnerDefaults,
    available_recipes,
    load_recipe,
    load_spec,
    loads_recipe,
)

MINIMAL = """
[recipe]
name = "mini"

[[repos]]
name = "pipeline"
repo = "org/model"
role = "diffusers-pipeline"
"""

SHIPPED = {
    "lcm-sd-turbo",
    "lcm-dreamshaper-v7-taesd",
    "lcm-lora-dreamshaper-8",
    "sdxl-turbo-taesdxl",
    "openvino-sd-turbo",
    "tiny-demo",
}


def recipe_text(extra_repo: str = "", extra: str = "") -> str:
    return MINIMAL + textwrap.dedent(extra_repo) + textwrap.dedent(extra)


# ------------------------------------------------------------------------------------------------ parsing


def test_minimal_recipe_gets_defaults() -> None:
    recipe = loads_recipe(MINIMAL)
    assert recipe.name == "mini"
    assert recipe.version == "1"
    assert recipe.repos == (RepoSpec(name="pipeline", repo="org/model", role="diffusers-pipeline"),)
    spec = recipe.repos[0]
    assert (spec.revision, spec.repo_type, spec.weights, spec.variant) == ("main", "model", "auto", None)
    # the one pipeline repo is the runner's pipeline unless the recipe says otherwise
    assert recipe.runner == RunnerDefaults(pipeline="pipeline")


def test_full_recipe_round_trips_to_json() -> None:
    text = """
    [recipe]
    name = "full"
    version = 3
    description = "every key"

    [[repos]]
    name = "pipe"
    repo = "org/pipe"
    role = "diffusers-pipeline"
    revision = "v1.0"
    variant = "fp16"
    weights = "safetensors"
    include = ["extra/*.json"]
    exclude = ["*.md"]
    trust_remote_code = true

    [[repos]]
    name = "lora"
    repo = "org/lora"
    role = "lora"
    weight_name = "w.safetensors"
    subfolder = "sub/"
    optional = true

    [runner]
    pipeline = "pipe"
    steps = 2
    guidance = 1
    width = 64
    height = 128
    scheduler = "LCMScheduler"
    lora = "lora"
    lora_fuse = true
    lora_scale = 0.5
    negative_prompt = "blurry"
    dtype = "float32"
    """
    recipe = loads_recipe(textwrap.dedent(text), source="full.toml")
    assert recipe.version == "3"
    pipe, lora = recipe.repos
    assert pipe.include == ("extra/*.json",) and pipe.exclude == ("*.md",)
    assert pipe.trust_remote_code and pipe.variant == "fp16" and pipe.weights == "safetensors"
    assert lora.subfolder == "sub" and lora.optional and lora.weight_name == "w.safetensors"
    assert recipe.runner.guidance == 1.0 and isinstance(recipe.runner.guidance, float)
    assert recipe.runner.lora_scale == 0.5 and recipe.runner.lora_fuse is True
    data = recipe.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["name"] == "full" and data["source"] == "full.toml"
    assert data["repos"][0]["include"] == ["extra/*.json"]
    assert data["runner"]["negative_prompt"] == "blurry"
    assert "vae" not in data["runner"]  # unset optional settings are left out


def test_malformed_toml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[recipe]\nname = "x"\n\n[[repos]]\nname "pipeline"\n')
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    assert "invalid TOML" in e.value.message
    assert str(path) in e.value.message
    assert "line 5" in e.value.message and "column" in e.value.message


@pytest.mark.parametrize(
    ("text", "bad", "suggestion"),
    [
        (recipe_text('weigths = "bin"\n'), "weigths", "weights"),
        (recipe_text('revison = "v1"\n'), "revison", "revision"),
        (MINIMAL.replace("[recipe]", '[recipe]\ndescripton = "x"'), "descripton", "description"),
        (recipe_text(extra="\n[runner]\nstep = 2\n"), "step", "steps"),
        (recipe_text(extra="\n[runer]\nsteps = 2\n"), "runer", "runner"),
    ],
)
def test_unknown_key_is_refused_with_did_you_mean(text: str, bad: str, suggestion: str) -> None:
    with pytest.raises(RecipeError) as e:
        loads_recipe(text)
    assert f"unknown key {bad!r}" in e.value.message
    assert e.value.hint is not None and f"did you mean {suggestion!r}?" in e.value.hint
    assert e.value.exit_code == 2


def test_unknown_key_without_close_match_lists_valid_keys() -> None:
    with pytest.raises(RecipeError) as e:
        loads_recipe(recipe_text("zzzzzz = 1\n"))
    assert e.value.hint is not None and "did you mean" not in e.value.hint
    assert "weight_name" in e.value.hint


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ('weights = "ckpt"\n', "is not one of"),
        ('repo_type = "models"\n', "is not one of"),
        ("variant = 16\n", "variant must be a string"),
        ('variant = "fp 16"\n', "variant 'fp 16' is not valid"),
        ("trust_remote_code = 1\n", "must be true or false"),
        ('include = "*.json"\ninclude_x = 1\n', "unknown key"),
        ('weight_name = "x.safetensors"\n', "weight_name does not apply to role 'diffusers-pipeline'"),
        ('subfolder = "unet"\n', "subfolder does not apply"),
        ('subfolder = "../up"\n', "is not a relative folder"),
        ('revision = "a b"\n', "is not a branch, tag or commit"),
    ],
)
def test_bad_repo_values(snippet: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        loads_recipe(recipe_text(snippet))


def test_role_typo_suggests_the_role() -> None:
    with pytest.raises(RecipeError) as e:
        loads_recipe(recipe_text().replace('"diffusers-pipeline"', '"diffusers-pipline"'))
    assert e.value.hint == "did you mean 'diffusers-pipeline'?"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[recipe]\nname = "x"\n', "at least one [[repos]]"),
        (MINIMAL.replace('name = "mini"', ""), "name is required"),
        (MINIMAL.replace('name = "mini"', 'name = "has space"'), "is not valid"),
        (MINIMAL.replace('repo = "org/model"', 'repo = "org/../x"'), "invalid repo id"),
        (MINIMAL + MINIMAL.split("[[repos]]")[1].join(["\n[[repos]]", ""]), "two [[repos]] are named"),
        (recipe_text(extra='\n[runner]\npipeline = "pipe"\n'), "names no [[repos]] entry"),
        (recipe_text(extra='\n[runner]\nlora = "pipeline"\n'), "not 'lora'"),
        (recipe_text(extra="\n[runner]\nsteps = 0\n"), "positive integer"),
        (recipe_text(extra="\n[runner]\nwidth = 100\n"), "multiple of 8"),
        (recipe_text(extra="\n[runner]\nsteps = 2.5\n"), "must be an integer"),
        (recipe_text(extra="\n[runner]\nsteps = true\n"), "must be an integer"),
        (recipe_text(extra="\n[runner]\nguidance = -1\n"), "must not be negative"),
        (recipe_text(extra='\n[runner]\ndtype = "fp16"\n'), "dtype 'fp16'"),
        ('recipe = "x"\n', "must be a table"),
    ],
)
def test_bad_recipe_values(text: str, message: str) -> None:
    with pytest.raises(RecipeError) as e:
        loads_recipe(text)
    assert message in e.value.message


def test_runner_reference_typo_suggests_repo_name() -> None:
    with pytest.raises(RecipeError) as e:
        loads_recipe(recipe_text(extra='\n[runner]\npipeline = "pipelin"\n'))
    assert e.value.hint == "did you mean 'pipeline'?"


def test_files_role_needs_include() -> None:
    text = MINIMAL.replace('role = "diffusers-pipeline"', 'role = "files"')
    with pytest.raises(RecipeError, match="needs include patterns"):
        loads_recipe(text)
    recipe = loads_recipe(text.replace('role = "files"', 'role = "files"\ninclude = ["*.json"]'))
    assert recipe.repos[0].include == ("*.json",)
    assert recipe.runner.pipeline is None  # no pipeline role: nothing to default to


def test_records_are_frozen() -> None:
    recipe = loads_recipe(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.repos[0].repo = "x/y"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------- lookup


def test_shipped_recipes_are_found_and_valid() -> None:
    found = available_recipes()
    assert set(found) >= SHIPPED
    for name in SHIPPED:
        recipe = load_spec(name)
        assert recipe.name == name  # file name and [recipe] name agree
        assert recipe.description
        assert recipe.runner.pipeline is not None
        assert all(r.revision == "main" for r in recipe.repos)  # the lock pins commits, recipes track main
        assert all(r.role in ROLES for r in recipe.repos)


def test_tiny_demo_recipe() -> None:
    recipe = load_spec("tiny-demo")
    assert [(r.name, r.repo, r.role) for r in recipe.repos] == [
        ("pipeline", "hfbundle-test/tiny-sd", "diffusers-pipeline"),
        ("taesd", "hfbundle-test/tiny-taesd", "diffusers-model"),
        ("lcm-lora", "hfbundle-test/tiny-lcm-lora", "lora"),
    ]
    assert recipe.repo("lcm-lora").weight_name == "pytorch_lora_weights.safetensors"
    r = recipe.runner
    assert (r.pipeline, r.vae, r.lora, r.lora_fuse, r.scheduler) == (
        "pipeline",
        "taesd",
        "lcm-lora",
        True,
        "LCMScheduler",
    )
    assert (r.steps, r.guidance, r.width, r.height) == (2, 1.0, 64, 64)


def test_unknown_recipe_name_suggests_and_lists() -> None:
    with pytest.raises(UsageError) as e:
        load_spec("tiny-dmeo")
    assert not isinstance(e.value, RecipeError)  # the name is unknown: no recipe file was wrong
    assert e.value.message == "unknown recipe 'tiny-dmeo'"
    assert e.value.hint is not None
    assert e.value.hint.startswith("did you mean 'tiny-demo'?")
    assert "lcm-sd-turbo" in e.value.hint  # lists what exists
    assert e.value.exit_code == 2


def test_recipe_path_env_adds_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "recipes"
    extra.mkdir()
    (extra / "mini.toml").write_text(MINIMAL)
    (extra / "tiny-demo.toml").write_text(MINIMAL.replace('"mini"', '"tiny-demo"'))
    (extra / "notes.txt").write_text("not a recipe")
    monkeypatch.setenv(RECIPE_PATH_ENV, f"{tmp_path / 'missing'}:{extra}")
    assert {"mini", "tiny-demo", "lcm-sd-turbo"} <= set(available_recipes())
    assert load_spec("mini").repos[0].repo == "org/model"
    assert load_spec("tiny-demo").repos[0].repo == "org/model"  # the extra folder wins over the shipped one


def test_recipe_file_name_must_match_recipe_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "other.toml").write_text(MINIMAL)
    monkeypatch.setenv(RECIPE_PATH_ENV, str(tmp_path))
    with pytest.raises(RecipeError, match="named 'other' but its \\[recipe\\] name is 'mini'"):
        load_spec("other")


# --------------------------------------------------------------------------------------------------- SPEC


def test_spec_as_toml_path(tmp_path: Path) -> None:
    path = tmp_path / "anything.toml"
    path.write_text(MINIMAL)
    recipe = load_spec(str(path))
    assert recipe.name == "mini" and recipe.source == str(path)
    with pytest.raises(UsageError, match="does not exist"):
        load_spec(str(tmp_path / "nope.toml"))


@pytest.mark.parametrize(
    ("spec", "repo", "revision"),
    [
        ("org/name", "org/name", "main"),
        ("org/name@v1.0", "org/name", "v1.0"),
        ("org/name@" + "a" * 40, "org/name", "a" * 40),
        ("stabilityai/sd-turbo@refs/pr/1", "stabilityai/sd-turbo", "refs/pr/1"),
    ],
)
def test_spec_as_repo_id(spec: str, repo: str, revision: str) -> None:
    recipe = load_spec(spec)
    (only,) = recipe.repos
    assert (only.repo, only.revision, only.role) == (repo, revision, "auto")
    assert recipe.name == spec
    assert recipe.runner.pipeline == only.name


@pytest.mark.parametrize("spec", ["org/na me", "org/../x", "org/name@", "a/b/c", "org/name@a@b", ""])
def test_bad_repo_specs(spec: str) -> None:
    with pytest.raises(UsageError):
        load_spec(spec)


def test_refinements_apply_to_the_primary_repo() -> None:
    recipe = load_spec("org/name", variant="fp16", include=["*.md"], exclude=["*.bin"])
    assert recipe.repos[0].variant == "fp16"
    assert recipe.repos[0].include == ("*.md",) and recipe.repos[0].exclude == ("*.bin",)

    demo = load_spec("tiny-demo", variant="fp16", exclude=["*.md"])
    by = {r.name: r for r in demo.repos}
    assert by["pipeline"].variant == "fp16" and by["pipeline"].exclude == ("*.md",)
    assert by["taesd"].variant is None and by["lcm-lora"].exclude == ()


def test_refinement_that_does_not_fit_the_role_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "lora.toml"
    path.write_text(MINIMAL.replace('role = "diffusers-pipeline"', 'role = "lora"'))
    with pytest.raises(UsageError, match="variant does not apply to role 'lora'"):
        load_spec(str(path), variant="fp16")
    with pytest.raises(UsageError, match="invalid variant"):
        load_spec("org/name", variant="fp16; rm")


def test_recipe_meta() -> None:
    recipe = Recipe(name="r", repos=(RepoSpec(name="a", repo="o/a"),), description="d", source="s")
    assert recipe.meta() == {"name": "r", "version": "1", "description": "d", "source": "s"}
    with pytest.raises(KeyError):
        recipe.repo("b")


# -- traced recipes: files, commit, [[runs]] ----------------------------------------------------------------------

TRACED = """
[recipe]
name = "traced"

[[runs]]
name = "base"
command = ["python", "app.py"]

[[runs]]
name = "taesd"

[[repos]]
name = "pipeline"
repo = "org/model"
role = "diffusers-pipeline"
revision = "main"
commit = "0123456789abcdef0123456789abcdef01234567"
files = [
  { path = "unet/config.json", runs = ["base", "taesd"] },
  "model_index.json",
]
"""


def test_traced_recipe_parses_files_commit_and_runs() -> None:
    recipe = loads_recipe(TRACED)
    repo = recipe.repos[0]
    assert repo.commit == "0123456789abcdef0123456789abcdef01234567"
    assert [(f.path, f.runs) for f in repo.files] == [("model_index.json", ()), ("unet/config.json", ("base", "taesd"))]
    assert repo.runs_of("unet/config.json") == ("base", "taesd") and repo.runs_of("nope") == ()
    assert [(r.name, r.command) for r in recipe.runs] == [("base", ("python", "app.py")), ("taesd", ())]
    assert recipe.runner.pipeline == "pipeline"
    assert recipe.to_json()["runs"][0]["name"] == "base"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('runs = ["base", "taesd"]', 'runs = ["base", "tsd"]', "names run 'tsd', which no"),
        ('"model_index.json",', '"model_index.json", "model_index.json",', "listed twice"),
        ('"model_index.json",', '"../escape.json",', "files entry"),
        ('commit = "0123', 'commit = "zz23', "not a 40-hex commit"),
        ('revision = "main"', 'revision = "1123456789abcdef0123456789abcdef01234567"', "disagree"),
        ('{ path = "unet/config.json"', '{ pth = "unet/config.json"', "unknown key 'pth'"),
        ('name = "taesd"', 'name = "base"', "two runs are named 'base'"),
    ],
)
def test_traced_recipe_errors(old: str, new: str, message: str) -> None:
    assert old in TRACED
    with pytest.raises(RecipeError, match=message):
        loads_recipe(TRACED.replace(old, new, 1))


def test_files_role_takes_an_explicit_list_instead_of_include() -> None:
    recipe = loads_recipe(MINIMAL.replace('role = "diffusers-pipeline"', 'role = "files"\nfiles = ["a.json"]'))
    assert [f.path for f in recipe.repos[0].files] == ["a.json"]
