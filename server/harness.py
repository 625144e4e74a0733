"""Real ``coopride`` processes for the tests, the benchmarks and the load tests.

All three start the server the way an operator does, in a subprocess, and need the same
few things around it: a database of their own (created on the server's ``postgres``
database, migrated by ``python -m server.cli migrate``), a free port, an environment that
carries *every* setting, a wait for ``/readyz`` that gives up when the process dies, and
a stop that does not hang. They live here, in the application tree, because
``coopride loadtest`` runs from the installed package, where ``tests/`` does not exist.

Nothing here imports FastAPI or the app: a harness that started the server's stack in
its own process could not tell a server that works from one that only works in-process.

``COOPRIDE_NO_SERVER_PROCESSES=1`` (``make test-fast``) makes every function that would
start a server process raise instead, so a test that needs one and is not marked for it
fails in the fast run rather than quietly making it slow. Children inherit the variable:
``coopride loadtest`` under it refuses too.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from core.settings import Settings

# The project root: subprocesses run from here, so ``python -m server.cli`` finds the
# same code as the process that starts them.
ROOT = Path(__file__).resolve().parent.parent
NO_SERVER_PROCESSES = "COOPRIDE_NO_SERVER_PROCESSES"
# The commands that run a server or a dispatcher (``demo`` and ``loadtest`` start one).
SERVER_COMMANDS = frozenset({"serve", "dispatcher", "demo", "loadtest"})
# A cold start imports the app and opens PostgreSQL and Redis: a few seconds on a busy
# machine with two cores; thirty means the server is not coming.
READY_TIMEOUT_S = 30.0
# On SIGTERM uvicorn closes its sockets and the dispatcher lets go of its lock; a process
# still there after this is stuck and is killed.
STOP_TIMEOUT_S = 20.0
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+")


class ServerProcessRefused(RuntimeError):
    """A server process was asked for under ``COOPRIDE_NO_SERVER_PROCESSES``."""


# -- databases -----------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    """``url`` with another database name."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def libpq_url(url: str) -> str:
    """The same URL for asyncpg/libpq (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def admin(url: str, *statements: str) -> None:
    """Runs ``statements`` on the ``postgres`` database of ``url``'s server: a database
    cannot be created, copied or dropped from a connection to itself."""

    async def run() -> None:
        conn = await asyncpg.connect(libpq_url(with_database(url, "postgres")), timeout=10)
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _quoted(name: str) -> str:
    # Names go into SQL as identifiers; the harness only makes plain ones.
    if not _PLAIN_NAME.fullmatch(name):
        raise ValueError(f"not a plain database name: {name!r}")
    return f'"{name}"'


def create_database(url: str, *, template: str | None = None) -> None:
    """Creates ``url``'s database, empty or as a copy of ``template``."""
    copy = f" TEMPLATE {_quoted(template)}" if template else ""
    admin(url, f"CREATE DATABASE {_quoted(database_name(url))}{copy}")


def drop_database(url: str) -> None:
    """Drops ``url``'s database if it is there, disconnecting whoever is still on it.
    Only for databases the caller made."""
    admin(url, f"DROP DATABASE IF EXISTS {_quoted(database_name(url))} WITH (FORCE)")


def migrate(url: str) -> None:
    """``coopride migrate`` on ``url``'s database, in a subprocess as an operator runs it."""
    subprocess.run(
        _argv(["migrate"]),
        check=True,
        env={**os.environ, "COOP_DATABASE_URL": url},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )


