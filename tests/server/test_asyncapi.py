"""``asyncapi.json`` is a valid AsyncAPI document, by the AsyncAPI project's own parser
(@asyncapi/parser, run by tools/asyncapi/validate.mjs under Node.js; scripts/setup.sh
installs it), and a broken one is caught."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "asyncapi"


def validate(document: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node is not None, "Node.js is needed: run `make setup`"
    assert (TOOL / "node_modules" / "@asyncapi" / "parser").is_dir(), (
        "the AsyncAPI parser is not installed: run `make setup` (or `npm ci` in tools/asyncapi)"
    )
    return subprocess.run(
        [node, str(TOOL / "validate.mjs"), str(document)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_committed_asyncapi_document_is_valid() -> None:
    done = validate(ROOT / "asyncapi.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid AsyncAPI 3.0.0" in done.stdout


@pytest.mark.parametrize(
    "breakage",
    ["dangling message reference", "unknown action", "payload not a schema"],
)
def test_a_broken_asyncapi_document_is_refused(tmp_path: Path, breakage: str) -> None:
    document = json.loads((ROOT / "asyncapi.json").read_text(encoding="utf-8"))
    if breakage == "dangling message reference":
        document["channels"]["driverSocket"]["messages"]["status"] = {
            "$ref": "#/components/messages/noSuchFrame"
        }
    elif breakage == "unknown action":
        document["operations"]["sendRiderSocketFrames"]["action"] = "publish"
    else:
        document["components"]["schemas"]["AckFrame"]["properties"]["event_id"] = {
            "type": "whole number"
        }
    broken = tmp_path / "asyncapi.json"
    broken.write_text(json.dumps(document), encoding="utf-8")
    done = validate(broken)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error" in done.stderr and "not a valid AsyncAPI document" in done.stderr
