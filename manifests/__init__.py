"""The shipped recipes (``*.toml``), installed as package data of ``bundler.manifests``."""
