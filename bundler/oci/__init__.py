"""Bundles through OCI registries and image layouts (``docs/OCI.md``): ``transfer`` (push, pull), ``artifact``
(a bundle as a ModelPack artifact and back), ``client`` (the registry API), ``layout`` (an OCI image layout
folder), ``auth`` (credentials) and ``ref`` (where an artifact lives)."""
