"""Progress bars for long commands, drawn on a terminal only.

``bar(description, total)`` is a context manager that yields ``advance(n=1)``. On an
interactive terminal it draws a rich progress bar on stderr; anywhere else (stderr piped
or sent to a file, a CI log, ``TERM=dumb``, ``TTY_INTERACTIVE=0``) ``advance`` does
nothing and nothing is written, so logs get no control characters. ``NO_COLOR`` is
rich's: the bar is drawn without colours. A command whose output is for a program
(``--json``) passes ``enabled=False``. A command that prints progress lines of its own
when there is no bar asks ``shown()`` first.

Used by ``coopride simulate`` (simulated minutes replayed) and ``coopride demo`` (its
seeding); kept in ``core`` so that every layer above may use it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Advance(Protocol):
    def __call__(self, n: float = 1, /) -> None: ...


def _nothing(n: float = 1, /) -> None:
    """``advance`` where no bar is drawn."""


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or closed
        return False


def shown(console: Console | None = None) -> bool:
    """Whether ``bar`` draws on ``console``; by default on stderr, and only when stderr
    is a terminal (rich alone would also draw into a pipe under ``FORCE_COLOR``)."""
    if console is None:
        if not _isatty(sys.stderr):
            return False
        console = Console(stderr=True)
    return console.is_interactive


@contextmanager
def bar(
    description: str,
    total: float | None,
    *,
    unit: str = "",
    console: Console | None = None,
    enabled: bool = True,
) -> Iterator[Advance]:
    """A bar from 0 to ``total`` (in ``unit``), or a spinner when ``total`` is None;
    ``console`` (stderr's by default) is for tests. Left on screen when done."""
    if not (enabled and shown(console)):
        yield _nothing
        return
    columns: list[ProgressColumn | str]
    if total is None:
        columns = [
            SpinnerColumn(finished_text="✓"),
            TextColumn("{task.description}", markup=False),
            TimeElapsedColumn(),
        ]
    else:
        done = "{task.completed:,.0f}/{task.total:,.0f}" + (f" {unit}" if unit else "")
        columns = [
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TextColumn(done),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
    # On the real terminal, lines printed meanwhile go above the bar: stderr's always,
    # stdout's only when stdout is the terminal too (else they would move to stderr).
    own = console is None
    with Progress(
        *columns,
        console=console or Console(stderr=True),
        redirect_stdout=own and _isatty(sys.stdout),
        redirect_stderr=own,
    ) as progress:
        task = progress.add_task(description, total=total)

        def advance(n: float = 1, /) -> None:
            progress.advance(task, n)

        yield advance
        if total is None:  # done: the spinner stops on a tick
            progress.update(task, total=1, completed=1)
