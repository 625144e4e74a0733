"""The TypeScript SDK (clients/typescript) builds, its generated files are what the
committed ``openapi.json`` and ``asyncapi.json`` generate, and a stale or hand-edited one
is caught. Needs Node.js, npm and the package's node_modules (scripts/setup.sh runs
``npm ci`` there): without them these tests fail rather than skip, as a contract change
that leaves the SDK behind must not pass unnoticed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "clients" / "typescript"
GENERATED = SDK / "src" / "generated"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is needed for the TypeScript SDK: run `make setup`"
    return path


def installed() -> None:
    assert (SDK / "node_modules" / "openapi-typescript").is_dir(), (
        "the SDK's dependencies are not installed: run `make setup` "
        "(or `npm ci` in clients/typescript)"
    )


def run(*command: str) -> subprocess.CompletedProcess[str]:
    installed()
    return subprocess.run(
        list(command), cwd=SDK, capture_output=True, text=True, timeout=300, check=False
    )


def output(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


def generate_check(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(tool("node"), "scripts/generate.mjs", "--check", "--dir", str(directory), *extra)


def test_sdk_check_passes() -> None:
    """Generated files up to date, and the package (examples included) type-checks."""
    done = run(tool("npm"), "run", "check")
    assert done.returncode == 0, output(done)
    assert "generated files up to date" in done.stdout, output(done)


def test_sdk_builds() -> None:
    done = run(tool("npm"), "run", "build")
    assert done.returncode == 0, output(done)
    for name in ("index.js", "index.d.ts", "socket.js", "client.js", "generated/frames.d.ts"):
        assert (SDK / "dist" / name).is_file(), f"dist/{name} missing\n{output(done)}"


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("frames.ts", 'type: "offer";', 'type: "offer.made";'),
        ("api.ts", '"/v1/quotes": {', '"/v1/quote": {'),
    ],
)
def test_an_edited_generated_file_is_caught(tmp_path: Path, name: str, old: str, new: str) -> None:
    copy = tmp_path / "generated"
    shutil.copytree(GENERATED, copy)
    assert generate_check(copy).returncode == 0  # the copy itself is fresh
    text = (copy / name).read_text(encoding="utf-8")
    assert old in text
    (copy / name).write_text(text.replace(old, new, 1), encoding="utf-8")
    done = generate_check(copy)
    assert done.returncode == 1, output(done)
    assert str(copy / name) in done.stderr and "npm run generate" in done.stderr, output(done)


def test_a_contract_change_without_regeneration_is_caught(tmp_path: Path) -> None:
    """A frame field added to asyncapi.json (as `make contract` would) leaves the
    committed frames.ts stale."""
    document = json.loads((ROOT / "asyncapi.json").read_text(encoding="utf-8"))
    document["components"]["schemas"]["OfferFrame"]["properties"]["surge"] = {"type": "number"}
    changed = tmp_path / "asyncapi.json"
    changed.write_text(json.dumps(document), encoding="utf-8")
    done = generate_check(GENERATED, "--asyncapi", str(changed))
    assert done.returncode == 1, output(done)
    assert "frames.ts" in done.stderr and "api.ts" not in done.stderr, output(done)


def test_socket_helper_reconnects_and_resumes() -> None:
    """node --test on the compiled socket helper, against a fake WebSocket and timers."""
    done = run(tool("npm"), "test")
    assert done.returncode == 0, output(done)
    assert "# fail 0" in done.stdout, output(done)
