"""Progress bars for ``coopride loadtest``'s slow steps (``rich``): starting the server,
and the rollout (drivers admitted, rider phones signed up, the seconds of the plan) with
the live KPIs. Drawn only on a terminal: in a pipe, a log or a test, nothing is drawn
and the command's lines are as they were. Plain Python, no Locust.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

console = Console()


def bars() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )


class Steps:
    """Named steps of one set-up, one bar."""

    def __init__(self, progress: Progress, what: str, total: int) -> None:
        self.progress = progress
        self.what = what
        self.task = progress.add_task(what, total=total, note="")

    def now(self, step: str) -> None:
        self.progress.update(self.task, description=f"{self.what}: {step}")

    def done(self) -> None:
        self.progress.advance(self.task)


@contextmanager
def steps(what: str, total: int) -> Iterator[Steps]:
    with bars() as progress:
        yield Steps(progress, what, total)


class Rollout:
    """The rollout's bars, drawn from the Locust master's progress file
    (``loadtests/control.py: Progress``)."""

    def __init__(self, progress: Progress, *, total_s: float, drivers: int) -> None:
        self.progress = progress
        self.clock: TaskID = progress.add_task("rollout (s)", total=round(total_s), note="")
        self.drivers: TaskID = progress.add_task("drivers admitted", total=drivers, note="")
        self.riders: TaskID = progress.add_task("rider phones signed up", total=None, note="")

    def update(self, path: Path) -> None:
        try:
            state: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return  # not written yet, or being replaced
        if state.get("elapsed_s") is not None:
            self.progress.update(self.clock, completed=min(state["elapsed_s"], state["total_s"]))
        kpis = state.get("kpis") or {}
        note = " | ".join(
            f"{k} {kpis[k]}"
            for k in ("online drivers", "matched", "request→offer p50 / p95 / p99 (s)")
            if k in kpis
        )
        self.progress.update(self.clock, note=note)
        self.progress.update(self.drivers, completed=state.get("drivers_admitted", 0))
        self.progress.update(
            self.riders,
            completed=state.get("riders_signed_up", 0),
            total=state.get("rider_pool") or None,
        )
