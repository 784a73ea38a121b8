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

__all__ = ["Output", "Reportable", "human_size"]


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
    def progress(self, label: str) -> Iterator[Callable[[int, int], None]]:
        """A byte progress bar (rate, ETA) on stderr when it is a terminal and not --quiet / --json.

        Yields ``update(done, total)``; the bar appears on the first call, once the total is known.
        """
        if self.quiet or self.json_mode or not sys.stderr.isatty():
            yield lambda done, total: None
            return
        state: dict[str, Any] = {"bar": None, "last": 0}

        def update(done: int, total: int) -> None:
            if state["bar"] is None:
                if total <= 0:
                    return
                bar: Any = click.progressbar(length=total, label=label, file=sys.stderr, show_eta=True)
                bar.__enter__()
                state["bar"] = bar
            state["bar"].update(done - state["last"])
            state["last"] = done

        try:
            yield update
        finally:
            if state["bar"] is not None:
                state["bar"].__exit__(None, None, None)
