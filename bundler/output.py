"""Rendering of reports: one object the CLI hands every result to, human text or ``--json``.

Modelled on huggingface_hub's ``cli/_output.py``: the library returns report objects with ``to_json()``;
this module is the only place (with ``cli.py``) that writes to the terminal.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import click

from .progress import Progress
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
        """A progress display on stderr when it is a terminal and not --quiet / --json.

        Yields a :class:`ProgressBar`, itself the ``on_progress`` callback every long command takes: it draws
        the :class:`~bundler.progress.Progress` records it is given (a byte bar with rate and ETA, the count
        of files beside the label; a running count where the total is not known).
        """
        bar = ProgressBar(label, enabled=not (self.quiet or self.json_mode or not sys.stderr.isatty()))
        try:
            yield bar
        finally:
            bar.close()


class ProgressBar:
    """Draws :class:`~bundler.progress.Progress` records: bytes as a click progress bar, files as
    ``label 1,234/20,000 files`` (long runs of many small files are counted in files more than in bytes). A new
    phase starts a new bar; a phase without a known total shows a running count."""

    def __init__(self, label: str, *, enabled: bool) -> None:
        self._label = label
        self._enabled = enabled
        self._bar: Any = None
        self._group: str | None = None
        self._last = 0
        self._files = ""
        self._count_shown = 0.0
        self._pending: Progress | None = None

    def __call__(self, p: Progress) -> None:
        if not self._enabled:
            return
        group = "stream" if p.phase == "link" else p.phase
        if group != self._group:
            self.close()
            self._group = group
        if p.total_files > 0:
            self._files = f" {p.done_files:,}/{p.total_files:,} files"
        elif p.done_files > 0:
            self._files = f" {p.done_files:,} files"
        if p.total_bytes <= 0:
            self._count(p)
            return
        if self._bar is None:
            self._bar = click.progressbar(length=p.total_bytes, label=self._text(), file=sys.stderr, show_eta=True)
            self._bar.__enter__()
            self._last = 0
        self._bar.label = self._text()
        self._bar.update(p.done_bytes - self._last)
        self._last = p.done_bytes

    def _count(self, p: Progress) -> None:
        self._pending = p
        now = time.monotonic()
        if now - self._count_shown >= 0.2:  # a redraw per file would cost more than small files do
            self._draw_count()

    def _draw_count(self) -> None:
        if self._pending is not None:
            self._count_shown = time.monotonic()
            click.echo(f"\r{self._text()} {human_size(self._pending.done_bytes)} ", nl=False, err=True)
            self._pending = None

    def _text(self) -> str:
        # Re-hashing what a cache already holds comes before an install's or restore's streaming: say so.
        checking = self._group == "verify" and self._label != "verifying"
        return self._label + (" (checking what is there)" if checking else "") + self._files

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
        elif self._count_shown or self._pending is not None:
            self._draw_count()  # the final count
            click.echo("", err=True)
        self._count_shown = 0.0
        self._files = ""
