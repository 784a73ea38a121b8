"""hfbundle: make Hugging Face / diffusers models work offline, for sure.

The public Python API lives in :mod:`bundler.api` (each function returns a report object; nothing prints)::

    from bundler import api
    lock = api.resolve("tiny-demo")                             # recipe → lock (needs the Hub)
    report = api.build("tiny-demo", output="demo.tar.zst")      # lock → fetch → verify → bundle
    report = api.install("demo.tar.zst", cache_dir="/models")   # bundle → HF cache, offline
    report = api.verify(cache_dir="/models")                    # any cache, offline

(They are not re-exported here: ``bundler.install`` etc. are the modules that implement them.)
Submodules import their heavy dependencies on first use, so ``hfbundle --help`` stays instant.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