# -- processes -----------------------------------------------------------------------------


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick), for a server to bind next."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a ``coopride`` process run with ``settings``: every
    setting, so none falls back to a ``.env`` file or a default the caller never saw. A
    setting that is None removes its variable."""
    prefix = Settings.model_config.get("env_prefix") or ""
    env = dict(os.environ)
    for name in Settings.model_fields:
        variable = f"{prefix}{name}".upper()
        value = getattr(settings, name)
        if value is None:
            env.pop(variable, None)
        else:
            env[variable] = str(value)
    return env


def _argv(command: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "server.cli", *command]


def _refuse_when_no_servers(command: Sequence[str]) -> None:
    if command[0] in SERVER_COMMANDS and os.environ.get(NO_SERVER_PROCESSES, "") not in ("", "0"):
        raise ServerProcessRefused(
            f"{NO_SERVER_PROCESSES} is set, so no server process is started "
            f"(`coopride {' '.join(command)}`); in the test suite, what needs one is "
            "marked e2e and left out of `make test-fast`"
        )


@dataclass(frozen=True)
class Process:
    """A started ``coopride`` command and the file its output goes to."""

    command: tuple[str, ...]
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        stop(self.popen)


def start(
    command: Sequence[str],
    settings: Settings,
    log_path: Path,
    *,
    program: Sequence[str] | None = None,
    cwd: Path | None = None,
) -> Process:
    """``coopride <command>`` on ``settings``, stdout and stderr into ``log_path``. By
    default this checkout's code (``python -m server.cli`` in the repository); ``program``
    names another ``coopride`` (an installed wheel's), run in ``cwd``."""
    _refuse_when_no_servers(command)
    argv = [*program, *command] if program is not None else _argv(command)
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        popen = subprocess.Popen(
            argv,
            env=service_env(settings),
            cwd=cwd or ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Process(tuple(command), popen, log_path)


def run(
    command: Sequence[str], settings: Settings, *, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """``coopride <command>`` on ``settings`` to the end; its output captured as text."""
    _refuse_when_no_servers(command)
    return subprocess.run(
        _argv(command),
        env=service_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def start_serve(
    settings: Settings,
    log_path: Path,
    *,
    port: int,
    dispatcher: bool = True,
    workers: int = 1,
    log_level: str = "warning",
) -> Process:
    """``coopride serve`` on 127.0.0.1:``port``, not waited for (see ``wait_ready``)."""
    command = ["serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", log_level]
    if workers != 1:
        command += ["--workers", str(workers)]
    if not dispatcher:
        command.append("--no-dispatcher")
    return start(command, settings, log_path)


def start_dispatcher(settings: Settings, log_path: Path, *, log_level: str = "warning") -> Process:
    """``coopride dispatcher`` alone (it serves nothing to wait for)."""
    return start(["dispatcher", "--log-level", log_level], settings, log_path)


def wait_ready(
    base_url: str, processes: Sequence[Process], *, timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Until ``base_url/readyz`` answers 200. Raises, with the log's tail, as soon as one
    of ``processes`` exits or when ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        for process in processes:
            if process.popen.poll() is not None:
                raise RuntimeError(
                    f"`coopride {' '.join(process.command)}` exited with "
                    f"{process.popen.returncode}:\n{process.log_tail()}"
                )
        with suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            tails = "\n".join(p.log_tail() for p in processes)
            raise RuntimeError(f"{base_url} not ready within {timeout_s:g} s:\n{tails}")
        time.sleep(0.1)  # polling a starting process, bounded by the deadline


def stop(popen: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``; returns once the process is gone."""
    if popen.poll() is not None:
        return
    popen.terminate()
    try:
        popen.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(5)


@dataclass(frozen=True)
class Server:
    """A started ``coopride serve`` that answered ``/readyz``; as a context manager, it is
    stopped at the end of the block."""

    base_url: str
    ws_url: str
    settings: Settings
    process: Process

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def log_tail(self, lines: int = 60) -> str:
        return self.process.log_tail(lines)

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_server(
    settings: Settings,
    log_path: Path,
    *,
    dispatcher: bool = True,
    workers: int = 1,
    port: int | None = None,
    log_level: str = "warning",
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> Server:
    """``coopride serve`` (api, with the dispatcher unless told otherwise) on a free port,
    returned once ready; stopped again if it never gets there."""
    port = free_port() if port is None else port
    process = start_serve(
        settings, log_path, port=port, dispatcher=dispatcher, workers=workers, log_level=log_level
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", [process], timeout_s=ready_timeout_s)
    except BaseException:
        process.stop()
        raise
    return Server(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", settings, process)
