"""Rendering of reports: one object the CLI hands every result to, human text or ``--json``.

Modelled on huggingface_hub's ``cli/_output.py``: the library returns report objects with ``to_json()``;
this module is the only place (with ``cli.py``) that writes to the terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import click

from .units import human_size

__all__ = ["Output", "ProgressBar", "Reportable", "human_size"]


class Reportable(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class Output:
    """Where a command's result goes. ``json`` → one JSON document on stdout; else text lines."""

    def __init__(self, *, json_mode: bool = False, quiet: bool = False) -> None:
        self.json_mode = json_mode
        self.quiet = quiet

    def result(self, report: Reportable, render: Callable[[Any], list[str]]) -> None:
        if self.json_mode:
            click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
        else:
            for line in render(report):
                click.echo(line)

    def info(self, line: str) -> None:
        """Progress and notes: stderr, never in --json output, silent with --quiet."""
        if not self.quiet:
            click.echo(line, err=True)

    @contextmanager
    def progress(self, label: str) -> Iterator[ProgressBar]:
        """A byte progress bar (rate, ETA) on stderr when it is a terminal and not --quiet / --json.

        Yields a :class:`ProgressBar`: ``bar(done, total)`` for bytes (the bar appears on the first call, once
        the total is known), ``bar.files(done, total)`` for the count of files, shown beside the label.
        """
        bar = ProgressBar(label, enabled=not (self.quiet or self.json_mode or not sys.stderr.isatty()))
        try:
            yield bar
        finally:
            bar.close()


class ProgressBar:
    """Bytes as a click progress bar, files as ``label 1,234/20,000 files`` (long runs of many small files
    are counted in files more than in bytes)."""

    def __init__(self, label: str, *, enabled: bool) -> None:
        self._label = label
        self._enabled = enabled
        self._bar: Any = None
        self._last = 0
        self._files = ""

    def __call__(self, done: int, total: int) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            if total <= 0:
                return
            self._bar = click.progressbar(length=total, label=self._text(), file=sys.stderr, show_eta=True)
            self._bar.__enter__()
        self._bar.update(done - self._last)
        self._last = done

    def files(self, done: int, total: int) -> None:
        if self._enabled and total > 0:
            self._files = f" {done:,}/{total:,} files"
            if self._bar is not None:
                self._bar.label = self._text()

    def _text(self) -> str:
        return self._label + self._files

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
