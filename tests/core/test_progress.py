"""core.progress: a bar on a terminal, nothing at all anywhere else."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from core import progress


def terminal(out: io.StringIO) -> Console:
    return Console(file=out, force_terminal=True, force_interactive=True, width=100)


def test_a_bar_is_drawn_on_a_terminal() -> None:
    out = io.StringIO()
    console = terminal(out)
    assert progress.shown(console)
    with progress.bar("[simulate] replaying", total=120, unit="min", console=console) as advance:
        for _ in range(120):
            advance()
    drawn = out.getvalue()
    # Rich's markup is not applied to the description: "[simulate]" stays as it is.
    assert "[simulate] replaying" in drawn
    assert "120/120 min" in drawn
    assert "━" in drawn and "\x1b[" in drawn  # a bar, in colour


def test_a_spinner_when_the_total_is_unknown() -> None:
    out = io.StringIO()
    with progress.bar("reading the demand file", total=None, console=terminal(out)):
        pass
    assert "reading the demand file" in out.getvalue()
    assert "✓" in out.getvalue()  # it ends on a tick


def test_nothing_is_written_off_a_terminal_or_when_disabled() -> None:
    plain = io.StringIO()
    pipe = Console(file=plain, force_terminal=False)
    assert not progress.shown(pipe)
    with progress.bar("replaying", total=10, console=pipe) as advance:
        advance(10)
    assert plain.getvalue() == ""
    out = io.StringIO()
    with progress.bar("replaying", total=10, console=terminal(out), enabled=False) as advance:
        advance(10)
    assert out.getvalue() == ""


def test_a_dumb_terminal_gets_no_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.delenv("TTY_INTERACTIVE", raising=False)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True)
    assert not progress.shown(console)
    with progress.bar("replaying", total=10, console=console) as advance:
        advance(10)
    assert out.getvalue() == ""


def test_stderr_piped_gets_no_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not a terminal: no bar, whatever FORCE_COLOR would make rich believe.
    monkeypatch.setenv("FORCE_COLOR", "1")
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    assert not progress.shown()
    with progress.bar("replaying", total=10) as advance:
        advance(10)
    assert stderr.getvalue() == ""
