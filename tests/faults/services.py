"""Redis and PostgreSQL instances of the fault tests' own, on spare ports.

Fault tests stop, kill and restart their backing services; the shared ones
(127.0.0.1:5432 and :6379) are used by everybody else and are never touched. So each
fault test module gets:

- ``OwnRedis``: ``redis-server`` on a free port, no persistence (as in production here:
  Redis holds nothing that cannot be rebuilt), so a restart comes back empty.
- ``OwnPostgres``: a throwaway cluster made with the installed server's ``initdb`` and
  run with ``pg_ctl`` in a temporary directory, as the ``postgres`` OS user (initdb
  refuses root), with trust auth on 127.0.0.1 and a free port. PostGIS is installed for
  that major, so ``coopride migrate`` works against it.

Both wait on a condition with a deadline (the port answering), never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from redis import Redis as SyncRedis

START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: object, what: str, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.05)  # polling another process's state, bounded by the deadline


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class OwnRedis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> SyncRedis:
        return SyncRedis.from_url(self.url, decode_responses=True, socket_timeout=5)

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--logfile",
                str(self.workdir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

        def answers() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_tail()}")
            try:
                with self.client() as c:
                    return bool(c.ping())
            except Exception:
                return False

        _wait(answers, f"redis on port {self.port} answering")

    def stop(self, *, kill: bool = False) -> None:
        """Stop it; everything it held is gone (no persistence)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(15)
        _wait(lambda: not _port_open(self.port), f"redis port {self.port} closed")

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "redis.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _newest_pg_bin() -> Path:
    root = Path("/usr/lib/postgresql")
    majors = sorted(
        (p for p in root.iterdir() if (p / "bin" / "initdb").exists()),
        key=lambda p: int(p.name) if p.name.isdigit() else 0,
    )
    if not majors:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
    return majors[-1] / "bin"


class OwnPostgres:
    """A cluster of its own. ``url(db)`` is the SQLAlchemy URL (asyncpg) for a database
    on it; the superuser is ``postgres`` with trust auth over TCP on 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.bin = _newest_pg_bin()
        self.workdir = workdir
        self.datadir = workdir / "data"
        self._as_root = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def libpq_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        if self._as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.workdir, pw.pw_uid, pw.pw_gid)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def start(self) -> None:
        # Sockets in the work dir (not /var/run/postgresql), TCP on localhost only. No
        # fsync (the machine does not crash, only the server does: the OS still has the
        # pages), but commits stay synchronous, so a crash (``immediate``) never loses a
        # transaction the service was told had committed.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.workdir} -c fsync=off "
            "-c full_page_writes=off -c max_connections=100"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.workdir / "postgres.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(int(START_TIMEOUT_S)),
            "start",
        )
        _wait(lambda: _port_open(self.port), f"postgres on port {self.port} answering")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` rolls back open transactions and disconnects; ``immediate`` is a
        crash (no shutdown checkpoint, recovery on the next start)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop")
        _wait(lambda: not _port_open(self.port), f"postgres port {self.port} closed")

    def begin_stop(self, mode: str = "smart") -> None:
        """Ask for a shutdown without waiting for it: with ``smart`` the server keeps its
        open sessions and refuses every new connection (SQLSTATE 57P03, "the database
        system is shutting down") until the last session leaves."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-W", "stop")

    def wait_stopped(self) -> None:
        _wait(lambda: not _port_open(self.port), f"postgres port {self.port} closed")

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = self._run(
            str(self.bin / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-Atqc",
            sql,
        )
        return out.stdout.strip()

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "postgres.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def own_services() -> Iterator[tuple[OwnRedis, OwnPostgres]]:
    """A Redis and a PostgreSQL cluster of their own, stopped and removed after."""
    root = Path(tempfile.mkdtemp(prefix="coopride-faults-"))
    os.chmod(root, 0o755)
    (root / "redis").mkdir()
    (root / "pg").mkdir()
    redis = OwnRedis(root / "redis")
    pg = OwnPostgres(root / "pg")
    try:
        redis.start()
        pg.init()
        pg.start()
        yield redis, pg
    finally:
        with contextlib.suppress(Exception):
            redis.stop(kill=True)
        with contextlib.suppress(Exception):
            pg.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
