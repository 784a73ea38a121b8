"""Sizes as people read them (decimal units, like ``hf cache ls`` and ``du --si``)."""

from __future__ import annotations


def human_size(n: float) -> str:
    """``212 B``, ``1.2 MB``, ``7.0 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
