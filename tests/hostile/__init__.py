"""Hostile bundles and faults: the suite that proves nothing is lost and nothing escapes (docs/SECURITY.md)."""
