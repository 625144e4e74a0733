"""The wire contract as committed files at the repository root: ``openapi.json`` (HTTP),
generated from the app itself, and ``asyncapi.json`` (the rider and driver sockets),
generated from the frame models the sockets parse with, so a client generator or a
reviewer reads exactly what the server does.

``coopride contract write`` (``make contract``) rewrites the files; a test fails when
the served document drifts from the committed one. The documents are rendered with
sorted keys, two-space indents and a trailing newline, so a change to the contract is a
readable diff in review.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from core.settings import Settings

# What a developer runs to bring the committed files up to date (the drift test says so).
REGENERATE = "make contract  (or: coopride contract write)"


def openapi_document() -> dict[str, Any]:
    """The document ``GET /openapi.json`` serves, built without starting anything.

    The app is created with default settings, not the environment's: the routes and
    schemas do not depend on a deployment's settings, and a developer's ``.env`` must
    not change the committed contract. ``create_app`` touches no service until its
    lifespan runs, which this never does."""
    from server.app import create_app

    app = create_app(Settings.model_construct(), run_dispatcher=False)
    return app.openapi()


def asyncapi_document() -> dict[str, Any]:
    """The sockets' AsyncAPI document, versioned with the HTTP API."""
    from server.asyncapi import asyncapi_document as build

    return build(version=openapi_document()["info"]["version"])


# File name (at the repository root) → how its document is built.
DOCUMENTS: dict[str, Callable[[], dict[str, Any]]] = {
    "openapi.json": openapi_document,
    "asyncapi.json": asyncapi_document,
}


router = APIRouter()


@router.get("/asyncapi.json", include_in_schema=False)
async def served_asyncapi(request: Request) -> JSONResponse:
    """The sockets' contract, served beside ``/openapi.json`` (built once per process):
    a client can read both from the server it talks to, and the drift test compares
    the committed file with what a real server serves."""
    document = getattr(request.app.state, "asyncapi", None)
    if document is None:
        from server.asyncapi import asyncapi_document as build

        document = build(version=request.app.openapi()["info"]["version"])
        request.app.state.asyncapi = document
    return JSONResponse(document)


def render(document: dict[str, Any]) -> str:
    """The committed form: stable key order, readable diffs, a trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(directory: Path) -> list[Path]:
    """Rewrite every contract file in ``directory``; returns the paths written."""
    written = []
    for name, build in DOCUMENTS.items():
        path = directory / name
        path.write_text(render(build()), encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path) -> list[str]:
    """The contract files in ``directory`` that are missing or differ from what the code
    generates now (empty when all are current)."""
    return [
        name
        for name, build in DOCUMENTS.items()
        if not (directory / name).is_file()
        or (directory / name).read_text(encoding="utf-8") != render(build())
    ]
