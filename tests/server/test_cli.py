"""The ``coopride`` command as a deployer meets it: every option of every command says
what it does and what it defaults to, and ``--version`` names the installed version.

No service is needed: the parser is built in-process, ``--version`` runs in a
subprocess."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from server import cli

ROOT = Path(__file__).resolve().parents[2]


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """``parser`` and every subcommand's parser under it, with the words that reach it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def test_every_command_is_listed_with_its_help() -> None:
    for path, parser in commands(cli.build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                listed = {a.dest: a.help for a in action._choices_actions}
                assert listed.keys() == action.choices.keys(), path
                assert all(listed.values()), (path, listed)


def test_every_option_has_help_and_shows_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # Wide enough that no help line wraps (a default path would break at its hyphens).
    monkeypatch.setenv("COLUMNS", "1000")
    checked = 0
    for path, parser in commands(cli.build_parser()):
        # Flatten the rendered help: a long line may still wrap.
        rendered = " ".join(parser.format_help().split())
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            where = f"coopride {' '.join(path)} {name}"
            assert action.help and action.help is not argparse.SUPPRESS, where
            assert " ".join(action.help.split()).split("(default")[0].strip() in rendered, where
            if action.default in (None, argparse.SUPPRESS) or action.nargs == 0:
                continue  # unset (its help says what that means), or a flag
            assert f"(default: {action.default})" in rendered, where
            checked += 1
    # The commands' own options were walked, not just -h.
    assert checked >= 20


def test_the_simulate_defaults_are_the_replays() -> None:
    """What ``--help`` promises is what a replay without the flag uses."""
    from simulation import defaults
    from simulation.simulator import SimConfig

    args = cli.build_parser().parse_args(
        ["simulate", "--demand", "d.csv", "--drivers", "1", "--policy", "batched"]
    )
    config = SimConfig()
    assert args.seed == config.seed == defaults.DEFAULT_SEED
    assert args.batch_s == config.batch_s
    assert args.offer_accept_s == config.offer_accept_s
    assert args.max_pickup_eta_s == config.max_pickup_eta_s
    assert args.request_timeout_s == config.request_timeout_s
    assert (args.fairness, args.decline_rate) == (config.fairness_weight, config.decline_rate)
    fare = config.fare
    assert args.fare == (
        f"{fare.base_cents},{fare.per_km_cents},{fare.per_minute_cents},{fare.minimum_cents}"
    )


def test_version_prints_the_installed_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"coopride {version('coopride')}\n"
    assert cli.version() == version("coopride")


def test_version_falls_back_to_the_source_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata
    import tomllib

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with (ROOT / "pyproject.toml").open("rb") as f:
        assert cli.version() == tomllib.load(f)["project"]["version"]
