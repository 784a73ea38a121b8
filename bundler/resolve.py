"""Resolve a recipe into a lock: pin every repo to a commit and list exactly the files its loader reads.

Talks to the Hub through the public ``huggingface_hub.HfApi`` only: ``repo_info`` pins the revision to a
commit, ``list_repo_tree`` (recursive, at that commit) gives every file's size, git blob id and LFS/Xet
hashes, and the few small JSON configs a rule must read (``model_index.json``, a checkpoint index,
``config.json`` for role detection) are fetched with ``HfApi.hf_hub_download`` into a throw-away cache, so
the user's cache is never touched and weights are never downloaded. Which files each role takes is decided
by :mod:`bundler.rules`.

    >>> lock = resolve(load_spec("tiny-demo"), endpoint="http://127.0.0.1:8080")  # doctest: +SKIP
    >>> [f.path for f in lock.repos[1].files]  # doctest: +SKIP
    ['config.json', 'diffusion_pytorch_model.safetensors']
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import rules
from .errors import HfBundleError, ResolveError
from .hashing import is_sha1, is_sha256
from .lockfile import Lock, LockedRepo
from .paths import check_relpath
from .recipe import AUTO, PIPELINE_ROLES, Recipe, RepoSpec
from .repofile import RepoFile

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from huggingface_hub import HfApi

DEFAULT_ENDPOINT = "https://huggingface.co"


def resolve(recipe: Recipe, *, endpoint: str | None = None, token: str | bool | None = None) -> Lock:
    """Pin every repo of ``recipe`` and pick its files; return the :class:`~bundler.lockfile.Lock`.

    ``endpoint`` defaults to huggingface_hub's (``HF_ENDPOINT``); ``token`` to its stored token / ``HF_TOKEN``
    (``False``: send none).
    Errors are :class:`~bundler.errors.ResolveError` with a hint (repo/revision not found, gated repo, variant
    absent…). A repo marked ``optional`` that cannot be resolved is left out and listed in
    ``extra["skipped"]``.
    """
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    locked: list[LockedRepo] = []
    skipped: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="hfbundle-resolve-") as scratch:
        for spec in recipe.repos:
            try:
                locked.append(resolve_repo(api, spec, scratch=Path(scratch)))
            except ResolveError as e:
                if not spec.optional:
                    raise
                skipped.append({"name": spec.name, "repo": spec.repo, "reason": e.message})
    runner = recipe.runner.to_json()
    if "pipeline" not in runner:  # a lone pipeline found by role detection is the obvious one to run
        pipelines = [r.name for r in locked if r.role in PIPELINE_ROLES and r.name is not None]
        if len(pipelines) == 1:
            runner["pipeline"] = pipelines[0]
    extra: dict[str, Any] = {"recipe": recipe.meta(), "runner": runner}
    if skipped:
        extra["skipped"] = skipped
    return Lock(repos=tuple(locked), recipe=recipe.name, extra=extra)


@dataclass
class _Context:
    """One repo being resolved: what to call it in messages, and how to read its small JSON files."""

    api: HfApi
    spec: RepoSpec
    scratch: Path
    commit: str | None = None

    @property
    def label(self) -> str:
        return f"{self.spec.repo}@{self.commit[:8]}" if self.commit else f"{self.spec.repo}@{self.spec.revision}"

    @property
    def endpoint(self) -> str:
        return str(getattr(self.api, "endpoint", None) or DEFAULT_ENDPOINT)

    def read_json(self, path: str) -> Any:
        assert self.commit is not None
        logger.debug("%s: reading %s from the Hub (role detection)", self.label, path)
        with _hub_errors(self, path=path):
            local = self.api.hf_hub_download(
                self.spec.repo,
                path,
                repo_type=self.spec.repo_type,
                revision=self.commit,
                cache_dir=self.scratch,
            )
        try:
            with open(local, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise ResolveError(
                f"{self.label}: {path} is not valid JSON ({e})", hint="the repo is damaged at this revision"
            ) from e


def resolve_repo(api: HfApi, spec: RepoSpec, *, scratch: Path) -> LockedRepo:
    """Pin one repo to a commit, list its files, and pick what its role needs."""
    ctx = _Context(api=api, spec=spec, scratch=scratch)
    logger.debug("%s: asking %s for the commit of %s", spec.repo, ctx.endpoint, spec.commit or spec.revision)
    with _hub_errors(ctx):
        # A pinned commit (a traced recipe) is bundled as it was traced, even if the branch moved since; the
        # bundle's refs/<revision> then points at it, as it did in the traced app's cache.
        info = api.repo_info(spec.repo, revision=spec.commit or spec.revision, repo_type=spec.repo_type)
    commit = getattr(info, "sha", None)
    if not isinstance(commit, str) or not is_sha1(commit):
        raise ResolveError(
            f"{ctx.label}: the Hub did not return a commit id for revision {spec.revision!r}",
            hint="check HF_ENDPOINT points at a Hugging Face Hub",
        )
    ctx.commit = commit
    files = _list_files(ctx)
    logger.debug("%s: %d files listed at %s", ctx.label, len(files), commit)
    if getattr(info, "gated", False) and files:
        # Gated repos show their file list to everyone; only contents need access. Probe one file now, so a
        # missing token fails here with a clear message rather than halfway through a download.
        with _hub_errors(ctx):
            api.file_exists(spec.repo, files[0].path, revision=commit, repo_type=spec.repo_type)
    by_path = {f.path: f for f in files}
    names = frozenset(by_path)

    try:
        role = spec.role if spec.role != AUTO else rules.detect_role(names, ctx.read_json, subfolder=spec.subfolder)
        # an explicit list (a traced recipe): exactly these files, whatever the role's rules say
        picked = rules.listed_files(names, spec) if spec.files else rules.pick_files(role, names, ctx.read_json, spec)
    except ResolveError as e:
        if e.message.startswith(ctx.label):
            raise
        raise ResolveError(f"{ctx.label} ({spec.name}, {_role_of(spec)}): {e.message}", hint=e.hint) from e

    if not picked:
        raise ResolveError(
            f"{ctx.label} ({spec.name}): no file selected",
            hint="check the include/exclude patterns; patterns match whole repo paths (* crosses '/')",
        )
    return LockedRepo(
        repo_type=spec.repo_type,
        repo_id=spec.repo,
        revision=spec.revision,
        commit=commit,
        role=role,
        files=tuple(by_path[p] for p in sorted(picked)),
        upstream=tuple(sorted(names)),
        name=spec.name,
        listing=tuple(sorted(files, key=lambda f: f.path)),
    )


def _role_of(spec: RepoSpec) -> str:
    return spec.role if spec.role != AUTO else "role auto"


def _list_files(ctx: _Context) -> list[RepoFile]:
    """Every file of the repo at the pinned commit, as lock records (folders skipped)."""
    from huggingface_hub import RepoFolder

    out: list[RepoFile] = []
    with _hub_errors(ctx):
        entries = list(
            ctx.api.list_repo_tree(
                ctx.spec.repo, recursive=True, expand=False, revision=ctx.commit, repo_type=ctx.spec.repo_type
            )
        )
    for entry in entries:
        if isinstance(entry, RepoFolder):
            continue
        try:
            path = check_relpath(entry.path)
        except HfBundleError as e:
            raise ResolveError(f"{ctx.label}: the Hub lists an unsafe file name: {e.message}") from e
        lfs = entry.lfs.sha256 if entry.lfs is not None else None
        xet = entry.xet_hash
        if not is_sha1(entry.blob_id) or (lfs is not None and not is_sha256(lfs)):
            raise ResolveError(f"{ctx.label}: the Hub's tree lists {path} without valid hashes")
        if xet is not None and not (len(xet) == 64 and xet.isalnum()):
            xet = None
        out.append(
            RepoFile(path=path, size=int(entry.size), blob_id=entry.blob_id, lfs_sha256=lfs, xet_hash=xet, sha256=lfs)
        )
    return out


@contextlib.contextmanager
def _hub_errors(ctx: _Context, *, path: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub's errors into one-line :class:`ResolveError` with a hint."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    spec = ctx.spec
    try:
        yield
    except GatedRepoError as err:
        raise ResolveError(
            f"{spec.repo} is gated: access needs an accepted licence and a token",
            hint=f"accept the conditions at {ctx.endpoint}/{spec.repo}, then set HF_TOKEN or run `hf auth login` "
            "(a token that has no access is refused the same way)",
        ) from err
    except RepositoryNotFoundError as err:
        kind = "" if spec.repo_type == "model" else f"{spec.repo_type} "
        raise ResolveError(
            f"{kind}repo {spec.repo} not found on {ctx.endpoint} (or it is private)",
            hint="check the name (org/name, case matters) and repo_type; for a private repo set HF_TOKEN "
            "or run `hf auth login`",
        ) from err
    except RevisionNotFoundError as err:
        raise ResolveError(f"revision {spec.revision!r} not found in {spec.repo}", hint=_revision_hint(ctx)) from err
    except EntryNotFoundError as err:
        raise ResolveError(
            f"{ctx.label}: {path or 'a file'} is listed but cannot be downloaded",
            hint="the Hub may be updating this repo; retry, or pin a commit",
        ) from err
    except OfflineModeIsEnabled as err:
        raise ResolveError(
            "resolving needs the Hub, but HF_HUB_OFFLINE is set",
            hint="unset HF_HUB_OFFLINE on a machine with network access, or build from an existing lock",
        ) from err
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        if status == 401:  # only a token the Hub rejects outright gets here (anonymous 401s are "not found")
            raise ResolveError(
                f"the Hub at {ctx.endpoint} refused the token (HTTP 401, invalid credentials) for {spec.repo}",
                hint="the token (HF_TOKEN, `hf auth login` or --token) is invalid or expired: create a new one "
                "in your Hub settings, or unset it for public repos",
            ) from e
        raise ResolveError(
            f"{ctx.label}: the Hub answered HTTP {status}: {str(e).splitlines()[0][:200]}",
            hint="retry later; check HF_ENDPOINT and your token",
        ) from e
    except (OSError, ValueError) as e:
        raise ResolveError(f"{ctx.label}: {type(e).__name__}: {e}", hint="check the network and HF_ENDPOINT") from e
    except Exception as e:
        # Transport errors (connection refused, timeouts) come from the HTTP library huggingface_hub uses; its
        # exception classes are not part of huggingface_hub's API, so they are recognised by module.
        if type(e).__module__.split(".")[0].startswith(("httpx", "httpcore", "requests", "urllib3")):
            raise ResolveError(
                f"cannot reach the Hub at {ctx.endpoint} for {spec.repo}: {e}",
                hint="check the network connection and HF_ENDPOINT; resolving needs the Hub",
            ) from e
        raise


def _revision_hint(ctx: _Context) -> str:
    """List the repo's branches and tags, when the Hub tells them."""
    try:
        refs = ctx.api.list_repo_refs(ctx.spec.repo, repo_type=ctx.spec.repo_type)
    except Exception:  # the hint is a courtesy: never let it hide the real error
        return "check the branch, tag or commit name"
    branches = ", ".join(sorted(b.name for b in refs.branches)) or "(none)"
    tags = ", ".join(sorted(t.name for t in refs.tags)) or "(none)"
    return f"branches: {branches}; tags: {tags}; or give a full commit id"
