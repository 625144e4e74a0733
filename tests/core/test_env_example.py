""".env.example lists every setting of core.settings.Settings, once, at its default, with
a comment saying what it means: a setting added without documenting it there fails here.

A line ``COOP_NAME=value`` is a setting at its default; a setting whose default is unset
(None) is shown commented out, ``# COOP_NAME=example``. The comment lines right above a
setting are its meaning.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
PREFIX = Settings.model_config.get("env_prefix") or ""
ASSIGNMENT = re.compile(r"^(?P<unset>#\s*)?(?P<name>COOP_[A-Z0-9_]+)=(?P<value>.*)$")


@dataclass(frozen=True)
class Entry:
    name: str
    value: str
    unset: bool
    meaning: tuple[str, ...]


def entries() -> list[Entry]:
    found = []
    comment: list[str] = []
    for line in EXAMPLE.read_text().splitlines():
        match = ASSIGNMENT.match(line)
        if match:
            found.append(Entry(match["name"], match["value"], bool(match["unset"]), tuple(comment)))
            comment = []
        elif line.startswith("#"):
            comment.append(line.lstrip("# ").strip())
        else:
            comment = []
    return found


def variable(field: str) -> str:
    return f"{PREFIX}{field}".upper()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is compared with the model's defaults, not with this machine's COOP_*."""
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)


def test_every_setting_is_listed_once_and_nothing_else() -> None:
    listed = [e.name for e in entries()]
    settings = {variable(name) for name in Settings.model_fields}
    missing = sorted(settings - set(listed))
    extra = sorted(set(listed) - settings)
    twice = sorted({name for name in listed if listed.count(name) > 1})
    problems = []
    if missing:
        problems.append(
            "settings of core/settings.py not in .env.example (add `# meaning` and "
            f"`NAME=default` for each): {', '.join(missing)}"
        )
    if extra:
        problems.append(f"in .env.example but not settings: {', '.join(extra)}")
    if twice:
        problems.append(f"listed more than once in .env.example: {', '.join(twice)}")
    assert not problems, "\n".join(problems)


def test_each_value_is_the_default() -> None:
    """Read as a ``.env``, the file gives exactly the defaults; a setting whose default is
    unset is commented out (else it would be set, to an empty string)."""
    given = {e.name: e for e in entries()}
    defaults = Settings(_env_file=None)
    loaded = Settings(_env_file=EXAMPLE)
    differ = [
        f"{variable(name)}: .env.example gives {getattr(loaded, name)!r}, "
        f"the default is {getattr(defaults, name)!r}"
        for name in Settings.model_fields
        if getattr(loaded, name) != getattr(defaults, name)
    ]
    commented = [
        f"{e.name}: commented out, but its default is {getattr(defaults, name)!r}"
        if e.unset
        else f"{e.name}: its default is unset, so it is shown commented out (# {e.name}=…)"
        for name in Settings.model_fields
        if (e := given.get(variable(name))) is not None
        and e.unset != (getattr(defaults, name) is None)
    ]
    assert not differ + commented, "\n".join(differ + commented)


def test_each_setting_says_what_it_means() -> None:
    silent = [e.name for e in entries() if not any(e.meaning)]
    assert not silent, f"no comment line right above: {', '.join(silent)}"
