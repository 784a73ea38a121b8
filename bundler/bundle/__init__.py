"""The bundle format: ``reader`` (open and inspect), ``writer``, ``container`` (byte-level pieces), ``frames``
(the checked tar stream), ``volumes`` (files, numbered volumes, streams), ``manifest`` and ``source`` (what an
install reads from). It knows nothing of the cache. See ``docs/FORMAT.md`` and ``docs/ARCHITECTURE.md``."""
