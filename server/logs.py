"""Structured JSON logs: one object per line, with whatever ``extra`` the caller gave.

No credential reaches a log line: every line is scrubbed, whoever wrote it (uvicorn's
access log prints request paths, and a socket's ``?token=`` is in its path). Redacted:
``token=`` query values, ``Bearer`` credentials, anything shaped like a JWT, and the
configured operator token and JWT secret wherever they appear (docs/security.md).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

import orjson

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


REDACTED = "[redacted]"
_PATTERNS = (
    (re.compile(r"(?i)(token=)[^&\s\"']+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(bearer\s+)[^\s\"',]+"), r"\1" + REDACTED),
    (re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*"), REDACTED),
)


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Short strings would redact ordinary words; real secrets are long.
        self._secrets = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)

    def __call__(self, line: str) -> str:
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            line = pattern.sub(replacement, line)
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor | None = None) -> None:
        super().__init__()
        self._redact = redact or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(self._format(record))

    def _format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str = "INFO", *, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(Redactor(secrets)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
