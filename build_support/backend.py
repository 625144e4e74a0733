"""The package's PEP 517 build backend: setuptools, once the operator dashboard is built.

The dashboard (``frontend/ops``, a Vite app) is served by ``coopride serve`` from
``server/static/ops``, which is built output and not in git. ``make setup`` builds it for
a checkout; a wheel or sdist built straight from a clone (``python -m build``) would
otherwise ship a server whose ``/ops`` answers 503 ``dashboard-not-built``. So the wheel
and the sdist build it first when it is missing (``npm ci`` + ``npm run build``), and
stop with one clear line when Node.js is not there to do it. An sdist carries the built
files, so building a wheel from it needs no Node.js.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401  (the rest of the PEP 517 interface)
    build_editable,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

ROOT = Path(__file__).resolve().parent.parent
BUILT = ROOT / "server" / "static" / "ops" / "index.html"
SOURCES = ROOT / "frontend" / "ops"


def _ensure_dashboard() -> None:
    if BUILT.is_file():
        return
    if not (SOURCES / "package.json").is_file():
        raise SystemExit(f"coopride build: {BUILT.parent} is not built and {SOURCES} is missing")
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(
            "coopride build: the operator dashboard is not built and npm is not installed; "
            "install Node.js and npm (or run `make setup`), then build again"
        )
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=SOURCES, check=True
    )
    subprocess.run([npm, "run", "--silent", "build"], cwd=SOURCES, check=True)
    if not BUILT.is_file():
        raise SystemExit(f"coopride build: the dashboard build did not write {BUILT}")


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    _ensure_dashboard()
    return str(_setuptools.build_wheel(wheel_directory, config_settings, metadata_directory))


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    _ensure_dashboard()
    return str(_setuptools.build_sdist(sdist_directory, config_settings))
