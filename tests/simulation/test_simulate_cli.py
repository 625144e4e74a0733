"""``coopride simulate``'s progress: a bar of simulated minutes when stderr is a terminal,
plain lines (and no control characters) when it is piped.

Pure: a small demand file in ``tmp_path``; no service is needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from geo.point import LatLng
from tests.fixtures.demand import write_csv

ROOT = Path(__file__).resolve().parents[2]
BAR_TEXT = "simulated min"


def small_demand(path: Path) -> Path:
    """40 pickups over 20 minutes around Midtown, with drop-offs."""
    rows: list[tuple[str, LatLng, LatLng | None]] = [
        (
            f"2014-04-30 17:{k // 2:02d}:{(k % 2) * 30:02d}",
            LatLng(40.75 + 0.001 * (k % 7), -73.99 + 0.001 * (k % 5)),
            LatLng(40.76 - 0.001 * (k % 3), -73.98 - 0.001 * (k % 4)),
        )
        for k in range(40)
    ]
    return write_csv(path, rows)


def simulate_args(demand: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "server.cli",
        "simulate",
        "--demand",
        str(demand),
        "--drivers",
        "4",
        "--policy",
        "batched",
    ]


def terminal_env() -> dict[str, str]:
    """As a person's shell: a capable terminal, none of rich's overrides."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR")
    }
    env["TERM"] = "xterm-256color"
    return env


def test_no_bar_when_stderr_is_piped(tmp_path: Path) -> None:
    done = subprocess.run(
        simulate_args(small_demand(tmp_path / "d.csv")),
        cwd=ROOT,
        env=terminal_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert BAR_TEXT not in done.stderr
    for control in ("\x1b[", "\r", "━"):
        assert control not in done.stderr, repr(done.stderr)
    # The plain progress lines instead, ending with all of the requests.
    assert done.stderr.splitlines()[-1] == "[simulate] 40/40 requests replayed"
    assert "matched" in done.stdout


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_a_bar_when_stderr_is_a_terminal(tmp_path: Path) -> None:
    primary, secondary = os.openpty()
    try:
        process = subprocess.Popen(
            simulate_args(small_demand(tmp_path / "d.csv")),
            cwd=ROOT,
            env=terminal_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=secondary,
        )
    finally:
        os.close(secondary)
    drawn = b""
    with process:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the command closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
        stdout = process.stdout.read() if process.stdout else b""
        assert process.wait(timeout=120) == 0, drawn.decode(errors="replace")
    os.close(primary)
    text = drawn.decode(errors="replace")
    assert "[simulate] replaying" in text and BAR_TEXT in text, text
    assert "requests replayed" not in text  # the bar replaces the lines
    assert b"matched" in stdout and b"\x1b[" not in stdout  # stdout is left alone
