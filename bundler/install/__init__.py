"""Install a bundle into a Hugging Face cache: bundle source → cache destination → install report.

Shaped like pypa/installer: :func:`plan_install` looks at a manifest and a cache and says what would be done
(without hashing or writing anything, so ``--dry-run`` is free); :func:`execute` does it from a
:class:`~bundler.bundle.source.BundleSource`; :func:`install` is both. The result is the layout huggingface_hub
writes itself (``docs/CACHE.md``)::

    >>> report = install(source, Path("~/.cache/huggingface/hub").expanduser())  # doctest: +SKIP
    >>> report.bytes_written, report.layout  # doctest: +SKIP
    (3411201, 'symlink')

Order of work, so a loader never sees a snapshot whose files are not all there and a failed install leaves
the cache as it was except for more *verified* blobs:

1. re-hash what the cache already holds (blobs, foreign-shaped snapshot entries) unless ``trust_existing``;
2. stream every blob still needed, once, into a temp file inside the target repo's ``blobs/`` while its size,
   sha256 and git blob id are checked; only verified content is renamed into place (then hard-linked into
   the other repos that need it, or copied where links are refused);
3. snapshot entries: a new snapshot is assembled under a temp name and renamed into place, an existing one
   gets entries one by one; 4. ``trees/`` and ``.no_exist/``; 5. refs last; 6. ``CACHEDIR.TAG``.

Steps 3 to 5 keep an undo journal: if one fails, what they created is removed and what they overwrote restored.

The work is split in two modules: :mod:`bundler.install.plan` (the plan and the records) and
:mod:`bundler.install.run` (carrying a plan out); this one is the front door and re-exports both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..bundle.source import BundleSource
from ..cache.layout import MAX_TREE_BYTES, parse_tree
from ..cache.records import record_install
from .plan import (
    LAYOUT_COPY,
    LAYOUT_SYMLINK,
    ContentStep,
    EntryStep,
    InstallPlan,
    InstallReport,
    Placement,
    Progress,
    ProgressCallback,
    RefMove,
    RefStep,
    ReplacedBlob,
    SnapshotStep,
    plan_install,
)
from .run import execute

if TYPE_CHECKING:
    from ..signing import PublicKey

__all__ = [
    "LAYOUT_COPY",
    "LAYOUT_SYMLINK",
    "MAX_TREE_BYTES",
    "ContentStep",
    "EntryStep",
    "InstallPlan",
    "InstallReport",
    "Placement",
    "Progress",
    "ProgressCallback",
    "RefMove",
    "RefStep",
    "ReplacedBlob",
    "SnapshotStep",
    "execute",
    "install",
    "parse_tree",
    "plan_install",
]


def install(
    source: BundleSource,
    cache_dir: Path,
    *,
    copy: bool | None = None,
    keep_refs: bool = False,
    trust_existing: bool = False,
    extra_sources: Sequence[BundleSource] = (),
    on_progress: ProgressCallback | None = None,
    record: bool = True,
    trusted_keys: Sequence[PublicKey] = (),
) -> InstallReport:
    """Install everything ``source`` carries into the HF cache ``cache_dir``.

    ``copy``: None picks the symlink layout where symlinks work (and ``HF_HUB_DISABLE_SYMLINKS`` is unset),
    True forces real files in ``snapshots/``. ``keep_refs`` leaves existing refs alone. ``trust_existing``
    skips re-hashing blobs already in the cache (sizes are still checked). ``extra_sources`` are base bundles
    of an incremental backup, read only for blobs ``source`` does not carry. ``record`` writes the bundle's lock
    per repo (:mod:`bundler.cache.records`) for ``doctor``.

    ``trusted_keys``: the bundle must carry a valid signature by one of them over this exact manifest, checked
    before anything is written (:func:`bundler.trust.check_bundle`; :class:`~bundler.signing.SignatureError`
    otherwise). Without them the report only says whether the bundle is signed, and by which key. Either way
    the snapshot signatures are kept beside the install records (``hfbundle verify --trusted-key``).
    """
    from ..trust import check_bundle, record_signatures, require_seekable

    # A delta relies on blobs it does not carry: they are always re-hashed before anything is written.
    trust_existing = trust_existing and not source.manifest.is_delta

    if trusted_keys:
        require_seekable(source)
    trust = check_bundle(source.manifest, getattr(source, "signatures", None), trusted_keys)
    available: set[str] = {b.sha256 for b in source.manifest.blobs}
    for extra in extra_sources:
        available.update(b.sha256 for b in extra.manifest.blobs)
    plan = plan_install(
        source.manifest,
        cache_dir,
        copy=copy,
        keep_refs=keep_refs,
        trust_existing=trust_existing,
        available=available,
    )
    report = execute(plan, source, extra_sources=extra_sources, on_progress=on_progress)
    if record:  # what the bundle's lock asked for, per repo and commit, so `doctor` can compare offline
        record_install(cache_dir, source.manifest)
    raw = getattr(source, "signatures", None)  # a pipe's are known only now, after its last blob
    if not trusted_keys:
        trust = check_bundle(source.manifest, raw, ())
    if record:
        record_signatures(cache_dir, source, raw)
    return dataclasses.replace(report, signature=trust.to_json())
