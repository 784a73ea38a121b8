"""``python -m bundler`` is ``hfbundle``."""

from .cli import main

if __name__ == "__main__":
    main()
