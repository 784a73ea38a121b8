"""Applies the foreign-platform lane (tests/foreign/emulate.py) to every Python subprocess of a lane run:
``tests/conftest.py`` puts this folder on ``PYTHONPATH`` when ``HFBUNDLE_FOREIGN_PLATFORM=1``."""

import os
import sys

if os.environ.get("HFBUNDLE_FOREIGN_PLATFORM") == "1":
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    if root not in sys.path:
        sys.path.append(root)
    from tests.foreign.emulate import apply

    apply()
