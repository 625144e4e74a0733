"""The project's own data: every file it reads is in its data/ folder, and a missing one is
one clear line naming the file and the setting, from the library and from every command
that reads data, never a stack trace or a quiet stand-in."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.data import CHECKOUT_DATA_DIR, DataFile, MissingDataError, data_dir, data_path
from core.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Lets a test set COOP_DATA_DIR for this process; the cached settings are rebuilt."""
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("COOP_DATA_DIR", raising=False)
    get_settings.cache_clear()


def test_every_data_file_is_in_the_checkout_and_documented() -> None:
    readme = (CHECKOUT_DATA_DIR / "README.md").read_text()
    for file in DataFile:
        path = data_path(file)
        assert path.parent == CHECKOUT_DATA_DIR
        assert path.stat().st_size > 1000, file
        assert f"`{file.value}`" in readme, f"data/README.md does not describe {file.value}"


def test_the_real_files_are_the_real_data() -> None:
    """Not placeholders: the row counts data/README.md states."""
    with gzip.open(data_path(DataFile.TRIPS), "rt") as f:
        header = f.readline().strip().split(",")
        rows = sum(1 for _ in f)
    assert "duration_s" in header and rows == 72_597
    with gzip.open(data_path(DataFile.PICKUPS), "rt") as f:
        assert sum(1 for _ in f) - 1 == 564_516


def test_data_dir_setting_moves_every_file(
    data_dir_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / DataFile.ETA_CALIBRATION.value).write_text("{}")
    monkeypatch.setenv("COOP_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    assert data_dir() == tmp_path
    assert data_path(DataFile.ETA_CALIBRATION) == tmp_path / "eta_calibration.json"
    with pytest.raises(MissingDataError) as caught:
        data_path(DataFile.ROADS)
    message = str(caught.value)
    assert "\n" not in message
    assert DataFile.ROADS.value in message and str(tmp_path) in message
    assert "COOP_DATA_DIR" in message


def _coopride(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=ROOT,
        env={**os.environ, "COOP_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line_naming(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "env", "missing"),
    [
        # The demo replays the real pickups: without them it stops, it does not invent riders.
        (("demo", "--port", "1", "--duration", "1"), {}, DataFile.PICKUPS),
        (("serve", "--port", "1"), {"COOP_ETA_MODEL": "road"}, DataFile.ROADS),
        (("dispatcher",), {}, DataFile.ETA_CALIBRATION),
    ],
)
def test_commands_name_the_missing_file_and_the_setting(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], missing: DataFile
) -> None:
    for file in DataFile:
        if file is not missing:
            (tmp_path / file.value).symlink_to(CHECKOUT_DATA_DIR / file.value)
    result = _coopride(*args, data_dir=tmp_path, **env)
    _one_line_naming(result, missing.value, "COOP_DATA_DIR", str(tmp_path))


def test_a_demand_file_named_on_the_command_line_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv.gz"
    result = _coopride(
        "simulate",
        *("--demand", str(missing), "--drivers", "10", "--policy", "greedy"),
        data_dir=CHECKOUT_DATA_DIR,
    )
    _one_line_naming(result, "--demand", str(missing))
